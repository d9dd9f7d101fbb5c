"""Path watch and recovery policy: what to do next, as a pure function of what was observed.

The session samples the path four times a second and acts on :func:`next_step`'s answer; the
timing rules live here, testable without sockets:

- CONNECTED and nothing from the peer for :data:`SILENCE_DISCONNECTED`: go RECONNECTING (the old
  ICE session stays up; RFC 7675 consent would take 30 s to notice).
- RECONNECTING and RTP arriving again on the connection carrying the call: back to CONNECTED.
- RECONNECTING and silent long enough (the caller after :data:`SILENCE_RESTART`, the callee
  after :data:`SILENCE_RESTART_ANSWERER`, so both rarely offer at once): restart ICE on a
  fresh connection (RFC 8445 §9), if there is a way to reach the peer. A restart is retried
  after :data:`RESTART_RETRY` only once its offer was answered (an unanswered one is still
  queued for delivery).
- CONNECTED with a restart the peer never completed for :data:`PENDING_TIMEOUT`: drop it.
- Giving up (:data:`SILENCE_FAILED`, RFC 7675 §5.1's 30 s) is the RECONNECTING state's timer.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from app.events import CallState

SILENCE_DISCONNECTED = 2.0
SILENCE_RESTART = 3.0
SILENCE_RESTART_ANSWERER = 3.5
RESTART_RETRY = 6.0
PENDING_TIMEOUT = 15.0
SILENCE_FAILED = 30.0


class Step(enum.Enum):
    NOTHING = "nothing"
    RECONNECTING = "reconnecting"  # CONNECTED -> RECONNECTING
    MEDIA_BACK = "media back"  # RECONNECTING -> CONNECTED
    RESTART = "restart"  # start (or retry) an ICE restart
    DROP_PENDING = "drop pending"  # abandon a restart the peer never completed


@dataclass(frozen=True)
class Observed:
    """One sample of the path, in seconds."""

    state: CallState
    silent: float  # since the last packet of any kind from the peer
    rtp_flowing: bool  # RTP arrived lately on the connection carrying the call
    dialer: bool
    can_renegotiate: bool  # a signaling or control channel can carry a restart
    restarting: bool  # a restart is under way (a pending connection exists)
    restart_answered: bool
    since_restart: float  # since the current restart began


def next_step(o: Observed) -> Step:
    if o.state is CallState.CONNECTED:
        if o.silent >= SILENCE_DISCONNECTED:
            return Step.RECONNECTING
        if o.restarting and o.since_restart > PENDING_TIMEOUT:
            return Step.DROP_PENDING
        return Step.NOTHING
    if o.state is not CallState.RECONNECTING:
        return Step.NOTHING
    if o.rtp_flowing:
        return Step.MEDIA_BACK
    restart_after = SILENCE_RESTART if o.dialer else SILENCE_RESTART_ANSWERER
    if not o.can_renegotiate or o.silent < restart_after:
        return Step.NOTHING
    if not o.restarting:
        return Step.RESTART
    if o.restart_answered and o.since_restart >= RESTART_RETRY:
        return Step.RESTART
    return Step.NOTHING
