"""Placeholder for `peercall call` until issue 2 lands."""

from __future__ import annotations

import argparse
import sys


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """No options yet."""


def run(args: argparse.Namespace) -> int:
    print("peercall: error: 'call' is not built yet (issue 2)", file=sys.stderr)
    return 2
