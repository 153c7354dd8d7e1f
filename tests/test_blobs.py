"""Large frames live in blob files beside the store (zjournal.journal.blobs): whole, private, never orphaned."""

from __future__ import annotations

import os
import random
import re
import signal
import stat
import subprocess
import sys
import time

import pytest
import zmq

import zjournal
from zjournal import JournalCorruptError, NotAJournalError, StoreError
from zjournal.journal.blobs import BLOB_SIZE

BIG = 1 << 30  # max_message_size for these journals


def payload(seed: int, size: int = BLOB_SIZE + 12_345) -> bytes:
    return random.Random(seed).randbytes(size)


def blob_files(journal_path: str) -> list[str]:
    directory = os.path.join(journal_path, "blobs")
    return sorted(os.listdir(directory)) if os.path.isdir(directory) else []


def test_a_large_frame_is_kept_in_a_private_blob_file_and_comes_back_whole(open_journal, journal_path) -> None:
    j = open_journal(max_message_size=BIG, plugins=False)
    frames = [b"client", b"", b"head", payload(1), b"tail"]
    entry_id = j.append("orders", frames, direction="in", envelope_size=2)
    assert len(blob_files(journal_path)) == 1
    name = blob_files(journal_path)[0]
    assert stat.S_IMODE(os.stat(os.path.join(journal_path, "blobs")).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(os.path.join(journal_path, "blobs", name)).st_mode) == 0o600
    small = j.append("orders", [b"x" * (BLOB_SIZE - 1)], direction="in")  # under the size: in the store
    assert len(blob_files(journal_path)) == 1
    e = j.get(entry_id)
    assert e.frames == frames and e.size == sum(map(len, frames)) and e.body == frames[2:]
    assert j.size_on_disk() >= BLOB_SIZE  # blob files count
    j.close()
    j = open_journal(max_message_size=BIG, plugins=False)
    assert [e.frames for e in j.entries()] == [frames, [b"x" * (BLOB_SIZE - 1)]]
    j.ack(entry_id)
    assert len(blob_files(journal_path)) == 1  # until its record's deletion is fsynced
    assert j.get(small).frames == [b"x" * (BLOB_SIZE - 1)]
    j.close()
    assert blob_files(journal_path) == []


def test_process_mode_removes_deleted_entries_files_after_an_fsync_every_few(open_journal, journal_path) -> None:
    j = open_journal(max_message_size=BIG, plugins=False)
    ids = [j.append("jobs", [payload(100 + i)], direction="in") for i in range(20)]
    for entry_id in ids[:15]:
        j.ack(entry_id)
    assert len(blob_files(journal_path)) == 20  # 15 deleted, their files wait for an fsync of the log
    j.ack(ids[15])
    assert len(blob_files(journal_path)) == 4  # the 16th: one fsync, then all 16 go


def test_state_changes_keep_the_blob_and_a_retained_entry_keeps_it_until_removed(open_journal, journal_path) -> None:
    j = open_journal(max_message_size=BIG, plugins=False, retention=3600)
    a, b = payload(2), payload(22)
    first = j.append("jobs", [a], direction="out")
    second = j.append("jobs", [b], direction="out")
    j.attempt(first)
    j.nack(first)
    j.dead(first, "poison")
    j.ack(second)  # retained: still readable
    assert (j.get(first).frames, j.get(first).state) == ([a], "dead")
    assert (j.get(second).frames, j.get(second).state) == ([b], "acked")
    assert len(blob_files(journal_path)) == 2
    assert j.purge(state="dead") == 1 and j.purge(state="acked") == 1
    assert j.get(first) is None and j.get(second) is None
    j.close()
    assert blob_files(journal_path) == []


def test_interval_mode_removes_an_acked_entrys_blob_after_the_fsync(open_journal, journal_path) -> None:
    j = open_journal(max_message_size=BIG, plugins=False, durability="interval", fsync_interval=20)
    a = j.append("jobs", [payload(3)], direction="in")
    j.ack(a)
    deadline = time.monotonic() + 5
    while blob_files(journal_path) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert blob_files(journal_path) == []


