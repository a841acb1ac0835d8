"""What a run shows on the terminal while it goes.

On a terminal: a live table of steps with done, running and failed task counts,
refreshed from the coordinator's loop (no extra thread, so forking workers stays
safe). Elsewhere: one line when a step finishes. Task output is printed as it
arrives, each line prefixed by the task's path.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from rich.console import Console
from rich.live import Live
from rich.table import Table


@dataclass
class _StepCount:
    done: int = 0
    running: int = 0
    failed: int = 0
    cloned: int = 0


class RunProgress:
    """Counts tasks per step and draws them."""

    def __init__(self, console: Console, title: str, steps: list[str], quiet: bool = False):
        self.console = console
        self.title = title
        self.steps = {name: _StepCount() for name in steps}
        self.quiet = quiet
        self._live: Live | None = None
        self._last_draw = 0.0
        self.started = time.monotonic()

    def __enter__(self) -> RunProgress:
        if not self.quiet and self.console.is_terminal:
            self._live = Live(
                self._render(), console=self.console, auto_refresh=False, transient=False
            )
            self._live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.update(self._render(), refresh=True)
            self._live.stop()
            self._live = None

    def started_task(self, step: str) -> None:
        self.steps[step].running += 1

    def finished_task(self, step: str, ok: bool, cloned: bool = False) -> None:
        count = self.steps[step]
        if not cloned:
            count.running -= 1
        if cloned:
            count.cloned += 1
        elif ok:
            count.done += 1
        else:
            count.failed += 1

    def retrying_task(self, step: str) -> None:
        self.steps[step].running -= 1

    def print(self, message: str) -> None:
        if not self.quiet:
            self.console.print(message, highlight=False, markup=False, soft_wrap=True)

    def note(self, message: str) -> None:
        """Print a line with Rich markup (status messages)."""
        if not self.quiet:
            self.console.print(message, highlight=False, soft_wrap=True)

    def refresh(self, force: bool = False) -> None:
        now = time.monotonic()
        if self._live is not None and (force or now - self._last_draw > 0.1):
            self._last_draw = now
            self._live.update(self._render(), refresh=True)

    def _render(self) -> Table:
        elapsed = time.monotonic() - self.started
        table = Table(title=f"{self.title}  {elapsed:.1f} s", title_justify="left")
        table.add_column("step")
        table.add_column("done", justify="right")
        table.add_column("running", justify="right")
        table.add_column("failed", justify="right")
        for name, count in self.steps.items():
            done = f"{count.done}" + (f" (+{count.cloned} reused)" if count.cloned else "")
            failed = f"[red]{count.failed}[/red]" if count.failed else "0"
            table.add_row(name, done, str(count.running), failed)
        return table
