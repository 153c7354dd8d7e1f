"""zjournal inspect: summaries, listings, single entries, JSON, live journals, bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

import zjournal

ZJOURNAL = [sys.executable, "-m", "zjournal.cli"]


def test_summary_counts_by_name_direction_and_state(cli, sample_journal) -> None:
    result = cli("inspect", sample_journal)
    assert result.exit_code == 0, result.output
    assert "pending 6" in result.output and "dead 1" in result.output
    assert "orders" in result.output and "tasks" in result.output
    assert "oldest pending: id 1" in result.output
    assert "attempts of pending entries: 1: 5, 2: 1" in result.output


def test_summary_json_has_the_documented_fields(cli, sample_journal) -> None:
    data = json.loads(cli("inspect", sample_journal, "--json").output)
    assert (data["pending"], data["acked"], data["dead"]) == (6, 0, 1)
    assert data["names"]["orders"] == {
        "pending": 5,
        "acked": 0,
        "dead": 1,
        "in": {"pending": 5, "acked": 0, "dead": 1},
        "out": {"pending": 0, "acked": 0, "dead": 0},
    }
    assert data["names"]["tasks"]["out"]["pending"] == 1
    assert data["oldest_pending"]["id"] == 1 and data["oldest_pending"]["age_seconds"] >= 0
    assert data["pending_attempts"] == {"1": 5, "2": 1}
    assert data["schema"] == zjournal.SCHEMA_VERSION and data["durability"] == "process"
    assert data["live"] is False and data["size_on_disk"] > 0


def listing(cli, path, *args):
    result = cli("inspect", path, "--json", *args)
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]  # (hints go to stderr)


def test_listing_filters(cli, sample_journal) -> None:
    assert [r["id"] for r in listing(cli, sample_journal, "--state", "pending")] == [1, 2, 3, 4, 5, 6]
    assert [r["id"] for r in listing(cli, sample_journal, "--name", "tasks")] == [6]
    assert [r["id"] for r in listing(cli, sample_journal, "--direction", "in", "--limit", "2")] == [1, 2]
    assert [r["id"] for r in listing(cli, sample_journal, "--min-attempts", "2")] == [6, 7]
    assert [r["id"] for r in listing(cli, sample_journal, "--state", "dead")] == [7]
    assert listing(cli, sample_journal, "--since", "1h", "--limit", "1")[0]["id"] == 1
    assert listing(cli, sample_journal, "--until", "1h") == []
    assert listing(cli, sample_journal, "--since", str(time.time() + 60)) == []


def test_listing_json_lines_carry_the_whole_entry(cli, sample_journal) -> None:
    row = listing(cli, sample_journal, "--name", "orders", "--limit", "1")[0]
    assert set(row) >= {"id", "name", "direction", "state", "attempts", "created", "frames", "envelope_size"}
    import base64

    assert [base64.b64decode(f) for f in row["frames"]] == [b"client", b"", b'{"order": 0}']
    assert row["envelope_size"] == 2


def test_listing_table_for_people(cli, sample_journal) -> None:
    result = cli("inspect", sample_journal, "--state", "pending")
    assert result.exit_code == 0
    assert '{"order": 0}' in result.output and "pending" in result.output


@pytest.mark.parametrize(
    "how, expected, absent",
    [
        ("hex", "7b226f72646572223a20307d", '{"order": 0}'),
        ("json", '{ "order": 0 }', "7b22"),
        ("auto", '{"order": 0}', "7b22"),
    ],
)
def test_a_listing_previews_with_the_decoder_asked_for(cli, sample_journal, how, expected, absent) -> None:
    result = cli("inspect", sample_journal, "--state", "pending", "--name", "orders", "--decode", how)
    assert result.exit_code == 0, result.output
    rows = result.output.splitlines()[1:]
    assert len(rows) == 5 and expected in rows[0] and absent not in rows[0]


def test_times_shown_to_people_carry_their_time_zone(cli, sample_journal) -> None:
    import re
    import time

    line = cli("inspect", sample_journal, "--id", "1").output.splitlines()[0]
    offset = time.strftime("%z", time.localtime())
    assert re.search(r"created \d{4}-\d\d-\d\d \d\d:\d\d:\d\d ([+-]\d{4})", line).group(1) == offset


@pytest.mark.parametrize(
    "entry, how, expected",
    [
        (1, "auto", '"order": 0'),
        (1, "text", '{"order": 0}'),
        (6, "msgpack", "1,"),
        (6, "hex", "93 01 02 03"),
        (1, "msgpack", "msgpack: not msgpack"),
    ],
)
def test_one_entry_in_full(cli, sample_journal, entry, how, expected) -> None:
    result = cli("inspect", sample_journal, "--id", str(entry), "--decode", how)
    assert result.exit_code == 0, result.output
    assert expected in result.output
    if entry == 1:
        assert "routing envelope" in result.output and "636c69656e74" in result.output


def test_one_entry_as_json(cli, sample_journal) -> None:
    record = json.loads(cli("inspect", sample_journal, "--id", "7", "--json").output)
    assert record["state"] == "dead" and record["reason"] == "too many attempts"
    assert record["decoded"][0]["decoder"] == "text"


@pytest.mark.parametrize(
    "args, message",
    [
        (["/no/such/journal"], "no journal at"),
        (["{sample}", "--state", "lost"], "unknown state 'lost'"),
        (["{sample}", "--direction", "up"], "unknown direction"),
        (["{sample}", "--since", "yesterday-ish"], "invalid time"),
        (["{sample}", "--id", "999"], "no entry 999"),
        (["{sample}", "--decode", "rot13"], "unknown decoder"),
        (["{file}"], "is a file"),
        (["{dir}"], "other files"),
    ],
)
def test_bad_input_is_one_line_and_exit_1(cli, sample_journal, tmp_path, args, message) -> None:
    f = tmp_path / "a-file"
    f.write_text("x")
    d = tmp_path / "a-dir"
    d.mkdir()
    (d / "notes").write_text("x")
    args = [a.format(sample=sample_journal, file=f, dir=d) for a in args]
    result = cli("inspect", *args)
    assert result.exit_code == 1
    assert message in result.output
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


WRITER = r"""
import sys, time, zjournal
journal = zjournal.open(sys.argv[1])
journal.append("live", [b"first"], direction="in")
print("ready", flush=True)
for i in range(int(sys.argv[2])):
    journal.append("live", [b"n%d" % i], direction="in")
    time.sleep(0.01)
