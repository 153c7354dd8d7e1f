"""The wire format of end-to-end confirms: round trips, and hostile frames that are not headers."""

from __future__ import annotations

import hypothesis.strategies as st
import pytest
from hypothesis import given

from zjournal.sockets import confirm_wire as wire

ORIGIN = bytes(range(16))


@given(
    seq=st.integers(min_value=1, max_value=2**64 - 1),
    data=st.data(),
    endpoint=st.sampled_from(["tcp://127.0.0.1:5555", "ipc:///tmp/zj-confirm", "inproc://zj-1", "tcp://[::1]:7"]),
)
def test_a_header_comes_back_as_it_was_made(seq: int, data, endpoint: str) -> None:
    floor = data.draw(st.integers(min_value=0, max_value=seq))
    frame = wire.encode_header(ORIGIN, seq, floor, endpoint.encode())
    assert wire.parse_header(frame) == wire.Header(ORIGIN, seq, floor, endpoint)


@pytest.mark.parametrize(
    "frame",
    [
        b"",
        b"ZJC1",
        b"ZJC1" + b"x" * 20,  # too short for the fixed part
        wire.encode_header(ORIGIN, 5, 1, b""),  # no endpoint
        wire.encode_header(ORIGIN, 5, 1, b"http://example:80"),  # not a ZeroMQ address
        wire.encode_header(ORIGIN, 5, 1, b"tcp://\x1b[31mred"),  # a terminal escape
        wire.encode_header(ORIGIN, 5, 1, b"tcp://\xff\xfe"),  # not UTF-8
        wire.encode_header(ORIGIN, 5, 1, b"tcp://" + b"h" * 300),  # too long
        wire.encode_header(ORIGIN, 0, 0, b"tcp://127.0.0.1:1"),  # sequence 0 is no entry
        wire.encode_header(ORIGIN, 5, 6, b"tcp://127.0.0.1:1"),  # a floor above the message
        b"ZJC2" + wire.encode_header(ORIGIN, 5, 1, b"tcp://127.0.0.1:1")[4:],  # another version
    ],
)
def test_a_frame_that_is_not_a_well_formed_header_is_the_applications(frame: bytes) -> None:
    assert wire.parse_header(frame) is None


@given(st.lists(st.integers(min_value=1, max_value=2**64 - 1), min_size=1, max_size=300))
def test_confirms_come_back_as_they_were_made(seqs: list[int]) -> None:
    assert wire.parse_confirms(wire.encode_confirms(ORIGIN, seqs)) == (ORIGIN, seqs)


@pytest.mark.parametrize(
    "frames",
    [
        [],
        [b"ZJK1" + ORIGIN],
        [b"ZJK1" + ORIGIN, b""],
        [b"ZJK1" + ORIGIN, b"1234567"],  # not whole sequences
        [b"ZJK1" + ORIGIN[:15], b"12345678"],
        [b"ZJKX" + ORIGIN, b"12345678"],
        [b"ZJK1" + ORIGIN, b"12345678", b"extra"],
        [b"ZJK1" + ORIGIN, b"\0" * 8 * (wire.MAX_CONFIRMS + 1)],
    ],
)
def test_anything_else_is_not_a_confirm_message(frames: list[bytes]) -> None:
    assert wire.parse_confirms(frames) is None
