"""Placeholder for `peercall signal` until issue 4 lands."""

from __future__ import annotations

import argparse
import sys


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """No options yet."""


def run(args: argparse.Namespace) -> int:
    print("peercall: error: 'signal' is not built yet (issue 4)", file=sys.stderr)
    return 2