print("done", flush=True)
sys.stdin.read()
"""


def test_inspect_a_live_journal_catches_up_and_changes_nothing(journal_path) -> None:
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, journal_path, "150"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert writer.stdout.readline().strip() == "ready"
        config = os.path.join(journal_path, "rocksdict-config.json")
        before = (os.stat(config).st_mtime_ns, sorted(os.listdir(journal_path)))
        seen = []
        for _ in range(3):
            done = subprocess.run([*ZJOURNAL, "inspect", journal_path, "--json"], capture_output=True, text=True)
            assert done.returncode == 0, done.stderr
            data = json.loads(done.stdout)
            assert data["live"] is True
            seen.append(data["pending"])
            time.sleep(0.3)
        assert seen == sorted(seen) and seen[-1] > seen[0]  # the counts catch up
        assert writer.stdout.readline().strip() == "done"
        final = json.loads(
            subprocess.run([*ZJOURNAL, "inspect", journal_path, "--json"], capture_output=True, text=True).stdout
        )
        assert final["pending"] == 151
        assert os.stat(config).st_mtime_ns == before[0]  # never rewrites the owner's config
    finally:
        writer.stdin.close()
        writer.wait(10)


def test_follow_prints_entries_as_they_arrive(journal_path) -> None:
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, journal_path, "300"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    follower = None
    try:
        assert writer.stdout.readline().strip() == "ready"
        follower = subprocess.Popen(
            [*ZJOURNAL, "inspect", journal_path, "--follow", "--json", "--name", "live"],
            stdout=subprocess.PIPE,
            text=True,
        )
        ids = []
        deadline = time.monotonic() + 20
        while len(ids) < 40 and time.monotonic() < deadline:
            ids.append(json.loads(follower.stdout.readline())["id"])
        assert len(ids) >= 40 and ids == sorted(set(ids))
    finally:
        if follower is not None:
            follower.kill()
            follower.wait(10)
        writer.stdin.close()
        writer.wait(10)


def test_a_relative_path_works(cli, sample_journal, monkeypatch) -> None:
    monkeypatch.chdir(os.path.dirname(sample_journal))
    result = cli("inspect", os.path.basename(sample_journal), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["pending"] == 6


@pytest.fixture
def hostile_journal(journal_path: str) -> str:
    """Names, reasons and payloads as a hostile peer or a careless program would write them."""
    with zjournal.open(journal_path) as j:
        j.append("orders[/]\x1b]0;title\x1b\\", [b"\x1b[2J\x1b[Hhidden \xc2\x9b31m [red]x"], direction="in")
        poison = j.append("b", [b"y"], direction="in")
        j.dead(poison, "KeyError: '[/bold]' \x1b[2K\u202eenil")
    return journal_path


@pytest.mark.parametrize("args", [[], ["--state", "pending"], ["--state", "dead"], ["--id", "1"], ["--id", "2"]])
def test_inspect_shows_data_literally_never_as_markup_or_terminal_control(cli, hostile_journal, args) -> None:
    result = cli("inspect", hostile_journal, *args)
    assert result.exit_code == 0, result.output
    assert "\x1b" not in result.output and "\x9b" not in result.output and "\u202e" not in result.output
    if args in ([], ["--id", "1"]):
        assert "orders[/]" in result.output and "\\x1b" in result.output  # shown, escaped


def test_the_text_decoder_refuses_escape_sequences() -> None:
    from zjournal.decode import decode

    used, text = decode(b"\x1b[2Jhello", "auto")
    assert used == "hex" and "\x1b" not in text
    assert decode(b"plain words\r\n", "text") == ("text", "plain words\\x0d\n")


def test_an_error_about_a_path_with_markup_is_one_plain_line(cli, tmp_path) -> None:
    result = cli("inspect", str(tmp_path / "no[/]such\x1b[2J"))
    assert result.exit_code == 1
    assert "no[/]such\\x1b[2J" in result.output and "Traceback" not in result.output


def test_follow_for_people_is_one_header_then_one_line_per_entry(journal_path) -> None:
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, journal_path, "100"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    follower = None
    try:
        assert writer.stdout.readline().strip() == "ready"
        follower = subprocess.Popen(
            [*ZJOURNAL, "inspect", journal_path, "--follow", "--name", "live"], stdout=subprocess.PIPE, text=True
        )
        lines = [follower.stdout.readline() for _ in range(30)]
        assert lines[0].split()[:2] == ["id", "name"]
        assert all(line.split()[1] == "live" for line in lines[1:])  # no header again, no boxes
        assert [int(line.split()[0]) for line in lines[1:]] == list(range(1, 30))
    finally:
        if follower is not None:
            follower.kill()
            follower.wait(10)
        writer.stdin.close()
        writer.wait(10)


@pytest.fixture
def big_journal(journal_path: str) -> str:
    with zjournal.open(journal_path) as j:
        for i in range(250):
            j.append("orders", [b"order %d" % i], direction="in")
    return journal_path


def test_a_listing_stops_at_its_default_limit_and_says_how_many_more(big_journal) -> None:
    done = subprocess.run([*ZJOURNAL, "inspect", big_journal, "--state", "pending"], capture_output=True, text=True)
    lines = done.stdout.splitlines()
    assert done.returncode == 0 and len(lines) == 1 + 100 + 1
    assert lines[-1] == "150 more — use --all for all"
    every = subprocess.run([*ZJOURNAL, "inspect", big_journal, "--all"], capture_output=True, text=True)
    assert len(every.stdout.splitlines()) == 1 + 250
    for bad in (["--limit", "0"], ["--limit", "5", "--all"]):  # 0 is no limit of entries: a usage error, as replay's
        done = subprocess.run([*ZJOURNAL, "inspect", big_journal, *bad], capture_output=True, text=True)
        assert done.returncode == 2 and done.stdout == "" and len(done.stderr.splitlines()) == 1


@pytest.mark.parametrize("limit", [None, 5])
def test_follow_starts_with_the_newest_entries_as_tail_does(big_journal, limit) -> None:
    """Not every entry of a large journal first: the newest --limit (default 100), then what arrives."""
    args = [] if limit is None else ["--limit", str(limit)]
    follower = subprocess.Popen(
        [*ZJOURNAL, "inspect", big_journal, "--follow", "--json", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        shown = limit or 100
        ids = [json.loads(follower.stdout.readline())["id"] for _ in range(shown)]
        assert ids == list(range(251 - shown, 251))
        assert follower.stderr.readline().strip() == f"{250 - shown} earlier not shown — use --all for all"
        with zjournal.open(big_journal) as j:  # the owner comes back and appends
            new = j.append("orders", [b"late"], direction="in")
        assert json.loads(follower.stdout.readline())["id"] == new
    finally:
        follower.kill()
        follower.wait(10)


def test_follow_with_filters_that_match_nothing_yet_shows_only_what_matches_later(big_journal) -> None:
    follower = subprocess.Popen(
        [*ZJOURNAL, "inspect", big_journal, "--follow", "--state", "DEAD", "--direction", "in"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert follower.stdout.readline().strip() == "no entries match"  # (the first look is done)
        with zjournal.open(big_journal) as j:
            j.append("orders", [b"pending"], direction="in")
            j.dead(j.append("replies", [b"out"], direction="out"), "not in")
            poison = j.append("orders", [b"poison"], direction="in")
            j.dead(poison, "bad")
            j.dead(3, "an old one")  # (read already: a follower shows what arrives)
            last = j.append("orders", [b"last"], direction="in")
            j.dead(last, "bad too")
        lines = [follower.stdout.readline().split() for _ in range(3)]
        assert lines[0][:4] == ["id", "name", "dir", "state"]
        shown = [(int(line[0]), line[2], line[3]) for line in lines[1:]]
        assert shown == [(poison, "in", "dead"), (last, "in", "dead")]
    finally:
        follower.kill()
        follower.wait(10)


def test_piped_output_is_plain_and_a_closed_pipe_ends_quietly(big_journal) -> None:
    for args in (["inspect", big_journal], ["inspect", big_journal, "--all"], ["export", big_journal]):
        done = subprocess.run([*ZJOURNAL, *args], capture_output=True, text=True)
        assert done.returncode == 0
        assert not set("─│┃╭╰┌└━") & set(done.stdout)  # no boxes
        assert all(len(line) < 200 for line in done.stdout.splitlines() if not line.startswith("{"))
        piped = subprocess.run(
            f"{' '.join(ZJOURNAL)} {' '.join(args)} | head -1", shell=True, capture_output=True, text=True
        )
        assert piped.stderr == "" and len(piped.stdout.splitlines()) == 1
