"""``zjournal demo`` runs the whole scenario and loses nothing."""

from __future__ import annotations

import io
import re

import pytest
from rich.console import Console
from typer.testing import CliRunner

from zjournal.cli import app
from zjournal.demo import run_demo


@pytest.mark.parametrize("crash", [False, True])
def test_demo_loses_nothing(tmp_path, crash: bool) -> None:
    out = io.StringIO()
    result = run_demo(str(tmp_path / "demo.journal"), requests=800, crash=crash, console=Console(file=out, width=200))
    assert result["lost"] == 0 and result["left"] == 0
    assert result["accepted"] > 0 and result["redelivered"] > 0
    assert result["processed"] == result["accepted"]
    assert "lost 0" in out.getvalue()


def test_the_demo_leaves_its_journal_and_what_was_pending_at_the_stop_and_nothing_else(tmp_path, monkeypatch) -> None:
    import json
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the demo's temporary directories go here
    out = io.StringIO()
    result = run_demo(None, requests=400, console=Console(file=out, width=300))
    (made,) = [p for p in tmp_path.iterdir()]  # the ipc endpoints' directory is gone
    journal = made / "orders.journal"
    kept = made / "orders.journal.pending-at-stop.jsonl"
    assert sorted(p.name for p in made.iterdir()) == [journal.name, kept.name]
    rows = [json.loads(line) for line in kept.read_text().splitlines()]
    assert len(rows) == result["redelivered"] > 0 and {r["state"] for r in rows} == {"pending"}
    assert f"zjournal inspect {journal}" in out.getvalue() and str(kept) in out.getvalue()
    assert "up to 400 requests" in out.getvalue()


def test_demo_command() -> None:
    result = CliRunner().invoke(app, ["demo", "--requests", "400"])
    assert result.exit_code == 0, result.output
    assert "lost 0" in result.output


def test_the_demo_runs_again_on_its_own_journal(tmp_path) -> None:
    path = str(tmp_path / "demo.journal")
    for _ in range(2):
        assert run_demo(path, requests=200, console=Console(file=io.StringIO()))["lost"] == 0


def test_the_pipeline_demo_loses_nothing_with_confirm() -> None:
    import io

    from rich.console import Console

    from zjournal.demo_pipeline import run_pipeline_demo

    shown = io.StringIO()
    result = run_pipeline_demo(messages=1500, kills=3, console=Console(file=shown, width=120))
    assert result["sent"] == 1500 and result["handed"] == 1500 and result["lost"] == 0 and result["finished"]
    assert "journaled, confirm=True" in shown.getvalue() and "without confirms" in shown.getvalue()
    # ... and it shows what confirms are for: without them, what waited in ZeroMQ's queues was lost
    lost_without = re.search(r"without confirms (\d+) of 1500 were lost", shown.getvalue())
    assert lost_without is not None and int(lost_without.group(1)) > 0
