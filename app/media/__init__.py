"""Media sources and sinks: microphone, speaker, camera, tone, silence, WAV files, test pattern.

Sources are aiortc ``MediaStreamTrack`` objects (audio: 48 kHz mono s16, 20 ms frames), so a
session sends them as they are. Sinks consume a remote track; see :mod:`app.media.base`.
"""
