"""NAT traversal: a sans-I/O STUN/TURN core with an asyncio server around it.

This package never imports ``app`` or Qt.
"""
