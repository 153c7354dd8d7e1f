"""zjournal ack, dead, purge, compact, export, import, --version and --help."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

import zjournal


def states(path):
    with zjournal.open(path, read_only=True) as j:
        return {e.id: str(e.state) for e in j.entries()}


def test_ack_and_dead(cli, sample_journal) -> None:
    assert cli("ack", sample_journal, "--id", "1", "--id", "7").exit_code == 0
    result = cli("dead", sample_journal, "--id", "2", "--reason", "bad input")
    assert result.exit_code == 0 and "marked 1 entries dead" in result.output
    now = states(sample_journal)
    assert 1 not in now and 7 not in now and now[2] == "dead"
    with zjournal.open(sample_journal, read_only=True) as j:
        assert j.get(2).reason == "bad input"


def test_an_unknown_id_changes_nothing(cli, sample_journal) -> None:
    before = states(sample_journal)
    result = cli("ack", sample_journal, "--id", "1", "--id", "999")
    assert result.exit_code == 1 and "no entry 999" in result.output
    assert states(sample_journal) == before


def test_purge_asks_unless_yes(cli, sample_journal) -> None:
    refused = cli("purge", sample_journal, "--state", "dead", stdin="n\n")
    assert refused.exit_code == 1 and "nothing deleted" in refused.output
    assert states(sample_journal)[7] == "dead"
    assert "purged 0" not in cli("purge", sample_journal, "--state", "dead", "--before", "1h", "--yes").output
    assert states(sample_journal)[7] == "dead"  # changed less than an hour ago
    confirmed = cli("purge", sample_journal, "--state", "dead", stdin="y\n")
    assert confirmed.exit_code == 0 and "purged 1 dead" in confirmed.output
    assert 7 not in states(sample_journal)
    assert cli("purge", sample_journal, "--state", "pending", "--yes").exit_code == 1


def test_compact(cli, sample_journal) -> None:
    result = cli("compact", sample_journal)
    assert result.exit_code == 0 and "compacted" in result.output
    assert len(states(sample_journal)) == 7


def test_export_then_import_restores_entries(cli, sample_journal, tmp_path) -> None:
    dump = tmp_path / "dump.jsonl"
    result = cli("export", sample_journal, "--output", str(dump))
    assert result.exit_code == 0 and "exported 7 entries" in result.output
    assert len(dump.read_text().splitlines()) == 7
    target = str(tmp_path / "copy.journal")
    result = cli("import", target, str(dump))
    assert result.exit_code == 0 and "imported 7 entries" in result.output
    with zjournal.open(sample_journal, read_only=True) as a, zjournal.open(target, read_only=True) as b:
        strip = lambda e: (e.name, e.direction, e.frames, e.state, e.attempts, e.reason, e.envelope_size)  # noqa: E731
        assert [strip(e) for e in a.entries()] == [strip(e) for e in b.entries()]


def test_the_same_export_imported_twice_is_refused_unless_again(cli, sample_journal, tmp_path) -> None:
    dump = tmp_path / "dump.jsonl"
    assert cli("export", sample_journal, "--output", str(dump)).exit_code == 0
    target = str(tmp_path / "copy.journal")
    assert "imported 7 entries (ids 1..7)" in cli("import", target, str(dump)).output
    again = cli("import", target, str(dump))
    assert again.exit_code == 1
    assert len(again.output.strip().splitlines()) == 1
    assert "imported into" in again.output and "ids 1..7" in again.output and "--again" in again.output
    with zjournal.open(target, read_only=True) as journal:
        assert journal.count() + journal.count(state="acked") >= 7 and len(list(journal.entries())) == 7
    assert "imported 7 entries (ids 8..14)" in cli("import", target, str(dump), "--again").output
    # a new export (other entries, or the same ones later changed) is a new file: taken
    dump.write_text(dump.read_text().splitlines()[0] + "\n")
    assert "imported 1 entries" in cli("import", target, str(dump)).output


def test_an_entry_never_changed_has_updated_null_in_json(cli, tmp_path) -> None:
    path = str(tmp_path / "j.journal")
    with zjournal.open(path) as journal:
        journal.append("orders", [b"x"], direction="in")
        journal.dead(journal.append("orders", [b"y"], direction="in"), "poison")
    rows = [json.loads(line) for line in cli("export", path).output.splitlines()]
    assert rows[0]["updated"] is None and isinstance(rows[1]["updated"], float)
    dump = tmp_path / "dump.jsonl"
    dump.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert cli("import", str(tmp_path / "copy.journal"), str(dump)).exit_code == 0
    with zjournal.open(str(tmp_path / "copy.journal"), read_only=True) as copy:
        assert [e.updated == 0.0 for e in copy.entries()] == [True, False]


def test_export_to_stdout_is_json_lines(cli, sample_journal) -> None:
    lines = cli("export", sample_journal, "--state", "dead").output.splitlines()
    assert [json.loads(line)["id"] for line in lines] == [7]


def test_import_of_bad_lines_imports_nothing(cli, tmp_path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"name": "x", "direction": "in", "state": "pending", "frames": []}\nnot json\n')
    target = str(tmp_path / "t.journal")
    result = cli("import", target, str(bad))
    assert result.exit_code == 1 and "bad.jsonl:2: not JSON" in result.output
    missing = tmp_path / "missing.jsonl"
    result = cli("import", target, str(missing))
    assert result.exit_code == 1 and "No such file" in result.output


def test_operations_refuse_a_live_journal(cli, journal) -> None:
    result = cli("ack", journal.path, "--id", "1")
    assert result.exit_code == 1 and "held open by a running process" in result.output


def test_version_through_a_real_subprocess() -> None:
    done = subprocess.run([sys.executable, "-m", "zjournal.cli", "--version"], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == f"zjournal {zjournal.__version__}"


def test_a_ctrl_c_while_the_command_starts_is_one_line_and_exit_130(sample_journal) -> None:
    """Also in the first tenths of a second, while the command imports the library (no traceback then either)."""
    import os
    import signal
    import time

    command = os.path.join(os.path.dirname(sys.executable), "zjournal")  # the console script, as users run it
    codes = []
    for delay in (0.05, 0.15, 0.3, 0.6, 2.0):
        proc = subprocess.Popen(
            [command, "inspect", sample_journal, "--follow"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        time.sleep(delay)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
        text = err.decode()
        assert "Traceback" not in text and len(text.splitlines()) <= 1, (delay, text)
        # (killed by the signal itself only when it came before Python set up its own Ctrl-C handling)
        assert proc.returncode in (130, -signal.SIGINT), (delay, proc.returncode, text)
        codes.append(proc.returncode)
    assert codes[-1] == 130


@pytest.mark.parametrize(
    "command",
    [
        "inspect",
        "replay",
        "ack",
        "dead",
        "purge",
        "compact",
        "export",
        "import",
        "demo",
        "device",
        "recover",
        "plugins",
    ],
)
def test_every_command_has_help(cli, command) -> None:
    result = cli(command, "--help")
    assert result.exit_code == 0
    assert "Usage" in result.output and len(result.output.splitlines()) > 5


def test_device_command_stops_gracefully_on_sigterm(tmp_path) -> None:
    import signal
    import time

    import zmq

    path, front, back = str(tmp_path / "d.journal"), f"ipc://{tmp_path}/f", f"ipc://{tmp_path}/b"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "zjournal.cli",
            "device",
            path,
            "--frontend",
            front,
            "--backend",
            back,
            "--drain-timeout",
            "0.2",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    ctx = zmq.Context()
    try:
        assert proc.stdout.readline().strip() == "ready"
        client = ctx.socket(zmq.DEALER)
        client.connect(front)
        client.send_multipart([b"", b"no worker will take this"])
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # wait until the device journaled it
            with zjournal.open(path, read_only=True) as j:
                if j.count(state="pending") == 1:
                    break
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=20)
    finally:
        ctx.destroy(0)
    assert proc.returncode == 0
    assert "stopped: drained 0, pending 1" in out
    with zjournal.open(path) as j:
        assert [e.body for e in j.entries(state="pending")] == [[b"no worker will take this"]]


@pytest.mark.parametrize("command", [["compact"], ["ack", "--id", "1"], ["dead", "--id", "1"], ["recover"]])
def test_write_commands_never_turn_a_directory_into_a_journal(cli, tmp_path, command) -> None:
    empty = tmp_path / "mistake"
    empty.mkdir()
    result = cli(command[0], str(empty), *command[1:])
    assert result.exit_code == 1 and "not a journal" in result.output
    assert list(empty.iterdir()) == []
    missing = cli(command[0], str(tmp_path / "nothing-here"), *command[1:])
    assert missing.exit_code == 1 and not (tmp_path / "nothing-here").exists()


def test_demo_refuses_a_journal_it_did_not_create(cli, sample_journal) -> None:
    with zjournal.open(sample_journal, read_only=True) as j:
        before = [(e.id, e.state) for e in j.entries()]
    result = cli("demo", "--path", sample_journal, "--requests", "100")
    assert result.exit_code == 1 and "did not create" in result.output
    with zjournal.open(sample_journal, read_only=True) as j:
        assert [(e.id, e.state) for e in j.entries()] == before  # not one real entry consumed


COMMANDS = [
    "demo",
    "plugins",
    "inspect",
    "replay",
    "ack",
    "dead",
    "purge",
    "compact",
    "recover",
    "device",
    "export",
    "takeover",
    "standby",
]


@pytest.mark.parametrize("command", [*COMMANDS, "import"])
def test_help_reads_like_a_well_kept_command_line(command) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "zjournal.cli", command, "-h"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and done.stdout.startswith(f"Usage: zjournal {command} [OPTIONS]")
    for wart in ("<bool>", "<str>", "<int>", "{", "``", "╭", "--help <"):
        assert wart not in done.stdout, wart
    assert "  -h, --help  " in done.stdout
    metavars = re.findall(r"^  --[\w-]+ ([A-Z_]+)\b", done.stdout, re.M)
    assert all(m.isupper() for m in metavars)


@pytest.mark.parametrize(
    "args",
    [
        ["inspect", "J", "--id", "-1"],
        ["ack", "J", "--id", "18446744073709551616"],
        ["replay", "J", "--endpoint", "tcp://127.0.0.1:1", "--socket-type", "push", "--timeout", "inf"],
        ["replay", "J", "--endpoint", "tcp://127.0.0.1:1", "--socket-type", "push", "--timeout", "1e300"],
        ["nosuchcommand"],
        ["inspect"],
    ],
)
def test_a_usage_error_is_one_line_and_exit_2(sample_journal, args) -> None:
    args = [sample_journal if a == "J" else a for a in args]
    done = subprocess.run([sys.executable, "-m", "zjournal.cli", *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1 and "--help" in done.stderr and "Traceback" not in done.stderr


def test_get_of_an_id_no_entry_can_have_is_none(journal) -> None:
    assert journal.get(-1) is None and journal.get(1 << 64) is None and journal.get(0) is None
    with pytest.raises(zjournal.UnknownEntryError):
        journal.ack(-1)
    with pytest.raises(zjournal.UnknownEntryError):
        journal.dead(1 << 64)


def _record(**changes) -> str:
    record = {"name": "orders", "direction": "in", "state": "pending", "attempts": 1, "created": 1_700_000_000.0}
    record.update({"frames": ["eA=="], "envelope_size": 0}, **changes)
    return json.dumps(record)


@pytest.mark.parametrize(
    "line",
    [
        _record(created=1e300),
        _record(created=float("nan")),
        _record(created=0),
        _record(envelope_size=5),
        _record(envelope_size=-1),
        _record(attempts=-5),
        _record(attempts=2**70),
        _record(name=""),
        "[" * 100_000 + "]" * 100_000,
    ],
)
def test_import_refuses_an_entry_no_journal_could_have_written(cli, tmp_path, line) -> None:
    source = tmp_path / "bad.jsonl"
    source.write_text(_record() + "\n" + line + "\n")
    result = cli("import", str(tmp_path / "j"), str(source))
    assert result.exit_code == 1 and "unexpected" not in result.output
    if (tmp_path / "j").exists():
        with zjournal.open(str(tmp_path / "j"), read_only=True) as j:
            assert j.count() == 0  # all or nothing


def test_import_of_a_file_that_is_not_text_is_one_line(cli, tmp_path) -> None:
    source = tmp_path / "binary.jsonl"
    source.write_bytes(b"\xff\xfe\x00garbage")
    result = cli("import", str(tmp_path / "j"), str(source))
    assert result.exit_code == 1 and "not UTF-8" in result.output


@pytest.mark.parametrize("when", ["9999-12-31T23:59:59", "99999999999999999999d", "nan", "-5", "1e300"])
def test_a_time_outside_1970_to_2100_is_refused(cli, sample_journal, when) -> None:
    result = cli("inspect", sample_journal, "--state", "pending", "--since", when)
    assert result.exit_code == 1 and "invalid time" in result.output


def test_an_empty_stream_name_is_refused(cli, sample_journal, tmp_path) -> None:
    result = cli("replay", sample_journal, "--endpoint", "tcp://127.0.0.1:1", "--socket-type", "push", "--name", "")
    assert result.exit_code == 1 and "--name must not be empty" in result.output
    device = cli(
        "device", str(tmp_path / "d"), "--frontend", "tcp://127.0.0.1:0", "--backend", "tcp://127.0.0.1:0", "--name", ""
    )
    assert device.exit_code == 1 and not (tmp_path / "d").exists()
