"""Signaling: how two PeerCall engines exchange offers, answers and ICE candidates.

The engine talks to one small interface, :class:`signaling.base.SignalingChannel`; backends
(websocket, manual copy-paste, LAN discovery, in-memory) implement it. This package never
imports ``app``.
"""
