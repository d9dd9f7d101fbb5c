"""How fast calls start and recover through the NAT lab's real NATs (issue 15's "Must show").

Needs root (network namespaces). Wrap in the bench lock:

    flock -x /tmp/peercall-bench.lock .venv/bin/python bench/bench_netlab.py [--runs 3]

For every scenario of tests/netlab/scenarios.py it launches two ``peercall call`` processes
(tone in, WAV out) with ``peercall signal`` and a relay on the lab's internet host, and prints:

- launch -> media: from launching both processes until each side's recording holds the
  other's tone (both ways), once with PeerCall's relay and once with coturn's ``turnserver``,
  alternating run by run so both see the same machine load; "ratio" is ours / coturn's;
- launch -> "call connected" as the CLI prints it, and the ICE checking -> connected/completed
  time from each side's ``--export`` (cone-cone is the issue's 0.15 s goal);
- the same under 5 % loss on one router;
- end of a 6 s outage -> media again, and a router address change -> media again.

Figures are medians over ``--runs`` runs with (min-max). "-" means it did not happen within
the wait (shown in the header). Nothing here asserts; the tests in tests/netlab/ do.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from tempfile import TemporaryDirectory

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np

from app.media.analysis import DEFAULT_THRESHOLD, tone_power
from tests.netlab.calls import BLOCK, WAV_HEADER, Caller, start_pair
from tests.netlab.lab import Lab, Lan, netns_unavailable_reason
from tests.netlab.scenarios import SCENARIOS, build

MEDIA_WAIT = 20.0  # seconds to wait for first media (udp-blocked-cone needs TURN/TCP)
RECOVERY_WAIT = 20.0
OUTAGE = 6.0
# 20 ms blocks of the peer's tone that count as "media flows" (120 ms): more than the WAV
# writer's 8 KiB buffer (85 ms), so audio buffered before an outage cannot pass for new media.
FLOWING = 6


class ToneClock:
    """Reads a growing WAV incrementally and remembers when the peer's tone was first heard."""

    def __init__(self, receiver: Caller, freq: float) -> None:
        self.receiver, self.freq = receiver, freq
        self.offset = WAV_HEADER
        self.samples = 0  # samples analysed so far
        self.blocks_since_mark = 0
        self.mark = 0  # only tone after this sample counts
        self.heard_at: float | None = None

    def set_mark(self) -> None:
        self.poll()
        self.mark, self.blocks_since_mark, self.heard_at = self.samples, 0, None

    def poll(self) -> float | None:
        try:
            with self.receiver.wav.open("rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return None
        usable = len(data) // (2 * BLOCK) * (2 * BLOCK)
        x = np.frombuffer(data[:usable], dtype="<i2")
        for i in range(len(x) // BLOCK):
            if tone_power(x[i * BLOCK : (i + 1) * BLOCK], self.freq) >= DEFAULT_THRESHOLD:
                self.blocks_since_mark += 1
        self.offset += usable
        self.samples += len(x)
        if self.heard_at is None and self.blocks_since_mark >= FLOWING:
            self.heard_at = time.monotonic()
        return self.heard_at


def watch(
    callers: tuple[Caller, Caller], clocks: tuple[ToneClock, ToneClock], timeout: float
) -> tuple[float | None, float | None]:
    """Monotonic times by which both sides (1) hear each other, (2) printed "call connected".

    Polled together every 20 ms; after media flows, "connected" gets ``timeout`` s more (under
    loss it lags media by seconds today).
    """
    deadline = time.monotonic() + timeout
    media = connected = None
    while time.monotonic() < deadline:
        now = time.monotonic()
        if connected is None and all("peercall: call connected" in c.output() for c in callers):
            connected = now
        if media is None:
            times = [c.poll() for c in clocks]
            if all(t is not None for t in times):
                media = max(t for t in times if t is not None)
                deadline = now + timeout
        if media is not None and connected is not None:
            break
        if any(c.proc.poll() is not None for c in callers):
            break
        time.sleep(0.02)
    return media, connected


def wait_both(clocks: tuple[ToneClock, ToneClock], timeout: float) -> float | None:
    """Monotonic time by which both sides hear each other again, or None after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        times = [c.poll() for c in clocks]
        if all(t is not None for t in times):
            return max(t for t in times if t is not None)
        if any(c.receiver.proc.poll() is not None for c in clocks):
            return None
        time.sleep(0.02)
    return None


def ice_checking_to_connected(caller: Caller) -> float | None:
    """ICE "checking" to "connected"/"completed" from the side's own --export event times."""
    start = end = None
    for event in caller.exported().get("events", []):
        if event.get("event") != "TransportStateChanged" or event["layer"] != "ice-connection":
            continue
        if event["state"] == "checking" and start is None:
            start = event["at"]
        elif event["state"] in ("connected", "completed") and start is not None and end is None:
            end = event["at"]
    return None if start is None or end is None else end - start


def _path_kind(caller: Caller) -> str:
    """The final selected pair as a short word: direct, or relay over UDP/TCP (from --export)."""
    try:
        pair = caller.exported()["selected"]["pair"]
    except (OSError, KeyError, TypeError, ValueError):
        return "?"
    ends = (pair["local"], pair["remote"])
    if not any(e["type"] == "relay" for e in ends):
        return "direct"
    server = pair["local"].get("server") or ""
    return "relay/TCP" if "transport=tcp" in server else "relay"


def call_start_to_connected(caller: Caller) -> float | None:
    """From the call's first state change to "connected", on the side's own --export clock.

    Without the interpreter's start-up: the issue's "under 5 % loss, connected within 2 s".
    """
    states = [e for e in caller.exported().get("events", []) if e.get("event") == "StateChanged"]
    connected = [e["at"] for e in states if e["new"] == "connected"]
    return connected[0] - states[0]["at"] if states and connected else None


@dataclass
class Figures:
    values: dict[str, list[float | None]] = field(default_factory=dict)
    paths: dict[str, list[str]] = field(default_factory=dict)

    def path(self, key: str) -> str:
        seen = self.paths.get(key, [])
        return "/".join(sorted(set(seen))) if seen else "-"

    def add(self, key: str, value: float | None) -> None:
        self.values.setdefault(key, []).append(value)

    def cell(self, key: str) -> str:
        got = [v for v in self.values.get(key, []) if v is not None]
        missing = len(self.values.get(key, [])) - len(got)
        if not got:
            return "-" if key in self.values else ""
        text = f"{statistics.median(got):.2f}"
        if len(got) > 1:
            text += f" ({min(got):.2f}-{max(got):.2f})"
        return text + (f" {missing}x-" if missing else "")

    def median(self, key: str) -> float | None:
        got = [v for v in self.values.get(key, []) if v is not None]
        return statistics.median(got) if got else None


def one_call(
    scenario: str, relay_kind: str, workdir: Path, figs: Figures, *, loss: int = 0,
    recovery: str | None = None,
) -> None:  # fmt: skip
    """Launch a call in a fresh lab and record its figures under ``scenario``/``relay_kind``."""
    with Lab(workdir=workdir) as lab:
        a, b = build(lab, scenario)
        assert a.lan is not None
        if loss:
            lab.loss(a.lan, loss)
        url = lab.start_signal(log=workdir / "signal.log")
        relay = lab.start_relay(relay_kind, log=workdir / "relay.log")
        ice = [relay.stun, relay.turn("udp"), relay.turn("tcp")]
        launched = time.monotonic()
        ca, cb = start_pair(lab, a, b, workdir, server=url, ice_a=ice, ice_b=ice)
        clocks = (ToneClock(ca, cb.tone), ToneClock(cb, ca.tone))
        label = scenario + (" 5% loss" if loss else "") + (f" {recovery}" if recovery else "")
        key = f"{label}|{relay_kind}"
        media, connected = watch((ca, cb), clocks, MEDIA_WAIT)
        figs.add(f"{key}|media", None if media is None else media - launched)
        figs.add(f"{key}|connected", None if connected is None else connected - launched)
        if recovery is not None and media is not None:
            _recover(lab, a.lan, recovery, clocks, figs)
        lab.stop(ca.proc, grace=10)
        lab.stop(cb.proc, grace=10)
        if media is not None:
            figs.paths.setdefault(key, []).append(_path_kind(ca))
            starts = [call_start_to_connected(c) for c in (ca, cb)]
            figs.add(f"{key}|start", None if None in starts else max(t for t in starts if t))
            times = [ice_checking_to_connected(c) for c in (ca, cb)]
            figs.add(f"{key}|ice", None if None in times else max(t for t in times if t))


def _recover(
    lab: Lab, lan: Lan, how: str, clocks: tuple[ToneClock, ToneClock], figs: Figures
) -> None:
    time.sleep(1.0)  # a second of steady media first
    if how == "outage":
        lab.outage(lan)
        time.sleep(OUTAGE)
        for c in clocks:
            c.set_mark()
        lab.restore(lan)
    else:
        for c in clocks:
            c.set_mark()
        lab.change_public_address(lan)
    back = time.monotonic()
    again = wait_both(clocks, RECOVERY_WAIT)
    figs.add(f"recovery|{how}", None if again is None else again - back)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="runs per figure (default 3)")
    parser.add_argument(
        "--scenario", action="append", choices=list(SCENARIOS), help="only these (repeatable)"
    )
    args = parser.parse_args()
    reason = netns_unavailable_reason()
    if reason:
        print(f"bench_netlab: skipped: {reason}")
        return 0
    scenarios = args.scenario or list(SCENARIOS)
    figs = Figures()
    with TemporaryDirectory(prefix="bench-netlab-") as tmp:
        n = 0

        def workdir() -> Path:
            nonlocal n
            n += 1
            path = Path(tmp) / str(n)
            path.mkdir()
            return path

        for _ in range(args.runs):
            for scenario in scenarios:
                for relay_kind in ("peercall", "coturn"):  # alternating: same load for both
                    one_call(scenario, relay_kind, workdir(), figs)
            for relay_kind in ("peercall", "coturn"):
                one_call("cone-cone", relay_kind, workdir(), figs, loss=5)
            one_call("cone-cone", "peercall", workdir(), figs, recovery="outage")
            one_call("cone-cone", "peercall", workdir(), figs, recovery="address")
    _print(figs, scenarios, args.runs)
    return 0


def _print(figs: Figures, scenarios: list[str], runs: int) -> None:
    print(f"NAT lab, {runs} run(s) per figure, seconds: median (min-max); '-' = not within")
    print(f"{MEDIA_WAIT:.0f} s (media) / {RECOVERY_WAIT:.0f} s (recovery); 'Nx-' = N runs missed")
    head = (
        f"{'scenario':24} {'path':12} {'launch->media ours':22} {'coturn':22} {'ratio':>6}  "
        f"{'launch->connected ours':22} {'call start->connected':22} {'ICE checking->connected':24}"
    )
    print(head)
    print("-" * len(head))
    for scenario in [*scenarios, "cone-cone 5% loss"]:
        ours, theirs = (
            figs.median(f"{scenario}|peercall|media"),
            figs.median(f"{scenario}|coturn|media"),
        )
        ratio = f"{ours / theirs:.2f}" if ours and theirs else "-"
        print(
            f"{scenario:24} {figs.path(f'{scenario}|peercall'):12}"
            f" {figs.cell(f'{scenario}|peercall|media'):22}"
            f" {figs.cell(f'{scenario}|coturn|media'):22} {ratio:>6}  "
            f"{figs.cell(f'{scenario}|peercall|connected'):22}"
            f" {figs.cell(f'{scenario}|peercall|start'):22}"
            f" {figs.cell(f'{scenario}|peercall|ice'):24}"
        )
    print()
    print(f"end of a {OUTAGE:.0f} s outage -> media again (goal <= 2 s):"
          f" {figs.cell('recovery|outage')}")  # fmt: skip
    print(f"router address change -> media again (goal <= 5 s): {figs.cell('recovery|address')}")
    print("goals: launch->media <= 1.0x coturn; cone-cone ICE <= 0.15 s; 5% loss connected <= 2 s")
    print("(the relay only carries media on 'relay' paths; elsewhere it only answers STUN/TURN")
    print(" during gathering, so the ratio there shows start-up noise, not the relay)")


if __name__ == "__main__":
    sys.exit(main())
