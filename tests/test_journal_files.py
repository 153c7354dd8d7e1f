"""A journal's files at rest: private to their owner, and no link or special file is ever followed."""

from __future__ import annotations

import logging
import os
import shutil
import stat
import subprocess
import sys
import time

import pytest
import zmq

import zjournal
from zjournal.journal.inflight import slot_files


def mode(path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_a_new_journal_is_private_whatever_the_umask(tmp_path, ctx) -> None:
    old = os.umask(0o022)
    try:
        path = tmp_path / "orders.journal"
        with zjournal.open(str(path), plugins=False) as j:
            pull = j.wrap(ctx.socket(zmq.PULL), name="orders")
            pull.bind("inproc://private")
            push = ctx.socket(zmq.PUSH)
            push.connect("inproc://private")
            push.send(b"card=4111")
            assert pull.recv() == b"card=4111"  # held in a slot file now
            assert mode(path) == 0o700 and mode(path / "inflight") == 0o700
            slots = list((path / "inflight").iterdir())
            assert slots and all(mode(f) == 0o600 for f in slots)
            pull.close()
    finally:
        os.umask(old)


def test_export_is_readable_by_its_owner_only(tmp_path, sample_journal) -> None:
    out = tmp_path / "export.jsonl"
    old = os.umask(0o022)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "zjournal.cli", "export", sample_journal, "--output", str(out)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        os.umask(old)
    assert done.returncode == 0, done.stderr
    assert mode(out) == 0o600 and len(out.read_text().splitlines()) == 7


def test_opening_a_journal_others_can_read_warns_once(tmp_path, caplog) -> None:
    path = str(tmp_path / "shared.journal")
    zjournal.open(path, plugins=False).close()
    os.chmod(path, 0o755)
    with caplog.at_level(logging.WARNING, logger="zjournal"):
        zjournal.open(path, plugins=False).close()
        zjournal.open(path, plugins=False).close()
    warnings = [r.getMessage() for r in caplog.records if "open to other users" in r.getMessage()]
    assert len(warnings) == 1 and "0755" in warnings[0]


@pytest.fixture
def copied_journal(tmp_path) -> str:
    path = str(tmp_path / "copied.journal")
    with zjournal.open(path, plugins=False) as j:
        j.append("orders", [b"x"], direction="in")
    return path


def test_a_link_in_a_journal_is_refused_and_nothing_outside_is_written(tmp_path, copied_journal) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    config = os.path.join(copied_journal, "rocksdict-config.json")
    os.unlink(config)
    os.symlink("../victim.txt", config)
    for use in (lambda: zjournal.open(copied_journal), lambda: zjournal.open(copied_journal, read_only=True)):
        with pytest.raises(zjournal.NotAJournalError, match=r"rocksdict-config\.json is a symbolic link"):
            use()
    assert victim.read_text() == "precious\n"


def test_a_linked_slot_directory_is_refused_and_its_target_kept(tmp_path, copied_journal) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "backup.slots").write_text("keep me\n")
    inflight = os.path.join(copied_journal, "inflight")
    shutil.rmtree(inflight, ignore_errors=True)  # (it holds the journal's overflow spare)
    os.symlink(str(elsewhere), inflight)
    done = subprocess.run(
        [sys.executable, "-m", "zjournal.cli", "ack", copied_journal, "--id", "1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1 and "inflight is a symbolic link" in done.stderr
    assert [p.name for p in elsewhere.iterdir()] == ["backup.slots"]


@pytest.mark.parametrize("name", ["CURRENT", "inflight/1.slots"])
def test_a_fifo_in_a_journal_is_refused_at_once(copied_journal, name) -> None:
    target = os.path.join(copied_journal, name)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    if os.path.exists(target):
        os.unlink(target)
    os.mkfifo(target)
    script = (
        "import sys, zjournal\ntry:\n    zjournal.open(sys.argv[1])\nexcept zjournal.ZJournalError as e:\n    print(e)"
    )
    done = subprocess.run([sys.executable, "-c", script, copied_journal], capture_output=True, text=True, timeout=20)
    assert "is not a regular file" in done.stdout, done.stderr  # refused, not hung reading the FIFO


def test_a_slot_file_read_never_goes_past_what_a_slot_file_holds(copied_journal) -> None:
    from zjournal.journal import inflight

    os.makedirs(inflight.directory(copied_journal), exist_ok=True)
    big = os.path.join(inflight.directory(copied_journal), "9.slots")
    with open(big, "wb") as f:
        f.truncate(8 << 30)  # an 8 GiB sparse file: read whole, it would exhaust memory
    assert list(inflight.read_records(copied_journal)) == []  # its header is zeros: not a slot file
    assert len(inflight._read_slot_file(big)) == inflight.SLOT_FILE_SIZE


def _views_of(pid: int) -> list[str]:
    import tempfile

    base = tempfile.gettempdir()
    return [n for n in os.listdir(base) if n.startswith("zjournal-view-") and f"-{pid}-" in f"-{n[14:]}"]


@pytest.mark.parametrize("signum", [15, 9])
def test_a_killed_views_private_directories_do_not_stay(copied_journal, signum) -> None:

    proc = subprocess.Popen(
        [sys.executable, "-m", "zjournal.cli", "inspect", copied_journal, "--follow"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().split()[:2] == ["id", "name"]  # the view is open
    assert len(_views_of(proc.pid)) == 2
    proc.send_signal(signum)
    proc.wait(timeout=20)
    if signum == 9:  # nothing runs in a SIGKILLed process: the next view sweeps what it left
        assert len(_views_of(proc.pid)) == 2
        zjournal.open(copied_journal, read_only=True).close()
    assert _views_of(proc.pid) == []


def _damaged_sst_journal(tmp_path, where: float) -> str:
    import glob

    path = str(tmp_path / "damaged.journal")
    with zjournal.open(path, plugins=False) as j:
        for i in range(50):
            j.append("orders", [b"order-%d" % i], direction="in")
        j.compact()  # into an SST
    sst = max(glob.glob(path + "/*.sst"), key=os.path.getsize)
    with open(sst, "rb") as f:
        data = bytearray(f.read())
    data[int(len(data) * where)] ^= 0xFF
    with open(sst, "wb") as f:
        f.write(data)
    return path


@pytest.mark.parametrize("where", [0.0, 0.3, 0.6, 0.9])  # data blocks first, index and metadata last
def test_a_damaged_table_file_is_reported_as_damage_by_every_reader(tmp_path, where) -> None:
    """At open (the table's index or metadata), or at the first read of a damaged data block.

    (A clean close records the counts: the next open reads no entry, so a data
    block is first read by the owner's entries() or redelivery, never skipped.)
    """
    path = _damaged_sst_journal(tmp_path, where)
    with pytest.raises(zjournal.JournalCorruptError) as owner, zjournal.open(path, plugins=False) as j:
        list(j.entries())  # never "locked by another process", never fewer entries
    assert owner.value.file and owner.value.file.startswith(path)
    with pytest.raises(zjournal.JournalCorruptError) as view, zjournal.open(path, read_only=True) as v:
        list(v.entries())  # never "no entries"
    assert path in str(view.value) and "zjournal-view" not in str(view.value)
    done = subprocess.run([sys.executable, "-m", "zjournal.cli", "inspect", path], capture_output=True, text=True)
    assert done.returncode == 1 and "is damaged" in done.stderr and "zjournal-view" not in done.stderr


def test_a_damaged_data_block_stops_the_redelivery_that_reads_it(tmp_path) -> None:
    """After a clean close the open reads no entry: the wrapped socket's redelivery meets the damage, names it."""
    path = _damaged_sst_journal(tmp_path, 0.0)
    ctx = zmq.Context()
    try:
        with zjournal.open(path, plugins=False) as j:
            with pytest.raises(zjournal.JournalCorruptError) as damage:
                j.wrap(ctx.socket(zmq.PULL), name="orders")
            assert damage.value.file and damage.value.file.startswith(path)
            assert "zjournal recover" in str(damage.value)
    finally:
        ctx.destroy(0)


def test_reopening_keeps_at_most_three_info_logs(tmp_path) -> None:
    path = str(tmp_path / "often.journal")
    for _ in range(8):
        zjournal.open(path, plugins=False).close()
    logs = [n for n in os.listdir(path) if n == "LOG" or n.startswith("LOG.old")]
    assert 1 <= len(logs) <= 3


def test_states_and_directions_are_read_in_any_case(journal) -> None:
    journal.append("s", [b"x"], direction="IN")
    assert journal.count(state="PENDING", direction="In") == 1


def _crafted_slot_file(name: bytes, message: bytes, *, kind: int, created: float = 1.7e9, envelope: int = 0) -> bytes:
    """A slot file as a hostile or foreign writer could make it: the checksum right, the fields not."""
    from zjournal.journal import inflight

    data = bytearray(inflight.FILE_HEADER_SIZE + 2 * inflight.REGION_SIZE)
    header = inflight._MAGIC + inflight._NAME_LENGTH.pack(len(name)) + name
    data[: len(header)] = header
    crc = inflight._checksum(message, inflight._seed(7, envelope, kind))
    inflight._HEADER.pack_into(data, inflight.FILE_HEADER_SIZE, crc, len(message), 7, created, envelope, kind)
    start = inflight.FILE_HEADER_SIZE + inflight.HEADER_SIZE
    data[start : start + len(message)] = message
    return bytes(data)


@pytest.mark.parametrize(
    "name, message, kind, created, envelope",
    [
        (b"orders", b"\x92\xa1a\xa1b", 1, 1.7e9, 0),  # a list of str, not of frames
        (b"orders", b"\x05", 1, 1.7e9, 0),  # a msgpack int
        (b"orders", b"\x90", 1, 1.7e9, 0),  # no frames at all
        (b"orders", b"hello", 0, 1.7e9, 255),  # an envelope longer than the message
    ],
)
def test_a_crafted_slot_file_is_refused_by_name(copied_journal, name, message, kind, created, envelope) -> None:
    slots = os.path.join(copied_journal, "inflight")
    os.makedirs(slots, exist_ok=True)
    bad = os.path.join(slots, "1.slots")
    with open(bad, "wb") as f:
        f.write(_crafted_slot_file(name, message, kind=kind, created=created, envelope=envelope))
    for use in (lambda: zjournal.open(copied_journal), lambda: zjournal.open(copied_journal, read_only=True)):
        with pytest.raises(zjournal.JournalCorruptError) as info:
            use()
        assert info.value.file == bad and "1.slots" in str(info.value)


@pytest.mark.parametrize("created", [float("nan"), 1e300, 0.0, -5.0])
def test_a_slot_whose_time_is_impossible_keeps_its_message_with_the_time_of_reading(copied_journal, created) -> None:
    # The checksum does not cover the time: a read racing the socket's write (a live view) or a
    # kill in the middle of one leaves a good message with a torn time. Refusing it lost the message.
    slots = os.path.join(copied_journal, "inflight")
    os.makedirs(slots, exist_ok=True)
    with open(os.path.join(slots, "1.slots"), "wb") as f:
        f.write(_crafted_slot_file(b"orders", b"hello", kind=0, created=created))
    before = time.time()
    with zjournal.open(copied_journal, read_only=True) as view:
        (held,) = [e for e in view.entries() if e.id == 7]
        assert held.frames == [b"hello"] and before <= held.created <= time.time()
    with zjournal.open(copied_journal) as journal:
        assert journal.get(7).frames == [b"hello"]


def test_a_torn_slot_is_skipped_and_a_good_one_loaded(copied_journal) -> None:
    slots = os.path.join(copied_journal, "inflight")
    os.makedirs(slots, exist_ok=True)
    good = _crafted_slot_file(b"orders", b"held", kind=0)
    with open(os.path.join(slots, "1.slots"), "wb") as f:
        f.write(good)
    torn = bytearray(_crafted_slot_file(b"orders", b"torn", kind=0).replace(b"torn", b"tore", 1))
    with open(os.path.join(slots, "2.slots"), "wb") as f:
        f.write(bytes(torn))  # its checksum is that of "torn": a write the process did not finish
    with zjournal.open(copied_journal, read_only=True) as view:
        assert sorted(e.body[0] for e in view.entries(state="pending")) == [b"held", b"x"]


KILLED_HOLDING_A_MESSAGE = r"""
import os, sys, zmq, zjournal
journal = zjournal.open(sys.argv[1])
ctx = zmq.Context()
pull = journal.wrap(ctx.socket(zmq.PULL), name="in")
pull.bind("inproc://k")
push = ctx.socket(zmq.PUSH)
push.connect("inproc://k")
push.send(b"in hand")
pull.recv()
os._exit(9)  # killed: the message in hand is in the socket's slot file only
"""


def _killed_holding_a_message(path: str) -> str:
    subprocess.run([sys.executable, "-c", KILLED_HOLDING_A_MESSAGE, path], check=False, timeout=60)
    files = sorted(os.listdir(os.path.join(path, "inflight")))
    assert files == ["1.slots", "overflow.spare"]  # (the spare: zjournal.journal.overflow)
    return os.path.join(path, "inflight", files[0])


@pytest.mark.parametrize("damage", ["deleted", "emptied"])
def test_a_deleted_or_emptied_slot_file_is_reported_as_damage_and_recover_opens_without_it(tmp_path, damage) -> None:
    path = str(tmp_path / "killed.journal")
    slot_file = _killed_holding_a_message(path)
    if damage == "deleted":
        os.unlink(slot_file)
    else:
        os.truncate(slot_file, 0)
    with pytest.raises(zjournal.JournalCorruptError) as raised:
        zjournal.open(path)
    assert raised.value.file == slot_file and "1.slots" in str(raised.value) and "recover=True" in str(raised.value)
    with pytest.raises(zjournal.JournalCorruptError) as raised:  # a view of the stopped journal says so too
        zjournal.open(path, read_only=True)
    assert raised.value.file == slot_file
    export = subprocess.run([sys.executable, "-m", "zjournal.cli", "export", path], capture_output=True, text=True)
    assert export.returncode == 1 and export.stdout == "" and "1.slots" in export.stderr
    with zjournal.open(path, recover=True) as journal:  # opens: the message the file held is gone, and said so
        assert any("1.slots" in note for note in journal.recovered)
        assert journal.count() == 0
    with zjournal.open(path) as journal:  # recovered for good
        assert journal.recovered == []


def test_a_view_of_a_live_journal_does_not_take_a_closing_sockets_slot_file_for_damage(tmp_path, ctx) -> None:
    path = str(tmp_path / "live.journal")
    with zjournal.open(path) as owner:
        for _ in range(20):  # slot files come and go with the owner's sockets while views look
            pull = owner.wrap(ctx.socket(zmq.PULL), name="in")
            with zjournal.open(path, read_only=True) as view:
                assert view.count() == 0
            pull.close()
            with zjournal.open(path, read_only=True) as view:
                assert view.count() == 0


def test_a_slot_file_left_by_a_kill_is_no_damage_and_its_message_comes_back(tmp_path) -> None:
    path = str(tmp_path / "killed.journal")
    _killed_holding_a_message(path)
    with zjournal.open(path) as journal:
        assert [e.frames for e in journal.entries()] == [[b"in hand"]]
        pull = journal.wrap(zmq.Context.instance().socket(zmq.PULL), name="in")
        pull.close()
    with zjournal.open(path) as journal:  # closed cleanly: no record of a slot file is left behind
        assert journal.count() == 1 and not slot_files(path)


def _journal_with_entries_in_its_log(path: str, mode: str) -> None:
    """50 entries in the write-ahead log only: the owner was killed before any flush to a table file."""
    script = (
        "import os, sys, zjournal\n"
        "j = zjournal.open(sys.argv[1], durability=sys.argv[2])\n"
        "for i in range(50):\n"
        "    j.append('orders', [b'order-%d' % i], direction='in')\n"
        "j.sync()\n"
        "os.kill(os.getpid(), 9)\n"
    )
    done = subprocess.run([sys.executable, "-c", script, path, mode], capture_output=True, timeout=60)
    assert done.returncode == -9, done.stderr


@pytest.mark.parametrize("mode", ["process", "interval", "always"])
def test_a_deleted_write_ahead_log_is_reported_as_damage_and_recover_says_what_is_gone(tmp_path, mode, cli) -> None:
    import glob

    path = str(tmp_path / "j.journal")
    _journal_with_entries_in_its_log(path, mode)
    logs = glob.glob(path + "/*.log")
    assert logs  # the entries are in the log, not yet in a table file
    for log in logs:
        os.unlink(log)
    with pytest.raises(zjournal.JournalCorruptError, match=r"writes \d+ to \d+ of its store are gone"):
        zjournal.open(path)
    result = cli("inspect", path)
    assert result.exit_code == 1 and "are gone" in result.output
    with zjournal.open(path, recover=True) as journal:
        assert any("are gone" in r for r in journal.recovered)
    with zjournal.open(path) as journal:  # opens normally from then on
        assert journal.count() == 0


@pytest.mark.parametrize("damage", ["delete", "empty", "garbage"])
def test_a_missing_or_damaged_log_mark_is_no_alarm(tmp_path, damage) -> None:
    from zjournal.store.logmark import MARK_NAME

    path = str(tmp_path / "j.journal")
    _journal_with_entries_in_its_log(path, "process")
    mark = os.path.join(path, MARK_NAME)
    if damage == "delete":
        os.unlink(mark)
    else:
        with open(mark, "r+b") as f:
            f.truncate(0) if damage == "empty" else f.write(os.urandom(64))
    with zjournal.open(path) as journal:
        assert journal.count() == 50


@pytest.mark.parametrize("mode", ["process", "interval", "always"])
def test_a_killed_journal_opens_again_without_alarm(tmp_path, mode) -> None:
    path = str(tmp_path / "j.journal")
    script = (
        "import os, sys, zjournal\n"
        f"j = zjournal.open(sys.argv[1], durability={mode!r}, fsync_interval=0.005)\n"
        "for i in range(3000):\n"
        "    j.append('orders', [b'x' * 100], direction='in')\n"
        "    if i % 500 == 0: j.sync()\n"
        "os.kill(os.getpid(), 9)\n"
    )
    done = subprocess.run([sys.executable, "-c", script, path], capture_output=True, timeout=60)
    assert done.returncode == -9, done.stderr
    with zjournal.open(path) as journal:
        assert journal.count() == 3000


def test_the_same_loss_after_a_reboot_is_checked_against_the_synced_mark_only(tmp_path) -> None:
    """A power cut loses the page cache (a new boot): what was never fsynced may be gone, and that is no damage."""
    import glob

    from zjournal.store import logmark

    path = str(tmp_path / "j.journal")
    script = (
        "import os, sys, zjournal\n"
        "j = zjournal.open(sys.argv[1])\n"
        "j.append('orders', [b'x'], direction='in')\n"
        "j.compact()\n"  # flushed to a table file: the log begins anew after it, never fsynced
        "for i in range(50):\n"
        "    j.append('orders', [b'order-%d' % i], direction='in')\n"
        "os.kill(os.getpid(), 9)\n"
    )
    done = subprocess.run([sys.executable, "-c", script, path], capture_output=True, timeout=60)
    assert done.returncode == -9, done.stderr
    for log in glob.glob(path + "/*.log"):
        os.unlink(log)
    with pytest.raises(zjournal.JournalCorruptError):  # the same boot: the page cache had them
        zjournal.open(path).close()
    with open(os.path.join(path, logmark.MARK_NAME), "r+b") as f:
        f.seek(24)
        f.write(os.urandom(16))  # as after a reboot
    with zjournal.open(path) as journal:
        assert journal.count() == 1


def test_a_view_checks_slot_files_only_once_their_owner_process_is_gone(tmp_path) -> None:
    path = str(tmp_path / "j.journal")
    owner = subprocess.Popen(
        [
            sys.executable,
            "-c",
            KILLED_HOLDING_A_MESSAGE.replace("os._exit(9)", "print('ready', flush=True); input()"),
            path,
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert owner.stdout.readline().strip() == "ready"
        os.truncate(os.path.join(path, "inflight", "1.slots"), 0)
        with zjournal.open(path, read_only=True):  # its owner holds it (LOCK): slot files are the owner's business
            pass
    finally:
        owner.kill()
        owner.wait()
    with pytest.raises(zjournal.JournalCorruptError, match=r"1\.slots"):
        zjournal.open(path, read_only=True)


BUSY_OWNER = r"""
import sys, zjournal
journal = zjournal.open(sys.argv[1], plugins=False)
pad = b"x" * 200_000  # tables flushed and compacted away all the time
n = 0
while True:
    entry_id = journal.append("work", [b"%d" % n + pad], direction="in")
    if n % 3:
        journal.ack(entry_id)
    elif n == 0:
        print("ready", flush=True)  # one pending entry, for good
    n += 1
"""


def test_a_view_never_takes_a_busy_owners_deleted_files_for_damage(tmp_path) -> None:
    """A flush or compaction of the owner deletes files the view just linked: that is not damage.

    Nor is a view that came out without some of the journal (its schema, say) while the owner's files changed:
    it is opened again. (Before views hard-linked the owner's files, about two opens in three here said the
    journal was damaged; before views checked what they opened, about one in fifteen said it was no journal.)
    """
    path = str(tmp_path / "busy.journal")
    owner = subprocess.Popen([sys.executable, "-c", BUSY_OWNER, path], stdout=subprocess.PIPE, text=True)
    opened = told_to_try_again = 0
    try:
        assert owner.stdout.readline().strip() == "ready"
        deadline = time.monotonic() + 4
        while time.monotonic() < deadline:
            try:
                with zjournal.open(path, read_only=True, plugins=False) as view:
                    assert view.count() > 0
            except zjournal.StoreError as e:  # what a view may say of such an owner (the README's inspect section)
                assert type(e) is zjournal.StoreError and str(e).endswith("try again"), e
                told_to_try_again += 1
                continue
            opened += 1
    finally:
        owner.kill()
        owner.wait()
    assert opened >= 2 and told_to_try_again < opened, (opened, told_to_try_again)
