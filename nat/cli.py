"""Placeholder for `peercall relay` until issue 3 lands."""

from __future__ import annotations

import argparse
import sys


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """No options yet."""


def run(args: argparse.Namespace) -> int:
    print("peercall: error: 'relay' is not built yet (issue 3)", file=sys.stderr)
    return 2
