"""Issue 11's browser figures: the page's size, and page load -> connected on loopback.

Everything runs as the browser tests do (tests/browser): in a private network namespace whose
only interface is lo, a real ``peercall signal`` serves the page, headless Chromium loads it,
and ``peercall call`` is the desktop. One party waits in a fresh room; then a fresh tab (own
browser context) loads the call link. The figure is the page's own
``performance.mark("peercall-connected")``: milliseconds from the navigation start of that tab
to DTLS connected *and* the chat data channel open, so it includes fetching the page,
getUserMedia (Chromium's fake camera and microphone), joining, ICE, DTLS and SCTP. The marks
``peercall-media`` (getUserMedia done) and ``peercall-joined`` (the server's ``joined``) are
printed too. Scenarios, side by side in one run, ``--runs`` times each:

- ``desktop offers``: ``peercall call`` (loopback, tone) already sent its offer; the page answers;
- ``page offers``: ``peercall call --answer`` waits in the room (the server's log says it
  joined); the page finds it there and offers;
- ``chromium <-> chromium`` (the anchor): another tab waits in the room; the page offers.

Usage: ``.venv/bin/python bench/bench_browser.py [--runs 5]``; needs root (ip netns) and
chromium. Wrap in ``flock -x /tmp/peercall-bench.lock`` on a shared machine.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from signaling import web
from tests.browser.conftest import BROWSER_TONE, SIGNAL_PORT, Process, running, write_tone
from tests.browser.lab import LoopbackNamespace, can_create
from tests.chromium import Chromium, DevTools, Page, available

PAGE = f"http://127.0.0.1:{SIGNAL_PORT}/"
SERVER = f"ws://127.0.0.1:{SIGNAL_PORT}"
MARKS = ("peercall-media", "peercall-joined", "peercall-connected")


async def marks(page: Page) -> dict[str, float]:
    await page.wait_for("document.body.dataset.state === 'connected'", within=60)
    names = ", ".join(f"'{m}'" for m in MARKS)
    values: dict[str, float] = await page.evaluate(
        f"Object.fromEntries([{names}]"
        ".map(n => [n, performance.getEntriesByName(n)[0]?.startTime]))"
    )
    return values


def desktop(lab: LoopbackNamespace, work: Path, room: str, *extra: str) -> Process:
    return Process(
        lab,
        work / f"desktop-{room}.log",
        "call",
        "--server",
        SERVER,
        "--room",
        room,
        "--secret",
        "pw",
        "--loopback",
        "--no-devices",
        "--send-tone",
        "1000",
        "--duration",
        "1",
        *extra,
    )


async def run_desktop(
    tools: DevTools, lab: LoopbackNamespace, work: Path, signal: Process, room: str, offers: bool
) -> dict[str, float]:
    proc = desktop(lab, work, room, *([] if offers else ["--answer"]))
    try:
        if offers:
            await proc.until(r"call offering", within=60)
        else:
            await signal.until(rf"joined room {room}$", within=60)
        page = await tools.new_page()
        await page.goto(f"{PAGE}#room={room}&secret=pw&loopback")
        result = await marks(page)
        await page.close()
        await proc.finished()
        return result
    finally:
        proc.stop()


async def run_anchor(tools: DevTools, room: str) -> dict[str, float]:
    waiting = await tools.new_page(f"{PAGE}#room={room}&secret=pw&loopback")
    await waiting.wait_for("document.body.dataset.state === 'waiting'", within=60)
    page = await tools.new_page()
    await page.goto(f"{PAGE}#room={room}&secret=pw&loopback")
    result = await marks(page)
    await waiting.wait_for("document.body.dataset.state === 'connected'", within=60)
    for p in (page, waiting):
        await p.close()
    return result


def summary(label: str, runs: list[dict[str, float]]) -> float:
    connected = [r["peercall-connected"] for r in runs]
    media = statistics.median(r["peercall-media"] for r in runs)
    joined = statistics.median(r["peercall-joined"] for r in runs)
    median = statistics.median(connected)
    print(
        f"  {label:<34} connected median {median:6.0f} ms  (min {min(connected):.0f}, "
        f"max {max(connected):.0f}; getUserMedia done {media:.0f} ms, joined {joined:.0f} ms)"
    )
    return median


async def main(runs: int) -> int:
    raw = web.page_size()
    zipped = sum(len(gzip.compress(web.read(n))) for n in set(web.FILES.values()))
    print(f"page size: {raw} bytes ({raw / 1024:.1f} KiB; {zipped} bytes gzipped), goal < 100 KB")
    print(f"  files: {', '.join(sorted(set(web.FILES.values())))}; nothing fetched from elsewhere")
    if not (available() and can_create()):
        print("skipping the call timings: needs chromium and root (ip netns)")
        return 0
    with tempfile.TemporaryDirectory(prefix="bench-browser-") as tmp:
        work = Path(tmp)
        tone = write_tone(work / "tone.wav", BROWSER_TONE)
        with (
            LoopbackNamespace() as lab,
            running(
                lab, work / "signal.log", "-v", "signal", "--port", str(SIGNAL_PORT), ready="^ready"
            ) as signal,
            Chromium(
                f"--use-file-for-fake-audio-capture={tone}",
                prefix=lab.prefix,
                connect_tcp=lab.connect_tcp,
            ) as browser,
        ):
            async with browser.devtools() as tools:
                # One warm-up of each, not counted (first page load, first aiortc import).
                await run_desktop(tools, lab, work, signal, "warm-d", offers=True)
                await run_anchor(tools, "warm-a")
                results: dict[str, list[dict[str, Any]]] = {"desk": [], "page": [], "anchor": []}
                for i in range(runs):  # interleaved, so machine load hits all three alike
                    results["desk"].append(
                        await run_desktop(tools, lab, work, signal, f"d{i}", offers=True)
                    )
                    results["page"].append(
                        await run_desktop(tools, lab, work, signal, f"p{i}", offers=False)
                    )
                    results["anchor"].append(await run_anchor(tools, f"a{i}"))
    print(f"page load -> connected on loopback, {runs} runs each (goal <= 1000 ms):")
    desk = summary("browser<->desktop, desktop offers", results["desk"])
    page = summary("browser<->desktop, page offers", results["page"])
    anchor = summary("chromium<->chromium (anchor)", results["anchor"])
    print(
        f"ratio to the anchor: desktop offers {desk / anchor:.2f}x, "
        f"page offers {page / anchor:.2f}x"
    )
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="timed calls per scenario")
    sys.exit(asyncio.run(main(parser.parse_args().runs)))
