"""Run a PortMapper inside a lab namespace: ``ip netns exec NS python -m tests.portmap.run_mapper``.

Prints every MappingState as one JSON line; stops (deleting the mappings) at "stop" on stdin.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from nat.portmap import MappingState, PortMapper, PortRequest


def _emit(state: MappingState) -> None:
    record = {
        "status": state.status,
        "method": state.method,
        "external_ip": state.external_ip,
        "refusal": state.refusal,
        "line": state.line(),
        "mappings": [
            [m.request.protocol, m.request.port, m.external_port, m.lifetime]
            for m in state.mappings
        ],
    }
    print(json.dumps(record), flush=True)


async def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--methods", default="pcp,natpmp,upnp")
    parser.add_argument("--lifetime", type=int, default=3600)
    parser.add_argument("--ports", default="UDP:3478,TCP:3478")
    args = parser.parse_args()
    requests = [
        PortRequest(proto, int(port), "test")
        for proto, port in (p.split(":") for p in args.ports.split(","))
    ]
    mapper = PortMapper(
        requests, methods=args.methods.split(","), lifetime=args.lifetime, on_state=_emit
    )
    await mapper.start()
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.readline)
    await mapper.stop()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
