"""The plugin API: discovery through entry points (nothing installed), failures, extension points."""

from __future__ import annotations

import importlib.metadata
import json
import textwrap
import time
import urllib.request

import pytest
import zmq

import zjournal
import zjournal.plugins as plugins

THIRD_PARTY = '''
import zjournal

events = []

class Recorder:
    def attach(self, journal):
        events.append(("attach", journal.path))
    def on_append(self, name, direction, count):
        events.append(("append", name, direction, count))
    def on_ack(self, name, direction, count):
        events.append(("ack", name, direction, count))
    def on_dead(self, name, direction, entry_id, reason):
        events.append(("dead", name, entry_id, reason))
    def on_redelivery(self, name, direction, entry_id, attempts):
        events.append(("redelivery", name, entry_id, attempts))

def rot13(data):
    import codecs
    if not data.startswith(b"R13:"):
        raise zjournal.decode.NotDecodable("not rot13")
    return codecs.decode(data[4:].decode(), "rot13")

def loud(frames):
    return "durable" if frames[0].isupper() else "ephemeral"

def add_command(app):
    @app.command(name="hello")
    def hello():
        """Say hello from a plugin."""
        print("hello from a plugin")

plugin = zjournal.Plugin(
    name="thirdparty", version="1.2.3", description="a test plugin",
    decoders={"rot13": rot13}, classifiers={"loud": loud}, observers=[Recorder()], commands=[add_command],
)

def broken():
    raise RuntimeError("this plugin is broken")
'''


@pytest.fixture
def fake_plugins(monkeypatch, tmp_path):
    """Entry points as an installed distribution would declare them, without installing anything."""
    (tmp_path / "thirdparty_plugin.py").write_text(textwrap.dedent(THIRD_PARTY))
    monkeypatch.syspath_prepend(str(tmp_path))
    real = list(importlib.metadata.entry_points(group=plugins.ENTRY_POINT_GROUP))
    fake = [
        importlib.metadata.EntryPoint("thirdparty", "thirdparty_plugin:plugin", plugins.ENTRY_POINT_GROUP),
        importlib.metadata.EntryPoint("broken", "thirdparty_plugin:broken", plugins.ENTRY_POINT_GROUP),
        importlib.metadata.EntryPoint("missing", "no_such_module:plugin", plugins.ENTRY_POINT_GROUP),
    ]
    monkeypatch.setattr(plugins, "_entry_points", lambda: real + fake)
    monkeypatch.delenv(plugins.ENV_VAR, raising=False)
    with pytest.warns(UserWarning) as warned:
        registry = plugins.load(reload=True)
    yield registry, warned
    monkeypatch.undo()
    plugins.load(reload=True)


def test_discovery_lists_first_party_and_third_party_plugins(fake_plugins) -> None:
    registry, _ = fake_plugins
    names = {p.name for p in registry.plugins}
    assert {"json", "text", "msgpack", "hex", "prometheus", "majordomo", "thirdparty"} <= names
    third = next(p for p in registry.plugins if p.name == "thirdparty")
    assert third.version == "1.2.3"
    assert "decoders: rot13" in third.provides()


def test_a_broken_plugin_is_reported_by_name_and_skipped(fake_plugins) -> None:
    registry, warned = fake_plugins
    assert set(registry.failed) == {"broken", "missing"}
    messages = " ".join(str(w.message) for w in warned)
    assert "'broken' failed to load" in messages and "'missing' failed to load" in messages


def test_the_cli_lists_plugins_and_keeps_working(fake_plugins, cli, sample_journal) -> None:
    result = cli("plugins")
    assert result.exit_code == 0
    assert "thirdparty 1.2.3: a test plugin" in result.output
    assert "broken: FAILED to load" in result.output
    data = json.loads(cli("plugins", "--json").output)
    assert "thirdparty" in {p["name"] for p in data["plugins"]} and "broken" in data["failed"]
    assert cli("inspect", sample_journal).exit_code == 0