def test_a_large_pending_message_is_redelivered_to_the_socket_that_wraps_its_name(open_journal, ctx) -> None:
    j = open_journal(max_message_size=BIG, plugins=False)
    big = payload(4)
    j.append("in", [b"a", big], direction="in", attempts=1)
    push = ctx.socket(zmq.PUSH)
    push.bind("inproc://blob-redelivery")
    pull = j.wrap(ctx.socket(zmq.PULL), name="in")
    pull.connect("inproc://blob-redelivery")
    assert pull.recv_multipart() == [b"a", big]
    push.send(big[::-1])  # a live large message journaled on receipt, then acked by the next recv
    assert pull.recv() == big[::-1]
    assert j.count(name="in", state="pending") == 1
    pull.close()


def test_a_resend_of_a_large_confirm_message_keeps_one_blob(open_journal, ctx, journal_path) -> None:
    j = open_journal(max_message_size=BIG, plugins=False)
    sender = open_journal(str(journal_path) + ".sender", max_message_size=BIG, plugins=False)
    pull = j.wrap(ctx.socket(zmq.PULL), name="in")
    pull.bind("tcp://127.0.0.1:0")
    push = sender.wrap(ctx.socket(zmq.PUSH), name="out", confirm=True, confirm_timeout=0.2)
    push.connect(pull.last_endpoint)
    big = payload(5)
    push.send(big)
    assert pull.recv() == big
    deadline = time.monotonic() + 5
    while sender.count(name="out", state="pending") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sender.count(name="out", state="pending") == 0
    assert len(blob_files(journal_path)) == 1  # the received one, held until the next recv acks it
    push.close()
    pull.close()
    sender.close()
    assert blob_files(str(journal_path) + ".sender") == []  # confirmed: acked, its blob gone


CHILD = r"""
import os, random, sys, zjournal
path, log = sys.argv[1], sys.argv[2]
j = zjournal.open(path, max_message_size=1 << 30, plugins=False)
out = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
for i in range(10_000):
    size = (1 << 20) + 1000 * i
    entry_id = j.append("big", [b"%d" % i, random.Random(i).randbytes(size)], direction="in")
    os.write(out, b"+%d %d\n" % (entry_id, i))
    if i % 2:
        j.ack(entry_id)
        os.write(out, b"-%d\n" % entry_id)
"""


def test_sigkill_mid_stream_loses_no_large_message_and_leaves_no_orphan_file(tmp_path) -> None:
    path, log = str(tmp_path / "k.journal"), tmp_path / "log"
    child = subprocess.Popen([sys.executable, "-c", CHILD, path, str(log)])
    deadline = time.monotonic() + 20
    while (not log.exists() or log.read_text().count("+") < 12) and time.monotonic() < deadline:
        time.sleep(0.01)
    child.send_signal(signal.SIGKILL)
    assert child.wait(10) == -signal.SIGKILL
    appended = {int(a): int(b) for a, b in re.findall(r"\+(\d+) (\d+)", log.read_text())}
    acked = {int(a) for a in re.findall(r"-(\d+)", log.read_text())}
    assert len(appended) >= 12
    with zjournal.open(path, max_message_size=BIG, plugins=False) as j:
        live = {e.id: e for e in j.entries()}
        # The kill may fall between an ack and its line in the log: at most the last entry, one to be acked.
        last = max(appended)
        for entry_id, i in appended.items():
            if entry_id in acked or (entry_id == last and i % 2 and entry_id not in live):
                continue
            assert live[entry_id].frames == [b"%d" % i, random.Random(i).randbytes((1 << 20) + 1000 * i)]
        assert not acked & set(live)  # an ack that returned is never undone
        assert len(blob_files(path)) == len(live)  # each live entry its one file; nothing else left


def test_a_missing_blob_file_is_damage_and_recover_opens_without_its_entry(journal_path) -> None:
    with zjournal.open(journal_path, max_message_size=BIG, plugins=False) as j:
        lost = j.append("in", [payload(6)], direction="in")
        kept = j.append("in", [b"small"], direction="in")
    (name,) = blob_files(journal_path)
    os.unlink(os.path.join(journal_path, "blobs", name))
    with pytest.raises(JournalCorruptError) as caught:
        zjournal.open(journal_path, max_message_size=BIG, plugins=False)
    assert name in str(caught.value) and caught.value.file.endswith(name)
    with zjournal.open(journal_path, max_message_size=BIG, plugins=False, recover=True) as j:
        assert any(name in what for what in j.recovered)
        assert [e.id for e in j.entries()] == [kept] and j.count(state="pending") == 1 and j.get(lost) is None


