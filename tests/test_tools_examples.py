"""The runnable examples in tools/ keep working."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

TOOLS = Path(__file__).resolve().parent.parent / "tools"


def run(script: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, str(TOOLS / script), *args], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    return done.stdout


def test_example_gets_unacked_messages_back(tmp_path) -> None:
    out = run("example.py", str(tmp_path / "orders.journal"))
    assert "3 pending" in out and "after handling them: 0 pending" in out


def test_multithreaded_server_example(tmp_path) -> None:
    out = run("example_mtserver.py", "--requests", "20", "--dir", str(tmp_path))
    assert "20 answers checked" in out
    assert out.count("entries left: 0") == 2


def test_crash_harness_short_mode_loses_nothing(tmp_path) -> None:
    import json

    out = tmp_path / "crash.json"
    run("crashtest.py", "--short", "--seed", "1", "--json", str(out))
    result = json.loads(out.read_text())
    assert result["rounds"] == 6 and sum(result["kills"].values()) == 6
    assert result["accepted"] > 0 and result["lost"] == 0
    assert result["processed"] == result["accepted"]


def test_power_loss_simulation(tmp_path) -> None:
    import json

    out = tmp_path / "power.json"
    # (1 s: on a loaded machine a cut before the first fsync keeps nothing)
    run("powerloss.py", "--seconds", "1.0", "--rounds", "1", "--seed", "3", "--json", str(out))
    results = {r["mode"]: r for r in json.loads(out.read_text())}
    assert results["always"]["returned"] > 0 and results["always"]["lost"] == 0
    assert results["interval"]["kept"] > 0
    assert results["interval"]["lost_window_ms"] < 2000  # a bounded window, not unbounded loss
    assert results["slots"]["returned"] > 0 and results["slots"]["garbage"] == 0  # torn slots rejected
    # a confirm sender's receiver loses its power: every message sent is acked before or redelivered after
    receiver = results["confirm-receiver"]
    assert receiver["returned"] > 0 and receiver["lost"] == 0 and receiver["all_confirmed"]
    # the sender loses its power: what its image holds, and what it sends after the restart, arrives
    sender = results["confirm-sender"]
    assert sender["returned"] > 1000 and sender["lost_after_durable"] == 0 and sender["all_confirmed"]


def test_crash_harness_pipeline_short_mode_loses_nothing(tmp_path) -> None:
    import json

    out = tmp_path / "pipe.json"
    run("crashtest.py", "--system", "pipeline", "--short", "--seed", "2", "--rate", "2000", "--json", str(out))
    result = json.loads(out.read_text())
    assert result["system"] == "pipeline" and result["rounds"] == 6
    assert result["accepted"] > 0 and result["lost"] == 0 and result["left_pending"] == 0


def test_the_benchmark_runs_every_scenario_side_by_side_and_writes_json(tmp_path) -> None:
    import json

    out = tmp_path / "bench.json"
    scenarios = "hotpath,api,pushpull,fanin,latency,device,memory"
    text = run("bench", "--quick", "--repeat", "1", "--only", scenarios, "--json", str(out))
    report = json.loads(out.read_text())
    assert set(report["scenarios"]) == set(scenarios.split(","))
    assert [r["senders"] for r in report["scenarios"]["fanin"]["rows"]] == [1, 4]
    assert [r["call"] for r in report["scenarios"]["api"]["rows"]] == ["append", "get", "ack", "dead"]
    assert all(r["journal_us"] > 0 and r["rocksdb_us"] > 0 for r in report["scenarios"]["api"]["rows"])
    variants = {r["variant"] for r in report["scenarios"]["pushpull"]["rows"]}
    assert variants == {"raw", "process", "interval", "always", "process+confirm"}
    assert all(r["median"] > 0 for r in report["scenarios"]["pushpull"]["rows"])
    assert {t["target"] for t in report["targets"]} >= {
        "zjournal.Queue (process) / zmq.proxy",
        "PUSH->PULL 100 B, confirm=True (process) / raw pyzmq",
        "latency p50, confirm=True / without (pipe)",
        "receiver CPU per message, 4 confirm senders / 1",
    }
    assert "| variant | p50 | p99 | p99.9 | p50 / raw |" in text and "## targets" in text
