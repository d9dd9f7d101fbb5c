"""Process start-up: the cyclic garbage collector stays off while a command loads.

``peercall`` (``app.cli.main`` run as the process's entry point) calls :func:`begin` first.
The imports then allocate a few hundred thousand objects that live as long as the process
(modules, classes, functions), and the collector would scan them again and again as they pile
up: about 20 ms of a 0.3 s ``peercall call`` start (issue 15). :func:`end` runs once the
command's imports are done: ``gc.freeze`` moves everything built so far to the permanent
generation, so neither the next collection nor later ones (during the call) scan it again;
re-enabling without freezing would put that whole scan into the first collection after.
"""

from __future__ import annotations

import gc

_began = False


def begin() -> None:
    """No collections until :func:`end` (when the collector is on at all)."""
    global _began
    if gc.isenabled():
        gc.disable()
        _began = True


def end() -> None:
    """The start-up imports are done: freeze what they built and collect as usual again.

    Does nothing unless :func:`begin` turned the collector off, so a test that runs a command
    in-process never freezes its objects; safe to call more than once."""
    global _began
    if _began:
        _began = False
        gc.freeze()
        gc.enable()
