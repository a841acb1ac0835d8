"""The example flows run end to end, as a user would start them, and leave a readable run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

# Two quick models keep the run to a few seconds while still exercising the foreach and join.
SMALL_CONFIGS = [{"model": "logreg", "C": 0.1}, {"model": "svc", "C": 10.0}]


def run_example(name: str, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """Run ``python examples/<name> run ...`` in a subprocess.

    The subprocess inherits this test's environment: its INLOOP_HOME (from the
    ``inloop_home`` fixture) and its user name, so the client in this process
    finds the run in its default namespace.
    """
    return subprocess.run(
        [sys.executable, str(EXAMPLES / name), "run", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=EXAMPLES.parent,
    )


@pytest.mark.slow
def test_digits_flow_runs_and_keeps_the_best_model(inloop_home: Path) -> None:
    proc = run_example(
        "digits_flow.py", "--configs", json.dumps(SMALL_CONFIGS), "--max-workers", "2"
    )
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"

    from inloop import Flow

    run = Flow("DigitsFlow").latest_run
    assert run is not None
    assert run.successful
    data = run.data
    assert data is not None
    assert len(data.results) == len(SMALL_CONFIGS)
    assert data.best_accuracy == max(row["accuracy"] for row in data.results)
    assert data.best_accuracy > 0.9
    # The model is a real fitted estimator that scores the held-out split it was chosen on.
    assert data.best_model.score(data.X_test, data.y_test) == pytest.approx(data.best_accuracy)
    accuracies = sorted(task.data.accuracy for task in run["train"] if task.data is not None)
    assert accuracies == sorted(row["accuracy"] for row in data.results)
    # end printed the results table and the client-API lines into its stored stdout.
    end_task = run["end"].task
    assert end_task is not None
    assert "test accuracy" in end_task.stdout
    assert 'Flow("DigitsFlow").latest_run' in end_task.stdout


def test_digits_flow_rejects_a_bad_config(inloop_home: Path) -> None:
    proc = run_example("digits_flow.py", "--configs", json.dumps([{"model": "forest"}]))
    assert proc.returncode != 0
    output = proc.stdout + proc.stderr
    assert "forest" in output
    assert "logreg, svc" in output


@pytest.mark.slow
def test_serve_demo_serves_the_flows_models_promotes_and_rolls_back(inloop_home: Path) -> None:
    flow = run_example(
        "digits_flow.py", "--configs", json.dumps(SMALL_CONFIGS), "--max-workers", "2"
    )
    assert flow.returncode == 0, flow.stderr
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / "serve_demo.py")],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=EXAMPLES.parent,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"

    from inloop import Flow
    from inloop.label import get_items
    from inloop.serve import count_requests, current_policy, get_version, policy_history
    from inloop.serve.review import routed_items

    # Every held-out digit was served and archived, plus the two after the policy changes.
    n_test = len(Flow("DigitsFlow").latest_run.data.y_test)
    assert count_requests("digits") == n_test + 2
    actions = [(r.action, r.created_by) for r in policy_history("digits")]
    assert actions == [
        ("create", "demo"),
        ("promote", "demo-scientist"),
        ("rollback", "demo-scientist"),
    ]
    policy = current_policy("digits").policy
    name, number = policy.champion.split("@")
    champion = get_version(name, int(number))
    assert champion.run_pathspec is not None and champion.run_pathspec.startswith("DigitsFlow/")
    routed = routed_items("digits")
    assert 0 < len(routed) <= 40
    assert 0 < len(get_items("digits-review")) <= len(routed)  # identical inputs: one item
    assert f"{len(routed)} requests went to the labeling queue" in proc.stdout
    assert f"the next answer came from {policy.challengers[0]}" in proc.stdout
    assert f"the next answer came from {policy.champion}" in proc.stdout
