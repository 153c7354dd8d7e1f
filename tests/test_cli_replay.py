"""zjournal replay into real PULL, ROUTER and REP endpoints; resumption; refusals."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

import pytest
import zmq

import zjournal


@pytest.fixture
def endpoint_of(ctx):
    def _bind(kind: int) -> tuple[zmq.Socket, str]:
        sock = ctx.socket(kind)
        port = sock.bind_to_random_port("tcp://127.0.0.1")
        return sock, f"tcp://127.0.0.1:{port}"

    return _bind


def drain(sock: zmq.Socket, wait: int = 500) -> list[list[bytes]]:
    got = []
    while sock.poll(wait):
        got.append(sock.recv_multipart())
    return got


def pending(path: str) -> int:
    with zjournal.open(path, read_only=True) as j:
        return j.count(state="pending")


def test_replay_into_pull_sends_every_pending_entry_once(cli, sample_journal, endpoint_of) -> None:
    pull, addr = endpoint_of(zmq.PULL)
    result = cli("replay", sample_journal, "--endpoint", addr, "--socket-type", "PUSH")
    assert result.exit_code == 0, result.output
    assert "sent 6, skipped 0, failed 0" in result.output
    got = drain(pull)
    assert got == [[b'{"order": %d}' % i] for i in range(5)] + [[b"\x93\x01\x02\x03"]]  # routing ids are not sent
    assert pending(sample_journal) == 0
    again = cli("replay", sample_journal, "--endpoint", addr, "--socket-type", "push")
    assert "sent 0" in again.output and drain(pull, 200) == []  # nothing is sent twice
    with zjournal.open(sample_journal, read_only=True) as j:
        assert j.replays()[-1]["count"] == 6 and j.replays()[-1]["endpoint"] == addr


def test_replay_into_router_keeps_the_delimiter(cli, sample_journal, endpoint_of) -> None:
    router, addr = endpoint_of(zmq.ROUTER)
    result = cli("replay", sample_journal, "--endpoint", addr, "--socket-type", "Dealer", "--name", "orders")
    assert result.exit_code == 0, result.output
    got = drain(router)
    assert [m[1:] for m in got] == [[b"", b'{"order": %d}' % i] for i in range(5)]
    assert len({m[0] for m in got}) == 1  # one peer: the replaying DEALER


def test_replay_into_rep_waits_for_each_reply(cli, sample_journal, endpoint_of) -> None:
    rep, addr = endpoint_of(zmq.REP)
    seen = []

    def serve() -> None:
        while rep.poll(3000):
            seen.append(rep.recv())
            rep.send(b"ok")

    server = threading.Thread(target=serve)
    server.start()
    result = cli("replay", sample_journal, "--endpoint", addr, "--socket-type", "req", "--name", "orders")
    server.join()
    assert result.exit_code == 0, result.output
    assert seen == [b'{"order": %d}' % i for i in range(5)]
    assert pending(sample_journal) == 1  # the task stayed: only --name orders was replayed


def test_interrupted_replay_resumes_with_what_is_left(cli, sample_journal, endpoint_of) -> None:
    pull, addr = endpoint_of(zmq.PULL)
    first = cli("replay", sample_journal, "--endpoint", addr, "--socket-type", "push", "--limit", "2")
    assert "sent 2" in first.output
    second = cli("replay", sample_journal, "--endpoint", addr, "--socket-type", "push")
    assert "sent 4" in second.output
    bodies = [m[0] for m in drain(pull)]
    assert len(bodies) == 6 and len(set(bodies)) == 6


def test_unreachable_endpoint_times_out_and_leaves_entries_pending(cli, sample_journal) -> None:
    result = cli(
        "replay", sample_journal, "--endpoint", "tcp://127.0.0.1:9", "--socket-type", "push", "--timeout", "0.3"
    )
    assert result.exit_code == 1
    assert "did not take messages within 0.3s" in result.output
    assert pending(sample_journal) == 6


def test_dry_run_moves_nothing(cli, sample_journal, endpoint_of) -> None:
    pull, addr = endpoint_of(zmq.PULL)
    result = cli("replay", sample_journal, "--endpoint", addr, "--socket-type", "push", "--dry-run")
    assert result.exit_code == 0 and "6 entries would be sent" in result.output
    assert drain(pull, 200) == [] and pending(sample_journal) == 6


def test_dead_letters_and_chosen_ids(cli, sample_journal, endpoint_of) -> None:
    pull, addr = endpoint_of(zmq.PULL)
    result = cli("replay", sample_journal, "--endpoint", addr, "--socket-type", "push", "--state", "dead")
    assert "sent 1" in result.output and drain(pull) == [[b"poison"]]
    result = cli("replay", sample_journal, "--endpoint", addr, "--socket-type", "push", "--id", "2", "--id", "4")
    assert "sent 2" in result.output and drain(pull) == [[b'{"order": 1}'], [b'{"order": 3}']]


def test_rate_limits_the_sending(cli, sample_journal, endpoint_of) -> None:
    _pull, addr = endpoint_of(zmq.PULL)
    started = time.monotonic()
    result = cli("replay", sample_journal, "--endpoint", addr, "--socket-type", "push", "--rate", "20")
    assert result.exit_code == 0
    assert time.monotonic() - started >= 5 / 20  # six messages at 20/s take at least 0.25 s


def test_a_journal_held_by_a_running_process_is_refused(cli, sample_journal) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, zjournal; j = zjournal.open(sys.argv[1]); print('ready', flush=True); sys.stdin.read()",
            sample_journal,
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "ready"
        result = cli("replay", sample_journal, "--endpoint", "tcp://127.0.0.1:9", "--socket-type", "push")
        assert result.exit_code == 1
        assert "held open by a running process" in result.output and "redelivery" in result.output
    finally:
        holder.stdin.close()
        holder.wait(10)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--endpoint", "not-an-endpoint", "--socket-type", "push"], "cannot connect to endpoint 'not-an-endpoint'"),
        (["--endpoint", "tcp://127.0.0.1:9", "--socket-type", "sideways"], "unsupported socket type"),
        (["--endpoint", "tcp://127.0.0.1:9", "--socket-type", "push", "--state", "acked"], "--state pending or dead"),
        (["--endpoint", "tcp://127.0.0.1:9", "--socket-type", "push", "--id", "999"], "no entry 999"),
    ],
)
def test_bad_replay_input(cli, sample_journal, args, message) -> None:
    result = cli("replay", sample_journal, *args)
    assert result.exit_code == 1 and message in result.output
    assert "Traceback" not in result.output
    assert pending(sample_journal) == 6


def test_replay_through_a_real_subprocess(sample_journal, endpoint_of) -> None:
    pull, addr = endpoint_of(zmq.PULL)
    done = subprocess.run(
        [sys.executable, "-m", "zjournal.cli", "replay", sample_journal, "--endpoint", addr, "--socket-type", "push"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert len(drain(pull)) == 6
    summary = subprocess.run(
        [sys.executable, "-m", "zjournal.cli", "inspect", sample_journal, "--json"], capture_output=True, text=True
    )
    assert json.loads(summary.stdout)["pending"] == 0


def test_replay_through_pub_with_no_subscriber_sends_nothing_and_keeps_everything(cli, sample_journal) -> None:
    with zjournal.open(sample_journal, read_only=True) as j:
        before = j.count(state="pending")
    result = cli(
        "replay", sample_journal, "--endpoint", "tcp://127.0.0.1:1", "--socket-type", "pub", "--timeout", "0.3"
    )
    assert result.exit_code == 1
    assert "no subscriber" in result.output and "sent 0" in result.output
    assert pending(sample_journal) == before  # a PUB would have dropped them all, and they were acked


def test_replay_through_pub_sends_what_a_subscriber_asked_for_and_keeps_the_rest(
    cli, sample_journal, endpoint_of
) -> None:
    sub, addr = endpoint_of(zmq.SUB)
    sub.subscribe(b'{"order"')  # the orders, not the msgpack task
    got: list[list[bytes]] = []
    done = threading.Event()

    def subscriber() -> None:  # a live SUB is blocked in recv or poll: that is when libzmq sends its subscriptions
        while not done.is_set():
            if sub.poll(50):
                got.append(sub.recv_multipart())

    thread = threading.Thread(target=subscriber)
    thread.start()
    try:
        result = cli("replay", sample_journal, "--endpoint", addr, "--socket-type", "PUB", "--timeout", "1")
        time.sleep(0.3)
    finally:
        done.set()
        thread.join()
    assert got == [[b'{"order": %d}' % i] for i in range(5)]
    assert result.exit_code == 1 and "sent 5" in result.output and "no subscriber" in result.output
    with zjournal.open(sample_journal, read_only=True) as j:
        assert [e.name for e in j.entries(state="pending")] == ["tasks"]  # nobody subscribed to it: still pending


def test_one_replay_is_one_record_however_many_chunks(cli, journal_path, endpoint_of) -> None:
    with zjournal.open(journal_path) as j:
        for i in range(250):
            j.append("tasks", [b"t%d" % i], direction="out")
    pull, addr = endpoint_of(zmq.PULL)
    result = cli("replay", journal_path, "--endpoint", addr, "--socket-type", "push", "--chunk", "100")
    assert result.exit_code == 0 and "sent 250" in result.output
    assert len(drain(pull)) == 250
    with zjournal.open(journal_path, read_only=True) as j:
        replays = j.replays()
    assert len(replays) == 1 and replays[0]["count"] == 250
    assert (replays[0]["first_id"], replays[0]["last_id"]) == (1, 250)


def test_a_rep_that_takes_a_request_and_never_answers_is_named_as_such(cli, sample_journal, endpoint_of) -> None:
    rep, addr = endpoint_of(zmq.REP)
    done = threading.Event()

    def silent() -> None:  # takes one request, never replies
        if rep.poll(5000):
            rep.recv_multipart()
        done.wait(10)

    thread = threading.Thread(target=silent)
    thread.start()
    try:
        result = cli("replay", sample_journal, "--endpoint", addr, "--socket-type", "req", "--timeout", "0.5")
    finally:
        done.set()
        thread.join()
    assert result.exit_code == 1
    assert "took entry 1 but sent no reply" in result.output
    assert "sent 0, skipped 0, failed 1, not tried 5" in result.output
    assert pending(sample_journal) == 6
