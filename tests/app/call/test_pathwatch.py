"""The recovery policy as a table: observations in, next step out (no sockets, no clock)."""

from __future__ import annotations

import dataclasses

import pytest

from app.call.pathwatch import Observed, Step, next_step
from app.events import CallState

S = CallState
QUIET = Observed(
    state=S.CONNECTED,
    silent=0.1,
    rtp_flowing=True,
    dialer=True,
    can_renegotiate=True,
    restarting=False,
    restart_answered=False,
    since_restart=0.0,
)


def obs(**changes: object) -> Observed:
    return dataclasses.replace(QUIET, **changes)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("observed", "step"),
    [
        (QUIET, Step.NOTHING),
        (obs(silent=1.9, rtp_flowing=False), Step.NOTHING),
        (obs(silent=2.0, rtp_flowing=False), Step.RECONNECTING),
        # a restart the peer never completed, while media flows on the old connection
        (obs(restarting=True, since_restart=15.1), Step.DROP_PENDING),
        (obs(restarting=True, since_restart=14.0), Step.NOTHING),
        # RECONNECTING: media back on the old path wins over everything
        (obs(state=S.RECONNECTING, silent=5, rtp_flowing=True), Step.MEDIA_BACK),
        # the caller restarts after 3 s, the callee after 3.5 s (rarely both at once)
        (obs(state=S.RECONNECTING, silent=2.9, rtp_flowing=False), Step.NOTHING),
        (obs(state=S.RECONNECTING, silent=3.0, rtp_flowing=False), Step.RESTART),
        (obs(state=S.RECONNECTING, silent=3.2, rtp_flowing=False, dialer=False), Step.NOTHING),
        (obs(state=S.RECONNECTING, silent=3.5, rtp_flowing=False, dialer=False), Step.RESTART),
        # no signaling and no open control channel: wait for the old path (or give up)
        (
            obs(state=S.RECONNECTING, silent=9, rtp_flowing=False, can_renegotiate=False),
            Step.NOTHING,
        ),
        # a restart under way is retried only once answered, after RESTART_RETRY
        (
            obs(state=S.RECONNECTING, silent=20, rtp_flowing=False, restarting=True,
                since_restart=10),
            Step.NOTHING,
        ),
        (
            obs(state=S.RECONNECTING, silent=20, rtp_flowing=False, restarting=True,
                restart_answered=True, since_restart=5.9),
            Step.NOTHING,
        ),
        (
            obs(state=S.RECONNECTING, silent=20, rtp_flowing=False, restarting=True,
                restart_answered=True, since_restart=6.0),
            Step.RESTART,
        ),
        (obs(state=S.CONNECTING, silent=9, rtp_flowing=False), Step.NOTHING),
    ],
)  # fmt: skip
def test_next_step(observed: Observed, step: Step) -> None:
    assert next_step(observed) is step