def test_a_damaged_blob_file_is_reported_naming_it(journal_path, cli) -> None:
    with zjournal.open(journal_path, max_message_size=BIG, plugins=False) as j:
        entry_id = j.append("in", [payload(7)], direction="in")
    (name,) = blob_files(journal_path)
    with open(os.path.join(journal_path, "blobs", name), "r+b") as f:
        f.seek(5000)
        byte = f.read(1)
        f.seek(5000)
        f.write(bytes([byte[0] ^ 0xFF]))
    with zjournal.open(journal_path, max_message_size=BIG, plugins=False) as j:
        with pytest.raises(JournalCorruptError, match=name):
            j.get(entry_id)
        assert j.count(state="pending") == 1  # nothing was dropped
    result = cli("inspect", journal_path, "--all")
    assert result.exit_code != 0 and name in result.output and "Traceback" not in result.output


def test_links_and_non_files_in_the_blob_directory_are_refused(journal_path, tmp_path) -> None:
    with zjournal.open(journal_path, max_message_size=BIG, plugins=False) as j:
        j.append("in", [payload(8)], direction="in")
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep me")
    link = os.path.join(journal_path, "blobs", "a" * 24)
    os.symlink(victim, link)
    with pytest.raises(NotAJournalError, match="symbolic link"):
        zjournal.open(journal_path, plugins=False)
    os.unlink(link)
    os.mkfifo(link)
    with pytest.raises(NotAJournalError, match="not a regular file"):
        zjournal.open(journal_path, plugins=False)
    assert victim.read_bytes() == b"keep me"


def test_files_a_crash_left_are_removed_at_open_and_the_others_kept(journal_path) -> None:
    with zjournal.open(journal_path, max_message_size=BIG, plugins=False) as j:
        j.append("in", [payload(9)], direction="in")
    (kept,) = blob_files(journal_path)
    orphan = os.path.join(journal_path, "blobs", "b" * 24)  # written, its record never was
    with open(orphan, "wb") as f:
        f.write(b"x" * 10)
    with zjournal.open(journal_path, max_message_size=BIG, plugins=False) as j:
        assert blob_files(journal_path) == [kept]
        assert j.count(state="pending") == 1


def test_views_and_exports_carry_the_whole_frame(journal_path, tmp_path, cli) -> None:
    big = payload(10)
    with zjournal.open(journal_path, max_message_size=BIG, plugins=False) as j:
        j.append("in", [b"k", big], direction="in")
        with zjournal.open(journal_path, read_only=True) as view:  # a view of the live journal
            assert [e.frames for e in view.entries()] == [[b"k", big]]
    export = tmp_path / "out.jsonl"
    assert cli("export", journal_path, "--output", str(export)).exit_code == 0
    copy = str(tmp_path / "copy.journal")
    result = cli("import", copy, str(export))
    assert result.exit_code == 0, result.output
    with zjournal.open(copy, max_message_size=BIG, plugins=False) as j:
        assert [e.frames for e in j.entries()] == [[b"k", big]]


DISK_FULL = r"""
import os, resource, signal, sys, zjournal
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)   # EFBIG, as on a full disk
path = sys.argv[1]
j = zjournal.open(path, max_message_size=1 << 30, plugins=False)
_, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
resource.setrlimit(resource.RLIMIT_FSIZE, ((1 << 20) // 2, hard))
try:
    j.append("in", [b"k", os.urandom((1 << 20) + 1)], direction="in")
    print("appended")
except zjournal.StoreError as e:
    print("refused:", e)
resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))
print(sorted(os.listdir(os.path.join(path, "blobs"))), j.count(), j.append("in", [b"small"], direction="in"))
j.close()
"""


