"""Join a hosted call's room from a link, as the friend's app does, and report what it got.

``ip netns exec NS python -m tests.portmap.run_join LINK`` prints one JSON line: the ICE
servers the host's signaling server handed out on join, and the address a STUN Binding to
the first TURN URI returned (proof the TURN port is reachable from where the friend is).
"""

from __future__ import annotations

import asyncio
import json
import sys
from urllib.parse import urlsplit

from app.link import parse_link
from nat.portmap.stunaddr import public_address
from signaling.client import WebSocketChannel


async def main(text: str) -> int:
    link = parse_link(text)
    channel = WebSocketChannel(link.signaling_url, link.room, link.secret, reconnect=False)
    await channel.connect()
    servers = channel.ice_servers
    await channel.close()
    reflexive = None
    urls = [u for s in servers for u in ([s["urls"]] if isinstance(s["urls"], str) else s["urls"])]
    turn = next((u for u in urls if u.startswith("turn:")), None)
    if turn is not None:
        where = urlsplit("//" + turn.split(":", 1)[1].split("?")[0])
        reflexive = await public_address(where.hostname or "", where.port or 3478, within=3.0)
    print(json.dumps({"ice_servers": servers, "reflexive": reflexive}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1])))
