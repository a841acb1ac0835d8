"""The example flows run end to end, as a user would start them, and leave a readable run."""

from __future__ import annotations

import json
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