def test_a_blob_the_disk_refuses_is_one_store_error_and_leaves_nothing_behind(tmp_path) -> None:
    path = str(tmp_path / "f.journal")
    proc = subprocess.run([sys.executable, "-c", DISK_FULL, path], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    refused, after = proc.stdout.strip().splitlines()
    assert refused.startswith("refused: cannot write blob file")
    assert after.startswith("[] 0 ")  # no file, no entry; the journal takes the next message
    assert issubclass(StoreError, zjournal.ZJournalError)


MEMORY = r"""
import os, re, subprocess, sys, tempfile, time, zmq
size = int(sys.argv[1])
d = tempfile.mkdtemp()
fe, be = f"ipc://{d}/fe", f"ipc://{d}/be"
device = subprocess.Popen([sys.executable, "-m", "zjournal.cli", "device", d + "/j", "--frontend", fe, "--backend",
                           be, "--max-message-size", str(4 * size)], stdout=subprocess.PIPE, text=True)
assert device.stdout.readline().strip() == "ready"
def peak():
    return int(re.search(r"VmHWM:\s+(\d+)", open(f"/proc/{device.pid}/status").read()).group(1)) * 1024
ctx = zmq.Context()
worker, client = ctx.socket(zmq.REP), ctx.socket(zmq.REQ)
worker.connect(be); client.connect(fe)
time.sleep(0.3)
before = peak()
body = os.urandom(size)
client.send(body)
assert worker.recv() == body
worker.send(b"done")
assert client.recv() == b"done"
print(peak() - before)
device.terminate(); device.wait(10)
"""


def test_a_large_request_costs_the_device_about_its_size(tmp_path) -> None:
    """Held once, in libzmq's buffer: written to its blob file and forwarded from there (was ~5x its size)."""
    size = 64 << 20
    grew = _peak_growth(MEMORY, size, timeout=60)
    assert grew < 1.5 * size, f"the device's peak grew by {grew / size:.2f}x the request"


def _peak_growth(script: str, size: int, timeout: float) -> int:
    """What ``script`` prints last: how much a device's peak memory grew for a request of ``size`` bytes."""
    proc = subprocess.run([sys.executable, "-c", script, str(size)], capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return int(proc.stdout.strip().splitlines()[-1])


def test_large_pending_messages_are_redelivered_in_order_a_budget_at_a_time(open_journal, ctx, journal_path) -> None:
    """A redelivery window reads back at most REDELIVERY_BYTES ahead: 12 x 6 MiB come in two fetches, all in order."""
    from zjournal.journal.core import port_of
    from zjournal.journal.port import REDELIVERY_BYTES

    size = 6 << 20
    count = REDELIVERY_BYTES // size + 2
    j = open_journal(max_message_size=BIG, plugins=False)
    for i in range(count):
        j.append("in", [b"%d" % i, payload(200 + i, size)], direction="in", attempts=1)
    fetched, more = port_of(j).redeliverable("in", 0, 0, 256, None)
    assert more and len(fetched) == REDELIVERY_BYTES // size + 1  # the first fetch stops past its budget
    pull = j.wrap(ctx.socket(zmq.PULL), name="in")
    pull.bind("inproc://blob-window")
    got = []
    while pull.poll(2000):
        got.append(pull.recv_multipart())
        if len(got) == count:
            break
    assert [g[0] for g in got] == [b"%d" % i for i in range(count)]
    assert all(g[1] == payload(200 + i, size) for i, g in enumerate(got))
    pull.close()


REPLAY_MEMORY = r"""
import os, re, subprocess, sys, tempfile, time, zmq, zjournal
size = int(sys.argv[1])
d = tempfile.mkdtemp()
fe, be = f"ipc://{d}/fe", f"ipc://{d}/be"
def device():
    p = subprocess.Popen([sys.executable, "-m", "zjournal.cli", "device", d + "/j", "--frontend", fe, "--backend", be,
                          "--max-message-size", str(4 * size)], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "ready"
    return p
def peak(p):
    return int(re.search(r"VmHWM:\s+(\d+)", open(f"/proc/{p.pid}/status").read()).group(1)) * 1024
ctx = zmq.Context()
first = device()
client = ctx.socket(zmq.REQ); client.connect(fe)
body = os.urandom(size)
client.send(body)
def journaled():
    if not os.path.isdir(d + "/j/blobs"):
        return 0
    with zjournal.open(d + "/j", read_only=True, plugins=False) as view:  # (the device holds the journal)
        return view.count(state="pending")
deadline = time.time() + 20
while not journaled() and time.time() < deadline:
    time.sleep(0.05)
first.terminate(); first.wait(20)
fresh = device()  # no worker: nothing to replay to
before = peak(fresh)
fresh.terminate(); fresh.wait(20)
second = device()
worker = ctx.socket(zmq.REP); worker.connect(be)
assert worker.recv() == body
worker.send(b"done")
time.sleep(0.3)
print(peak(second) - before)
second.terminate(); second.wait(20)
"""


def test_a_large_request_replayed_after_a_restart_costs_the_device_about_its_size(tmp_path) -> None:
    """Read back once (not again to record the delivery), forwarded by reference (pyzmq copies bytes it sends)."""
    size = 64 << 20
    grew = _peak_growth(REPLAY_MEMORY, size, timeout=90)
    assert grew < 1.5 * size, f"the restarted device's peak grew by {grew / size:.2f}x the request"