def test_a_plugin_decoder_serves_inspect(fake_plugins, cli, journal_path) -> None:
    with zjournal.open(journal_path) as j:
        j.append("s", [b"R13:uryyb jbeyq"], direction="in")
    result = cli("inspect", journal_path, "--id", "1", "--decode", "rot13")
    assert result.exit_code == 0 and "hello world" in result.output
    auto = cli("inspect", journal_path, "--id", "1")
    assert "hello world" in auto.output or "R13:" in auto.output  # text may claim it first


def test_a_plugin_command_is_added_to_the_cli(fake_plugins) -> None:
    from typer.testing import CliRunner

    import zjournal.cli as cli_module

    cli_module._register_plugin_commands()
    result = CliRunner().invoke(cli_module.app, ["hello"])
    assert result.exit_code == 0 and "hello from a plugin" in result.output


def test_observers_see_appends_acks_dead_and_redeliveries(fake_plugins, journal_path, ctx, endpoint) -> None:
    import thirdparty_plugin

    thirdparty_plugin.events.clear()
    with zjournal.open(journal_path, max_attempts=2) as j:
        pull = j.wrap(ctx.socket(zmq.PULL), name="in")
        push = ctx.socket(zmq.PUSH)
        addr = endpoint()
        pull.bind(addr)
        push.connect(addr)
        push.send(b"a")
        push.send(b"b")
        pull.recv()
        pull.recv()
        gone = j.append("x", [b"x"], direction="out")
        j.dead(gone, "why")
        again = j.append("y", [b"y"], direction="in", attempts=1)
        j.attempt(again)
    events = thirdparty_plugin.events
    assert events[0] == ("attach", journal_path)
    assert ("append", "in", "in", 1) in events and ("ack", "in", "in", 1) in events
    assert ("dead", "x", gone, "why") in events
    assert ("redelivery", "y", again, 2) in events


def test_plugins_false_attaches_no_observers(fake_plugins, journal_path) -> None:
    import thirdparty_plugin

    thirdparty_plugin.events.clear()
    with zjournal.open(journal_path, plugins=False) as j:
        j.append("s", [b"x"], direction="in")
    assert thirdparty_plugin.events == []


def test_environment_variable_restricts_plugins(fake_plugins, monkeypatch) -> None:
    monkeypatch.setenv(plugins.ENV_VAR, "json,thirdparty")
    registry = plugins.load(reload=True)
    assert {p.name for p in registry.plugins} == {"json", "thirdparty"}
    assert registry.failed == {}
    monkeypatch.setenv(plugins.ENV_VAR, "none")
    assert plugins.load(reload=True).plugins == []


def test_a_plugin_name_that_is_not_installed_is_warned_about(fake_plugins, monkeypatch) -> None:
    monkeypatch.setenv(plugins.ENV_VAR, "jsno,thirdparty")
    with pytest.warns(UserWarning, match=r"not installed: 'jsno' \(installed: .*json"):
        registry = plugins.load(reload=True)
    assert {p.name for p in registry.plugins} == {"thirdparty"}


def test_named_classifier_from_a_plugin(fake_plugins, journal, ctx, endpoint) -> None:
    pull = journal.wrap(ctx.socket(zmq.PULL), name="in", classify="loud")
    push = ctx.socket(zmq.PUSH)
    addr = endpoint()
    pull.bind(addr)
    push.connect(addr)
    push.send(b"IMPORTANT")
    push.send(b"chatter")
    pull.recv()
    assert [e.frames for e in journal.entries()] == [[b"IMPORTANT"]]
    pull.recv()
    assert journal.count_ephemeral("in") == 1
    with pytest.raises(zjournal.InvalidArgumentError, match="loud"):
        journal.wrap(ctx.socket(zmq.PULL), classify="quiet")


