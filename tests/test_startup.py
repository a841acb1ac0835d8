"""What the everyday start-up paths import: nothing heavy that they do not use.

``inloop --help``, ``inloop label status``, a flow's first run in a fresh
``INLOOP_HOME`` and the web app's start each run in a fresh interpreter here,
which then lists the heavy packages it imported. Durations belong to
``benchmarks/startup.py``; these tests guard the cause (an import) without
timing anything.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

# Packages that take from a tenth of a second to several seconds to import.
HEAVY = ("sklearn", "cleanlab", "scipy", "pandas", "fastapi", "starlette", "httpx", "dask")

_REPORT = """
import json, sys
heavy = sorted({name.split(".")[0] for name in sys.modules} & set(HEAVY))
print("HEAVY=" + json.dumps(heavy))
"""


def _imported(code: str, tmp_path: Path, *, heavy: tuple[str, ...] = HEAVY) -> list[str]:
    """Run ``code`` in a fresh interpreter; the packages of ``heavy`` it had imported at exit."""
    script = tmp_path / "probe.py"
    report = f"HEAVY = {heavy!r}\n" + _REPORT
    script.write_text(
        f"import atexit\natexit.register(lambda: exec({report!r}))\n" + textwrap.dedent(code),
        encoding="utf-8",
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    proc = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, f"the probe failed:\n{proc.stderr[-3000:]}"
    lines = [line for line in proc.stdout.splitlines() if line.startswith("HEAVY=")]
    assert lines, f"the probe printed no report:\n{proc.stderr[-3000:]}"
    imported: list[str] = json.loads(lines[-1].removeprefix("HEAVY="))
    return imported


def test_cli_help_imports_nothing_heavy(tmp_path: Path) -> None:
    code = """
    import sys
    sys.argv = ["inloop", "--help"]
    from inloop.cli.main import main
    main()
    """
    # Not even the database layer: the help text needs none of it.
    assert _imported(code, tmp_path, heavy=(*HEAVY, "sqlalchemy", "numpy")) == []


def test_label_status_imports_no_ml_or_web_stack(tmp_path: Path) -> None:
    code = """
    import sys
    from inloop.label import add_items, annotate, create_project
    create_project("status-probe", ["a", "b"], overlap=2)
    first, _ = add_items("status-probe", [{"external_id": "1", "text": "x"},
                                          {"external_id": "2", "text": "y"}])
    annotate("status-probe", first, "ana", "a")
    annotate("status-probe", first, "bob", "b")
    sys.argv = ["inloop", "label", "status", "status-probe"]
    from inloop.cli.main import main
    try:
        main()
    except SystemExit as exc:
        assert not exc.code, exc.code
    """
    assert _imported(code, tmp_path) == []


def test_a_flows_first_run_in_a_fresh_home_imports_nothing_heavy(tmp_path: Path) -> None:
    flow = tmp_path / "two_step_flow.py"
    flow.write_text(
        textwrap.dedent(
            """
            from inloop import FlowSpec, step

            class TwoStepFlow(FlowSpec):
                @step
                def start(self):
                    self.x = 1
                    self.next(self.end)

                @step
                def end(self):
                    pass

            if __name__ == "__main__":
                TwoStepFlow()
            """
        ),
        encoding="utf-8",
    )
    home = Path(os.environ["INLOOP_HOME"])
    assert not home.exists()  # a fresh home: the run creates the database
    code = f"""
    import os, runpy, sys
    os.environ["INLOOP_SLOW_EXIT"] = "1"  # exit through atexit, which reports
    sys.argv = [{str(flow)!r}, "run", "--max-workers", "1"]
    try:
        runpy.run_path({str(flow)!r}, run_name="__main__")
    except SystemExit as exc:
        assert not exc.code, exc.code
    """
    assert _imported(code, tmp_path) == []
    assert (home / "inloop.db").exists() or any(home.iterdir())


def test_every_parts_tables_import_nothing_heavy(tmp_path: Path) -> None:
    code = """
    from inloop.store.db import get_engine, schema_metadata
    schema_metadata()
    get_engine()  # a new database in a fresh INLOOP_HOME
    """
    assert _imported(code, tmp_path, heavy=(*HEAVY, "numpy")) == []


def test_the_web_app_starts_without_scikit_learn(tmp_path: Path) -> None:
    # The learner pool's thread imports scikit-learn once a project needs a model;
    # the server must not wait for it before answering.
    code = """
    from inloop.web.app import create_app
    app = create_app()
    """
    assert _imported(code, tmp_path, heavy=("sklearn", "cleanlab", "scipy", "pandas")) == []


def test_an_export_wins_over_its_submodule_of_the_same_name(tmp_path: Path) -> None:
    # Importing the module inloop.serve.replay makes it an attribute of inloop.serve;
    # the package's export `replay` (the function) must still be what users get.
    code = """
    import inloop.serve.replay
    from inloop.serve import replay
    import inloop.serve
    assert callable(replay) and replay.__module__ == "inloop.serve.replay", replay
    assert inloop.serve.replay is replay
    """
    _imported(code, tmp_path)
