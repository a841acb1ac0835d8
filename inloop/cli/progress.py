"""The progress bar of the CLI's long commands (imports, replays)."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

__all__ = ["progress_bar"]


def progress_bar(console: Console, label: str) -> Progress:
    """A bar with ``label``, counts and time left; gone when done, off when not on a terminal."""
    return Progress(
        TextColumn(escape(label)),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    )