def test_majordomo_ack_policy_acks_on_the_final_reply(journal, ctx, endpoint) -> None:
    worker = journal.wrap(ctx.socket(zmq.DEALER), name="worker", ack="majordomo")
    broker = ctx.socket(zmq.ROUTER)
    addr = endpoint()
    broker.bind(addr)
    worker.connect(addr)
    worker.send_multipart([b"", b"MDPW02", b"\x01", b"echo"])  # READY
    identity = broker.recv_multipart()[0]
    for client in (b"client-A", b"client-B"):
        broker.send_multipart([identity, b"", b"MDPW02", b"\x02", client, b"", b"work for " + client])
    broker.send_multipart([identity, b"", b"MDPW02", b"\x05"])  # HEARTBEAT
    requests = [worker.recv_multipart() for _ in range(3)]
    assert journal.count(name="worker", direction="in", state="pending") == 2  # the heartbeat is done at once
    first = requests[0]
    worker.send_multipart([b"", b"MDPW02", b"\x03", first[3], b"", b"partial"])
    assert journal.count(name="worker", direction="in", state="pending") == 2  # PARTIAL is not the end
    worker.send_multipart([b"", b"MDPW02", b"\x04", first[3], b"", b"final"])
    pending = [e.frames[3] for e in journal.entries(name="worker", direction="in")]
    assert pending == [b"client-B"]


def test_prometheus_exporter_scraped_over_http(journal_path, ctx, endpoint) -> None:
    import socket

    import zjournal_prometheus

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    zjournal_prometheus.serve(port)
    try:
        body = scrape_while_moving(journal_path, ctx, endpoint, port)
    finally:
        zjournal_prometheus._enabled = False  # later tests' journals are not watched
    assert 'zjournal_appended_total{direction="in",name="prom-orders"} 5.0' in body
    assert 'zjournal_acked_total{direction="in",name="prom-orders"} 4.0' in body
    assert 'zjournal_appended_total{direction="out",name="prom-feed"} 5.0' in body
    assert f'zjournal_entries{{journal="{journal_path}",name="prom-orders",state="pending"}} 1.0' in body
    assert "zjournal_oldest_pending_age_seconds" in body
    assert f'zjournal_outbound_pending{{journal="{journal_path}",name="prom-confirmed"}} 1.0' in body
    assert f'zjournal_duplicates_dropped{{journal="{journal_path}"}} 1.0' in body
    assert f'zjournal_confirm_latency_seconds_count{{journal="{journal_path}"}} 1.0' in body
    assert f'zjournal_confirm_latency_seconds_sum{{journal="{journal_path}"}}' in body


def scrape_while_moving(journal_path, ctx, endpoint, port) -> str:
    from zjournal.sockets import confirm_wire

    with zjournal.open(journal_path) as j:
        pull = j.wrap(ctx.socket(zmq.PULL), name="prom-orders")
        push = j.wrap(ctx.socket(zmq.PUSH), name="prom-feed")
        addr = endpoint()
        pull.bind(addr)
        push.connect(addr)
        for i in range(5):
            push.send(b"%d" % i)
        for _ in range(5):
            pull.recv()
        # A confirm=True sender facing a plain receiver (never confirmed), and a resend received twice.
        confirmed = j.wrap(ctx.socket(zmq.PUSH), name="prom-confirmed", confirm=True, confirm_timeout=60)
        plain = ctx.socket(zmq.PULL)
        to_plain = endpoint()
        plain.bind(to_plain)
        confirmed.connect(to_plain)
        confirmed.send(b"unconfirmed")
        dedup = j.wrap(ctx.socket(zmq.PULL), name="prom-dedup")
        to_dedup = endpoint()
        dedup.bind(to_dedup)
        resender = ctx.socket(zmq.PUSH)
        resender.connect(to_dedup)
        origin, back = b"\x05" * 16, b"tcp://127.0.0.1:1"
        for seq, body in ((1, b"once"), (1, b"once"), (2, b"after")):  # the second is a resend: dropped
            resender.send_multipart([confirm_wire.encode_header(origin, seq, 1, back), body])
        assert dedup.recv_multipart() == [b"once"] and dedup.recv_multipart() == [b"after"]
        # A confirm=True sender whose receiver (a journaled PULL) confirms: its latency is measured.
        timed = j.wrap(ctx.socket(zmq.PUSH), name="prom-timed", confirm=True)
        taker = j.wrap(ctx.socket(zmq.PULL), name="prom-taker")
        to_taker = endpoint()
        taker.bind(to_taker)
        timed.connect(to_taker)
        timed.send(b"timed")
        assert taker.recv() == b"timed"
        deadline = time.monotonic() + 10
        while j.count(name="prom-timed", state="pending", direction="out"):
            assert time.monotonic() < deadline, "never confirmed"
            taker.poll(10)
        return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
