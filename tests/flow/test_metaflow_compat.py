"""A flow written for Metaflow runs on inloop after changing only its import lines."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from inloop import Flow

SOURCE = Path(__file__).parent / "metaflow_flows" / "playlist_flow.py"


def swap_imports(text: str) -> str:
    return text.replace("from metaflow import", "from inloop import")


def test_metaflow_flow_runs_after_swapping_imports(tmp_path: Path) -> None:
    original = SOURCE.read_text()
    converted = swap_imports(original)
    changed = [
        (a, b) for a, b in zip(original.splitlines(), converted.splitlines(), strict=True) if a != b
    ]
    assert len(changed) == 1 and changed[0][0].startswith("from metaflow import")
    flow = tmp_path / "playlist_flow.py"
    flow.write_text(converted)
    done = subprocess.run(
        [sys.executable, str(flow), "--no-pylint", "run", "--top_k", "1", "--max-workers", "2"],
        capture_output=True,
        text=True,
        timeout=120,
        env=os.environ.copy(),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "@conda_base" in done.stderr and "@card" in done.stderr  # one warning, not an error
    run = Flow("PlaylistFlow").latest_run
    assert run.data.playlist == {"rock": ["r1"], "jazz": ["j1"], "pop": ["p1"]}
    assert run.data.bonus_track == "p4"
    assert sorted(run.data.catalog) == ["jazz", "pop", "rock"]
    assert "playlist for run" in run["end"].task.stdout
