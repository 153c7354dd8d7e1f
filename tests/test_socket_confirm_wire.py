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
    endpoint=st.sampled_from(["tcp://127.0.0.1:5555", "ipc:///tmp/zj-confirm", "ipc://@zj-1", "tcp://[::1]:7"]),
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
        b"ZJC2" + wire.encode_header(ORIGIN, 5, 1, b"tcp://127.0.0.1:1")[4:],  # the merged form's magic
    ],
)
def test_a_frame_that_is_not_a_well_formed_header_is_the_applications(frame: bytes) -> None:
    assert wire.parse_header(frame) is None


@given(
    seq=st.integers(min_value=1, max_value=2**64 - 1),
    data=st.data(),
    body=st.binary(max_size=64),
    endpoint=st.sampled_from(["tcp://127.0.0.1:5555", "ipc:///tmp/zj-confirm", "ipc://@zj-1"]),
)
def test_a_merged_frame_gives_back_its_header_and_the_applications_frame(seq: int, data, body, endpoint) -> None:
    floor = data.draw(st.integers(min_value=0, max_value=seq))
    frames = [wire.encode_merged(ORIGIN, seq, floor, endpoint.encode(), body)]
    pack, front, back = wire.merged_packer(ORIGIN, endpoint.encode())  # what a sender uses instead
    assert pack(front, seq, floor, back) + body == frames[0]
    assert wire.take_header(frames) == wire.Header(ORIGIN, seq, floor, endpoint)
    assert frames == [body]


def test_take_header_takes_either_form_off_and_leaves_anything_else_alone() -> None:
    header = wire.Header(ORIGIN, 5, 1, "tcp://127.0.0.1:1")
    frames = [b"id", wire.encode_header(ORIGIN, 5, 1, b"tcp://127.0.0.1:1"), b"a", b"b"]
    assert wire.take_header(frames, 1) == header and frames == [b"id", b"a", b"b"]
    frames = [b"id", wire.encode_merged(ORIGIN, 5, 1, b"tcp://127.0.0.1:1", b"a")]
    assert wire.take_header(frames, 1) == header and frames == [b"id", b"a"]
    for frames in (
        [wire.encode_header(ORIGIN, 5, 1, b"tcp://127.0.0.1:1")],  # a header frame with nothing after it
        [wire.encode_merged(ORIGIN, 5, 1, b"tcp://127.0.0.1:1", b"a"), b"b"],  # a merged frame is a whole message
        [b"plain", b"frames"],
        [],
    ):
        before = list(frames)
        assert wire.take_header(frames) is None and frames == before


@pytest.mark.parametrize(
    "frame",
    [
        b"ZJC2",
        b"ZJC2" + b"x" * 30,  # too short for the fixed part
        wire.encode_merged(ORIGIN, 5, 1, b"", b"body"),  # no endpoint
        wire.encode_merged(ORIGIN, 5, 1, b"tcp://127.0.0.1:1", b"")[:-3],  # shorter than its endpoint says
        wire.encode_merged(ORIGIN, 5, 1, b"http://example:80", b"body"),
        wire.encode_merged(ORIGIN, 5, 1, b"tcp://\x1b[31mred", b"body"),
        wire.encode_merged(ORIGIN, 5, 1, b"tcp://\xff\xfe", b"body"),
        wire.encode_merged(ORIGIN, 5, 1, b"tcp://" + b"h" * 300, b"body"),
        wire.encode_merged(ORIGIN, 0, 0, b"tcp://127.0.0.1:1", b"body"),
        wire.encode_merged(ORIGIN, 5, 6, b"tcp://127.0.0.1:1", b"body"),
        b"ZJC1" + wire.encode_merged(ORIGIN, 5, 1, b"tcp://127.0.0.1:1", b"body")[4:],  # the other form's magic
    ],
)
def test_a_frame_that_is_not_a_well_formed_merged_one_is_the_applications(frame: bytes) -> None:
    assert wire.parse_merged(frame) is None
    frames = [frame]
    assert wire.take_header(frames) is None and frames == [frame]


_SENDERS = [(ORIGIN, b"tcp://127.0.0.1:1"), (ORIGIN, b"tcp://127.0.0.1:12"), (bytes(range(16)), b"ipc://zj")]


@st.composite
def _received_frame(draw: st.DrawFn) -> bytes:
    """A frame a receiver may see: a sender's merged frame, one spoiled in one place, or anything."""
    origin, endpoint = draw(st.sampled_from(_SENDERS))
    seq = draw(st.integers(min_value=0, max_value=2**64 - 1))
    floor = draw(st.integers(min_value=0, max_value=2**64 - 1))
    frame = wire.encode_merged(origin, seq, floor, endpoint, draw(st.binary(max_size=16)))
    how = draw(st.sampled_from(["as sent", "cut short", "one byte changed", "anything"]))
    if how == "cut short":
        frame = frame[: draw(st.integers(min_value=0, max_value=len(frame)))]
    elif how == "one byte changed":
        at = draw(st.integers(min_value=0, max_value=len(frame) - 1))
        frame = frame[:at] + bytes([frame[at] ^ draw(st.integers(min_value=1, max_value=255))]) + frame[at + 1 :]
    elif how == "anything":
        frame = draw(st.binary(max_size=80))
    return frame


@given(st.lists(_received_frame(), max_size=30))
def test_a_receivers_parser_reads_every_frame_as_parse_merged_does(frames: list[bytes]) -> None:
    # LastSender compares a frame with the last sender's instead of parsing it: the answers must not differ
    parse = wire.LastSender().parse
    assert [parse(frame) for frame in frames] == [wire.parse_merged(frame) for frame in frames]


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
