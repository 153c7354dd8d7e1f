"""`replay` and `device` with CURVE: keys from options and certificates, and a refused handshake named as such."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time

import pytest
import zmq
import zmq.auth

import zjournal

ZJOURNAL = [sys.executable, "-m", "zjournal.cli"]


@pytest.fixture
def curve_pull(ctx):
    """A CURVE server (PULL) on loopback, read by a thread: (its public key, endpoint, what it got)."""
    public, secret = zmq.curve_keypair()
    pull = ctx.socket(zmq.PULL)
    pull.curve_server, pull.curve_publickey, pull.curve_secretkey = True, public, secret
    port = pull.bind_to_random_port("tcp://127.0.0.1")
    got: list[bytes] = []
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            if pull.poll(50):
                got.append(pull.recv())

    thread = threading.Thread(target=read)
    thread.start()
    yield public.decode(), f"tcp://127.0.0.1:{port}", got
    stop.set()
    thread.join()


@pytest.fixture
def outbound(journal_path) -> str:
    with zjournal.open(journal_path) as j:
        for i in range(3):
            j.append("tasks", [b"t%d" % i], direction="out")
    return journal_path


def replay(path: str, endpoint: str, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*ZJOURNAL, "replay", path, "--endpoint", endpoint, "--socket-type", "push", "--timeout", "1", *extra],
        capture_output=True,
        text=True,
        timeout=60,
    )


def pending(path: str) -> int:
    with zjournal.open(path, read_only=True) as j:
        return j.count(state="pending")


def test_replay_to_a_curve_server_needs_its_key_and_says_why_when_it_fails(outbound, curve_pull) -> None:
    public, endpoint, got = curve_pull
    for extra in ([], ["--curve-server-key", zmq.curve_keypair()[0].decode()]):  # no key, then a wrong one
        done = replay(outbound, endpoint, *extra)
        assert done.returncode == 1 and "security handshake" in done.stderr
        assert "is anything listening" not in done.stderr and pending(outbound) == 3
    done = replay(outbound, endpoint, "--curve-server-key", public)
    assert done.returncode == 0 and "sent 3" in done.stdout
    assert pending(outbound) == 0
    deadline = time.monotonic() + 5
    while len(got) < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert sorted(got) == [b"t0", b"t1", b"t2"]


def test_replay_uses_a_client_certificate(tmp_path, outbound, curve_pull) -> None:
    public, endpoint, _ = curve_pull
    _, secret_file = zmq.auth.create_certificates(str(tmp_path), "client")
    done = replay(outbound, endpoint, "--curve-server-key", public, "--curve-secret-key-file", secret_file)
    assert done.returncode == 0 and "sent 3" in done.stdout


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--curve-server-key", "short"], "Z85 public key"),
        (["--curve-server-key", "," * 40], "Z85 public key"),  # not of the Z85 alphabet
        (["--curve-secret-key-file", "/nonexistent"], "needs --curve-server-key"),
    ],
)
def test_bad_curve_options_are_one_line(outbound, extra, message) -> None:
    done = replay(outbound, "tcp://127.0.0.1:1", *extra)
    assert done.returncode == 1 and message in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert pending(outbound) == 3


def test_a_device_serving_curve_answers_curve_clients_only(tmp_path, ctx) -> None:
    public_file, secret_file = zmq.auth.create_certificates(str(tmp_path), "device")
    server_public, _ = zmq.auth.load_certificate(public_file)
    device = subprocess.Popen(
        [
            *ZJOURNAL,
            "device",
            str(tmp_path / "d.journal"),
            "--frontend",
            "tcp://127.0.0.1:0",
            "--backend",
            "tcp://127.0.0.1:0",
            "--curve-secret-key-file",
            secret_file,
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert device.stdout is not None and device.stdout.readline().strip() == "ready"
        front = device.stdout.readline().split()[1]
        back = device.stdout.readline().split()[1]

        def curve_client(kind: int) -> zmq.Socket:
            sock = ctx.socket(kind)
            sock.linger = 0  # (a socket collected with messages queued would otherwise hold ctx.term)
            sock.curve_publickey, sock.curve_secretkey = zmq.curve_keypair()
            sock.curve_serverkey = server_public
            return sock

        worker = curve_client(zmq.REP)
        worker.connect(back)
        plain = ctx.socket(zmq.REQ)
        plain.linger = 0
        plain.connect(front)
        plain.send(b"from a plain client")
        client = curve_client(zmq.REQ)
        client.connect(front)
        client.send(b"hello")
        assert worker.poll(5000)
        assert worker.recv() == b"hello"  # the plain client's request never got in
        worker.send(b"world")
        assert client.poll(5000) and client.recv() == b"world"
        assert worker.poll(300) == 0
        device.send_signal(signal.SIGTERM)
        assert device.wait(20) == 0
        for sock in (worker, plain, client):
            sock.close()
    finally:
        if device.poll() is None:
            device.kill()
