"""A store that fails for a moment (a full disk, made real with RLIMIT_FSIZE): nothing is lost, nothing reused.

Each case runs in a child process whose file size limit is lowered to the
write-ahead log's current size, so the next write fails with EFBIG exactly as
on a full disk; then the limit is lifted ("space is back").
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import zmq

import zjournal

_PRELUDE = r"""
import glob, json, os, resource, signal, sys, zmq, zjournal
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)   # EFBIG instead of being killed
_, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
path = sys.argv[1]

def disk_full():
    wal = max(glob.glob(path + "/*.log"), key=os.path.getsize)
    resource.setrlimit(resource.RLIMIT_FSIZE, (os.path.getsize(wal), hard))

def space_back():
    resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))
"""

RECEIVE = (
    _PRELUDE
    + r"""
policy, before, total = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
j = zjournal.open(path, plugins=False)
ctx = zmq.Context()
push = ctx.socket(zmq.PUSH); push.sndhwm = 0; push.bind("inproc://r")
raw = ctx.socket(zmq.PULL); raw.rcvhwm = 0
options = {"explicit": {"ack": "explicit"}, "prefetch": {"prefetch": 64}}.get(policy, {})
pull = j.wrap(raw, name="in", **options)
pull.connect("inproc://r")
for i in range(total):
    push.send(b"m%05d" % i)
got = [pull.recv() for _ in range(before)]
disk_full()
errors = 0
try:
    got.append(pull.recv())
except zjournal.StoreError:
    errors += 1
counts_agree = j.count(state="pending") == len(list(j.entries(state="pending")))
space_back()
while pull.poll(300):  # the kept message is seen by poll, and handed over first
    got.append(pull.recv())
print(json.dumps({"errors": errors, "got": [g.decode() for g in got], "counts_agree": counts_agree,
                  "pending": j.count(state="pending"),
                  "listed": len(list(j.entries(state="pending")))}))
"""
)


def run_child(script: str, *args: object) -> dict:
    done = subprocess.run([sys.executable, "-c", script, *map(str, args)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    ("policy", "before"),
    # 'next' journals in the slot: the store write is the 4097th id's block; 'prefetch': the second batch
    [("explicit", 10), ("next", 4096), ("prefetch", 64)],
)
def test_a_message_whose_journaling_fails_is_kept_and_handed_over_once_space_is_back(tmp_path, policy, before):
    total = before + 50
    result = run_child(RECEIVE, tmp_path / "j.journal", policy, before, total)
    assert result["errors"] == 1
    assert result["got"] == [f"m{i:05d}" for i in range(total)]  # every message once, in order
    assert result["counts_agree"]
    assert result["pending"] == result["listed"]


IDS = (
    _PRELUDE
    + r"""
j = zjournal.open(path, plugins=False)
ctx = zmq.Context()
push = ctx.socket(zmq.PUSH); push.sndhwm = 0; push.bind("inproc://r")
raw = ctx.socket(zmq.PULL); raw.rcvhwm = 0
pull = j.wrap(raw, name="in"); pull.connect("inproc://r")
for i in range(4096 + 1 + 20):
    push.send(b"m%05d" % i)
ids = []
for i in range(4096):
    pull.recv(); ids.append(pull.last_id)
disk_full()
try:
    pull.recv()   # the 4097th id needs the next block written: it fails
except zjournal.StoreError:
    pass
space_back()
for i in range(21):
    pull.recv(); ids.append(pull.last_id)
print(json.dumps({"ids": ids}), flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""
)


def test_ids_are_never_reused_after_a_failed_id_block_write_and_a_crash(tmp_path) -> None:
    path = tmp_path / "j.journal"
    done = subprocess.run([sys.executable, "-c", IDS, str(path)], capture_output=True, text=True, timeout=60)
    ids = json.loads(done.stdout.strip().splitlines()[-1])["ids"]
    assert ids == sorted(set(ids))
    with zjournal.open(str(path), plugins=False) as j:
        new = j.append("in", [b"after the crash"], direction="in")
    assert new > max(ids)


SNDMORE = (
    _PRELUDE
    + r"""
j = zjournal.open(path, plugins=False)
ctx = zmq.Context()
pull = ctx.socket(zmq.PULL); pull.bind("inproc://s")
push = j.wrap(ctx.socket(zmq.PUSH), name="out"); push.connect("inproc://s")
for _ in range(4000):   # fill the id block so that the last frame needs a store write
    push.send(b"x")
    pull.recv()
push.send(b"head", zmq.SNDMORE)
disk_full()
failed = False
try:
    while True:   # the last frame fails once the block runs out
        push.send(b"tail")
        pull.recv_multipart()
        push.send(b"head", zmq.SNDMORE)
except zjournal.StoreError:
    failed = True
space_back()
push.send(b"alone")
print(json.dumps({"failed": failed, "next": [f.decode() for f in pull.recv_multipart()]}))
"""
)


