"""List the audio devices and cameras PeerCall can use.

Input and output devices are PortAudio's (the names and indices ``peercall call --mic`` and
``--speaker`` accept); ``*`` marks the default. Cameras are Video4Linux nodes.
"""

from __future__ import annotations

import argparse
import json
from typing import Any


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")


def run(args: argparse.Namespace) -> int:
    from app.media.devices import Kind, list_audio_devices
    from app.media.video import list_cameras

    audio = list_audio_devices()
    cameras = list_cameras()
    if args.json:
        report: dict[str, Any] = {
            "input": [d.as_dict() for d in audio if d.supports("input")],
            "output": [d.as_dict() for d in audio if d.supports("output")],
            "cameras": [{"index": c.index, "path": c.path, "name": c.name} for c in cameras],
        }
        print(json.dumps(report, indent=2))
        return 0
    sections: tuple[tuple[Kind, str], ...] = (
        ("input", "Input devices"),
        ("output", "Output devices"),
    )
    for kind, title in sections:
        print(f"{title}:")
        rows = [d for d in audio if d.supports(kind)]
        if not rows:
            print("  (none)")
        for d in rows:
            default = d.is_default_input if kind == "input" else d.is_default_output
            channels = d.max_input_channels if kind == "input" else d.max_output_channels
            print(
                f"  {'*' if default else ' '} {d.index:>3}  {d.name}  "
                f"[{d.hostapi}, {channels} ch, {d.default_samplerate:g} Hz]"
            )
    print("Cameras:")
    if not cameras:
        print("  (none)")
    for c in cameras:
        print(f"    {c.index:>3}  {c.name}  [{c.path}]")
    return 0
