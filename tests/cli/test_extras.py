"""A setting that needs a missing optional extra fails in one line naming the pip install.

Each case runs the real command in a subprocess whose ``PYTHONPATH`` starts
with a folder holding ``<module>.py`` files that raise ``ImportError``: the
import of the extra's package really fails, as it does where it is not
installed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

FLOW = """
from inloop import FlowSpec, step


class TinyFlow(FlowSpec):
    @step
    def start(self):
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    TinyFlow()
"""

INLOOP = [sys.executable, "-c", "from inloop.cli.main import main; main()"]

CASES = {
    "postgres: inloop runs": (
        {"INLOOP_DB_URL": "postgresql+psycopg://nobody@127.0.0.1:1/none"},
        ["psycopg"],
        [*INLOOP, "runs"],
    ),
    "postgres: a flow run": (
        {"INLOOP_DB_URL": "postgresql+psycopg://nobody@127.0.0.1:1/none"},
        ["psycopg"],
        [sys.executable, "tiny_flow.py", "run"],
    ),
    "s3: a flow run": (
        {"INLOOP_ARTIFACTS_URL": "s3://bucket/prefix"},
        ["s3fs"],
        [sys.executable, "tiny_flow.py", "run"],
    ),
    "s3: inloop server": (
        {"INLOOP_ARTIFACTS_URL": "s3://bucket/prefix"},
        ["s3fs"],
        [*INLOOP, "server", "--port", "0"],
    ),
    "dask: a flow run": (
        {"INLOOP_EXECUTOR": "dask://127.0.0.1:1"},
        ["distributed"],
        [sys.executable, "tiny_flow.py", "run"],
    ),
    "redis: inloop server": (
        {"INLOOP_STREAM_URL": "redis://127.0.0.1:1/0"},
        ["redis"],
        [*INLOOP, "server", "--port", "0", "--workers", "2"],
    ),
    "redis: inloop serve worker": (
        {"INLOOP_STREAM_URL": "redis://127.0.0.1:1/0"},
        ["redis"],
        [*INLOOP, "serve", "worker", "digits"],
    ),
}

EXTRA = {"psycopg": "postgres", "s3fs": "s3", "distributed": "dask", "redis": "redis"}


@pytest.mark.parametrize("case", list(CASES))
def test_a_missing_extra_is_one_line_naming_the_pip_install(
    case: str, tmp_path: Path, inloop_home: Path
) -> None:
    settings, blocked, command = CASES[case]
    shim = tmp_path / "blocked"
    shim.mkdir()
    for module in blocked:
        (shim / f"{module}.py").write_text(
            f"raise ImportError(\"No module named '{module}'\", name={module!r})\n"
        )
    (tmp_path / "tiny_flow.py").write_text(FLOW)
    env = {
        **os.environ,
        **settings,
        "PYTHONPATH": str(shim),
        "COLUMNS": "80",  # narrow: the line must not be folded
    }
    done = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert f'pip install "inloop[{EXTRA[blocked[0]]}]"' in lines[0]
