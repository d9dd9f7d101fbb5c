"""The call core, one concern a module (as aiortc splits RTCPeerConnection into transports):

- :mod:`~app.call.state`: states × events -> next state as data; timers owned by states;
- :mod:`~app.call.session`: :class:`~app.call.session.CallSession`, the orchestration of one
  call over aiortc (negotiation, trickle, ICE restart, recovery);
- :mod:`~app.call.media`: one source read once for several connections, mute gates, the
  remote feeds the sinks read across renegotiations;
- :mod:`~app.call.iceview`: the path as people read it;
- :mod:`~app.call.stats`: statistics as a pure function of report, previous and now;
- :mod:`~app.call.sas`: the short authentication string;
- :mod:`~app.call.controller`: ring / accept / decline / outcome / history, shared by the
  window and ``peercall call``.

Every private aiortc/aioice access lives in :mod:`app.rtcfixes`.
"""