def test_a_multipart_message_refused_at_its_last_frame_reaches_no_peer(tmp_path) -> None:
    result = run_child(SNDMORE, tmp_path / "j.journal")
    assert result["failed"]
    assert result["next"] == ["alone"]  # nothing of the refused message glued onto the next one


def test_a_too_large_multipart_message_reaches_no_peer_and_the_socket_stays_usable(open_journal, ctx, endpoint):
    journal = open_journal(max_message_size=100)
    addr = endpoint()
    pull = ctx.socket(zmq.PULL)
    pull.bind(addr)
    push = journal.wrap(ctx.socket(zmq.PUSH), name="out")
    push.connect(addr)
    push.send(b"a" * 60, zmq.SNDMORE)
    tracker = push.send(b"b" * 10, zmq.SNDMORE, copy=False, track=True)
    assert isinstance(tracker, zmq.MessageTracker)  # pyzmq's return for a tracked frame
    with pytest.raises(zjournal.MessageTooLargeError):
        push.send(b"c" * 60)
    assert pull.poll(50) == 0  # no part of it went out
    push.send_multipart([b"next", b"message"])
    assert pull.recv_multipart() == [b"next", b"message"]
    assert [e.frames for e in journal.entries(name="out")] == [[b"next", b"message"]]


def test_a_sndmore_frame_with_noblock_raises_again_at_once_when_nothing_can_be_queued(journal, ctx):
    push = journal.wrap(ctx.socket(zmq.PUSH), name="out")
    # no peer at all: libzmq cannot queue anything
    with pytest.raises(zmq.Again):
        push.send(b"head", zmq.SNDMORE | zmq.NOBLOCK)
    assert journal.count() == 0


READ_WHILE_FULL = (
    _PRELUDE
    + r"""
j = zjournal.open(path, plugins=False)
first = j.append("a", [b"x" * 100], direction="in")
disk_full()
failures = []
for _ in range(3):  # the first fails the write; the next ones fail to open the store again
    try:
        j.append("a", [b"y" * 100000], direction="in")
    except zjournal.StoreError:
        failures.append("append")
reads = {}
for what, read in (("get", lambda: j.get(first).frames[0][:1].decode()), ("count", lambda: j.count()),
                   ("entries", lambda: len(list(j.entries())))):
    try:
        reads[what] = read()
    except zjournal.StoreError:
        reads[what] = "StoreError"
    except Exception as e:
        reads[what] = type(e).__name__
space_back()
after = j.append("a", [b"z"], direction="in")
print(json.dumps({"failures": failures, "reads": reads, "after": after > first, "count": j.count()}))
"""
)


def test_reads_while_the_store_cannot_be_opened_again_raise_store_error_or_answer(tmp_path):
    result = run_child(READ_WHILE_FULL, tmp_path / "j.journal")
    assert result["failures"] == ["append"] * 3
    for what, answer in result["reads"].items():  # never InvalidArgumentError ("unknown table")
        assert answer in ({"get": "x", "count": 1, "entries": 1}[what], "StoreError"), (what, answer)
    assert result["after"] and result["count"] == 2


POLLED = (
    _PRELUDE
    + r"""
from zjournal.sockets import confirm_channel, confirm_wire as wire
origin = b"\x05" * 16
j = zjournal.open(path, plugins=False)
ctx = zmq.Context()
intake = confirm_channel.open_intake(origin, "tcp://127.0.0.1:*")
back = intake.get(zmq.LAST_ENDPOINT)
router = j.wrap(ctx.socket(zmq.ROUTER), name="in", ack="explicit")  # (a store write per message)
router.bind("inproc://r")
dealer = ctx.socket(zmq.DEALER); dealer.connect("inproc://r")
send = lambda seq: dealer.send(wire.encode_merged(origin, seq, 1, back, b"m%d" % seq))
send(1)
router.recv_multipart()
router.ack()
send(2)
assert router.poll(5000)   # the poll reads m2 whole, its header off
disk_full()
errors = 0
try:
    router.recv_multipart()
except zjournal.StoreError:
    errors += 1
space_back()
got = router.recv_multipart()[1].decode()
send(2)                    # its confirmation was lost: sent again
print(json.dumps({"errors": errors, "got": got, "resend_handed": bool(router.poll(500)),
                  "dropped": j.info()["confirm"]["duplicates_dropped"]}))
"""
)


def test_a_confirm_senders_message_a_poll_read_keeps_its_dedup_key_when_journaling_it_fails(tmp_path) -> None:
    """Journaled once space is back, with its key: the sender's resend of it is dropped, not handed over again."""
    result = run_child(POLLED, tmp_path / "j.journal")
    assert result == {"errors": 1, "got": "m2", "resend_handed": False, "dropped": 1}
