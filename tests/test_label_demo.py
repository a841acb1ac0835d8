"""The labeling demo runs end to end, as ``make demo`` starts it, and can run again."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run_demo(*args: str) -> subprocess.CompletedProcess[str]:
    """``python examples/label_demo.py ...`` with this test's INLOOP_HOME."""
    return subprocess.run(
        [sys.executable, str(EXAMPLES / "label_demo.py"), *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=EXAMPLES.parent,
    )


def test_label_demo_simulates_then_shows_how_to_label(inloop_home: Path) -> None:
    small = ("--max-labels", "40", "--batch", "10")
    proc = run_demo(*small)
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    out = proc.stdout
    assert "Created the labeling project 'digits'" in out
    assert "SIMULATED annotator" in out
    assert "random order" in out and "active learning" in out
    for count in ("20", "40"):  # every 20 labels, and the last row
        assert f"│ {count:>6} │" in out
    assert "inloop server" in out
    assert "http://127.0.0.1:8000/projects/digits/label" in out
    assert str(inloop_home) in out

    from inloop.label import current_labels, get_items, list_projects

    # Only 'digits' lives in the user's store: the simulation used a scratch database.
    assert [p.name for p in list_projects()] == ["digits"]
    items = get_items("digits")
    assert len(items) == 1347 and all(i.kind == "features" for i in items)
    assert current_labels("digits") == {}

    again = run_demo(*small)
    assert again.returncode == 0, f"stdout:\n{again.stdout}\nstderr:\n{again.stderr}"
    assert "Reusing the labeling project 'digits'" in again.stdout
    assert "(0 added now)" in again.stdout
    assert len(get_items("digits")) == 1347


def test_label_demo_rejects_bad_settings(inloop_home: Path) -> None:
    proc = run_demo("--batch", "0")
    assert proc.returncode == 2
    assert "--batch >= 1" in proc.stderr
