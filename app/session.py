"""Compatibility: the call engine lives in :mod:`app.call` (this name is what the window and
older scripts import)."""

from app.call.session import CallOptions, CallSession
from app.call.state import TRANSITIONS, CallStateMachine

__all__ = ["TRANSITIONS", "CallOptions", "CallSession", "CallStateMachine"]
