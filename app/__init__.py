"""PeerCall's call engine: sessions, media, settings and command-line entry points.

Nothing in this package (outside ``app.ui``) imports Qt: everything the GUI does is also
reachable headless.
"""

__version__ = "0.1.0"
