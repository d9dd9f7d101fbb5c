"""The audio jitter buffer (pure) and the SDP helper; gathering is covered by test_session."""

from __future__ import annotations

from aiortc.rtp import RtpPacket

from app.rtcfixes import AudioJitterBuffer, strip_end_of_candidates


def packet(seq: int) -> RtpPacket:
    p = RtpPacket(payload_type=111, sequence_number=seq % 65536, timestamp=(seq * 960) % 2**32)
    p._data = seq.to_bytes(4, "big")  # type: ignore[attr-defined]
    return p


def played(jb: AudioJitterBuffer, seqs: list[int]) -> list[int | None]:
    out: list[int | None] = []
    for s in seqs:
        _, frame = jb.add(packet(s))
        out.append(None if frame is None else int.from_bytes(frame.data, "big"))
    return out


def test_in_order_packets_play_at_once() -> None:
    jb = AudioJitterBuffer()
    assert played(jb, [10, 11, 12, 13]) == [10, 11, 12, 13]


def test_reordered_packet_fills_its_hole() -> None:
    jb = AudioJitterBuffer()
    assert played(jb, [1, 3, 2, 4]) == [1, None, 2, 3]


def test_lost_packet_is_skipped_after_a_short_wait() -> None:
    jb = AudioJitterBuffer(skip_after=3)
    assert played(jb, [1, 3, 4, 5]) == [1, None, None, 3]
    assert jb.skipped == 1


def test_depth_comes_back_down_after_a_loss() -> None:
    # aiortc's buffer stays ~16 deep after one loss; ours must return to playing each packet
    # as it arrives once the hole is passed, shedding what queued up behind it.
    jb = AudioJitterBuffer(skip_after=3, shed_after=10)
    assert played(jb, [1, 3, 4, 5]) == [1, None, None, 3]
    results = played(jb, list(range(6, 40)))
    assert results[0] == 4  # two frames still queued behind the skipped hole
    # Plain loss, no reordering: the whole backlog is shed, one frame per window, and each
    # packet plays as it arrives again (latency back to its value before the loss).
    assert results[-5:] == [35, 36, 37, 38, 39]
    assert jb.dropped == 2
    assert jb._count() == 0


def test_slack_is_kept_only_while_packets_are_reordered() -> None:
    # Neighbours swapped (one frame of backlog is useful then), then in order again: once no
    # packet has filled a hole for a window, the frame of slack is shed too.
    jb = AudioJitterBuffer(shed_after=4)
    swapped = [0, *(n for k in range(1, 20, 2) for n in (k + 1, k))]
    played(jb, swapped)
    assert (jb.dropped, jb._count()) == (0, 1)
    results = played(jb, list(range(21, 40)))
    assert jb.dropped == 1
    assert jb._count() == 0
    assert results[-3:] == [37, 38, 39]


def test_too_deep_buffer_drops_oldest() -> None:
    jb = AudioJitterBuffer(skip_after=100, max_depth=4, capacity=16)
    out = played(jb, [1, 3, 4, 5, 6, 7])
    assert out[:5] == [1, None, None, None, None]
    assert out[5] == 4  # hole 2 passed, 3 dropped to keep depth <= 4
    assert (jb.skipped, jb.dropped) == (1, 1)


def test_jitter_does_not_shed_audio() -> None:
    # Neighbours swapped all call long: one frame of slack absorbs it, nothing is dropped.
    jb = AudioJitterBuffer(shed_after=3)
    order = [0, *(n for k in range(1, 40, 2) for n in (k + 1, k))]
    out = played(jb, order)
    assert (jb.dropped, jb.skipped) == (0, 0)
    assert [x for x in out if x is not None] == list(range(0, 40))


def test_late_packet_after_playout_is_ignored() -> None:
    jb = AudioJitterBuffer()
    assert played(jb, [1, 2, 3, 1]) == [1, 2, 3, None]


def test_sequence_wraps() -> None:
    jb = AudioJitterBuffer()
    assert played(jb, [65534, 65535, 65536, 65537]) == [65534, 65535, 65536, 65537]


def test_big_jump_restarts() -> None:
    jb = AudioJitterBuffer()
    assert played(jb, [5, 6, 500, 501]) == [5, 6, 500, 501]


def test_strip_end_of_candidates() -> None:
    sdp = "v=0\r\na=candidate:1 1 udp 1 1.2.3.4 5 typ host\r\na=end-of-candidates\r\nm=x\r\n"
    assert (
        strip_end_of_candidates(sdp) == "v=0\r\na=candidate:1 1 udp 1 1.2.3.4 5 typ host\r\nm=x\r\n"
    )
