"""Capture what a task prints, per thread.

``sys.stdout`` and ``sys.stderr`` are replaced once per process by proxies that send
a thread's writes to that thread's buffer while it captures, and to the original
stream otherwise. Dask runs several tasks in threads of one process, so a plain
redirect would mix their output.
"""

from __future__ import annotations

import io
import sys
import threading
from types import TracebackType
from typing import TextIO

_local = threading.local()
_install_lock = threading.Lock()


class _ThreadRouter(io.TextIOBase):
    """A text stream that writes to the current thread's buffer, if it has one."""

    def __init__(self, original: TextIO, which: str) -> None:
        self._original = original
        self._which = which

    def _target(self) -> TextIO:
        buffers = getattr(_local, "buffers", None)
        return buffers[self._which] if buffers is not None else self._original

    def write(self, text: str) -> int:
        return self._target().write(text)

    def flush(self) -> None:
        self._target().flush()

    def isatty(self) -> bool:
        return False

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"

    def fileno(self) -> int:
        return self._original.fileno()


def install() -> None:
    """Put the routing proxies in place of ``sys.stdout``/``sys.stderr`` (idempotent)."""
    with _install_lock:
        if not isinstance(sys.stdout, _ThreadRouter):
            sys.stdout = _ThreadRouter(sys.stdout, "stdout")
        if not isinstance(sys.stderr, _ThreadRouter):
            sys.stderr = _ThreadRouter(sys.stderr, "stderr")


class OutputCapture:
    """Collect this thread's stdout and stderr while the ``with`` block runs."""

    def __init__(self) -> None:
        self.stdout = io.StringIO()
        self.stderr = io.StringIO()

    def __enter__(self) -> OutputCapture:
        install()
        _local.buffers = {"stdout": self.stdout, "stderr": self.stderr}
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        _local.buffers = None
