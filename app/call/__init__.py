"""The call core: one concern a module (state machine, SAS, stats, ...), orchestrated by
:class:`app.session.CallSession`."""
