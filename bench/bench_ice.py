"""ICE set-up through two port-restricted cone NATs, with and without triggered checks.

Two aiortc peers with PeerCall's ICE fixes (tests/app/rtcfixes/icepeer.py) run in their own
network namespaces behind masquerading routers, with ``peercall relay`` as the STUN server on
the lab's internet (the NAT lab, tests/netlab). The answerer starts checking first; its
first check is dropped by the offerer's router, so without a triggered check (RFC 8445
§7.3.1.4) the call waits for aioice's 500 ms retransmission.

For each call and each side: ICE checking -> ICE completed, and ICE checking -> connected
(DTLS and SCTP up), on the peer's own event-loop clock; "call" is the slower side. Calls with
and without triggered checks alternate, in one run. Needs root (network namespaces).

Usage: ``.venv/bin/python bench/bench_ice.py [--calls 10]``
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.netlab import Lab, netns_unavailable_reason
from tests.netlab.icepeers import ice_call

VARIANTS = {
    "triggered checks (PeerCall)": [],
    "aioice alone (no triggered checks)": ["--no-triggered"],
}


def summary(values: list[float]) -> str:
    ms = sorted(v * 1000 for v in values)
    return f"median {statistics.median(ms):6.0f} ms  (min {ms[0]:.0f}, max {ms[-1]:.0f})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=10, help="calls per variant (default 10)")
    args = parser.parse_args()
    reason = netns_unavailable_reason()
    if reason is not None:
        print(f"bench_ice: cannot build the NAT pair: {reason}", file=sys.stderr)
        return 1
    figures: dict[str, dict[str, list[float]]] = {
        name: {"ice": [], "connected": [], "triggered": []} for name in VARIANTS
    }
    with tempfile.TemporaryDirectory(prefix="bench-ice-") as tmp, Lab(workdir=Path(tmp)) as lab:
        host1 = lab.add_lan("cone").add_host("h1")
        host2 = lab.add_lan("cone").add_host("h2")
        stun = lab.start_relay("peercall", log=Path(tmp) / "relay.log").stun
        for _ in range(args.calls):
            for name, extra in VARIANTS.items():
                with ice_call(lab, host1, host2, stun, *extra) as (_, _, offerer, answerer):
                    sides = (offerer, answerer)
                    if any("relay" in (s["local"][0], s["remote"][0]) for s in sides):
                        print(f"  note: a {name} call went through the relay", file=sys.stderr)
                    f = figures[name]
                    f["ice"].append(max(s["checking_to_ice"] for s in sides))
                    f["connected"].append(max(s["checking_to_connected"] for s in sides))
                    f["triggered"].append(sum(s["stats"]["triggered"] for s in sides))
    print(f"cone <-> cone through two masquerading routers, {args.calls} calls per variant")
    for name, f in figures.items():
        print(f"{name}:")
        print(f"  ICE checking -> ICE completed (slower side): {summary(f['ice'])}")
        print(f"  ICE checking -> connected     (slower side): {summary(f['connected'])}")
        print(f"  triggered checks sent per call: {statistics.mean(f['triggered']):.1f}")
    ours, theirs = (statistics.median(f["connected"]) for f in figures.values())
    print(f"checking -> connected, aioice alone / PeerCall: {theirs / ours:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
