"""Placeholder for `peercall gui` until issue 5 lands."""

from __future__ import annotations

import argparse
import sys


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """No options yet."""


def run(args: argparse.Namespace) -> int:
    print("peercall: error: 'gui' is not built yet (issue 5)", file=sys.stderr)
    return 2
