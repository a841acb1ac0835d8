"""The archive's writer process: a server's archived requests written outside its interpreter.

A server's threads share one GIL with its event loop. Writing the archive
(JSON encoding, SQLAlchemy, the database driver) is most of a request's CPU
after the web framework's own, and while the archive thread holds the GIL the
loop waits, and answers with it. So a server's
:class:`~inloop.serve.archive.ArchiveWriter` hands each batch's rows to one
child process (pickling them costs about 10 microseconds a request) and waits,
without the GIL, for the child to say they are committed.

The child runs :func:`main` in this interpreter's Python, talking over its
stdin and stdout in frames (an 8-byte little-endian length, then a pickle):

- the parent sends the database URL; the child answers ``("ready", None)``,
  or ``("failed", why)`` and exits;
- then each frame is ``(request_rows, score_rows)`` and the child answers
  ``("ok", None)`` once they are committed in one transaction, or
  ``("error", why)`` after rolling it back;
- end of input (the parent closed the pipe, or died): the child exits.

The child runs at a lower CPU priority (``nice`` 10): on a small machine it
would otherwise take a core from the server's event loop while writing a
batch. It ignores Ctrl-C, which a terminal sends to the whole process group:
the parent writes what is queued and then closes the pipe.
"""

from __future__ import annotations

import logging
import os
import pickle
import signal
import struct
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from inloop.serve.models import ServeError

__all__ = ["ArchiveProcess", "ArchiveProcessError"]

log = logging.getLogger("inloop.serve.archive")

_HEADER = struct.Struct("<Q")
#: How much the child lowers its CPU priority (``nice``): the archive can wait a few
#: milliseconds, the server's answers should not.
_NICENESS = 10
# Not ``-m``: the package imports this module before runpy would run it again as __main__.
_CHILD = "from inloop.serve.archive_process import main; main()"
Rows = Sequence[dict[str, Any]]


class ArchiveProcessError(ServeError):
    """The writer process is gone, or could not start."""


def _send(stream: IO[bytes], message: object) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_HEADER.pack(len(data)))
    stream.write(data)
    stream.flush()


def _receive(stream: IO[bytes]) -> Any:
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        raise EOFError("the other end closed the pipe")
    (size,) = _HEADER.unpack(header)
    data = stream.read(size)
    if len(data) < size:
        raise EOFError("the other end closed the pipe mid-message")
    return pickle.loads(data)


class ArchiveProcess:
    """The parent's handle on one writer process for the database at ``url``.

    Not thread-safe: the archive writer's one thread uses it. ``command``
    starts the child (default: this interpreter running this module).
    """

    def __init__(self, url: str, *, command: Sequence[str] | None = None) -> None:
        self.url = url
        self.command = list(command or [sys.executable, "-c", _CHILD])
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def start(self) -> None:
        """Start the child and wait until it has connected to the database."""
        self.close()
        # The child imports inloop from wherever this process did.
        root = str(Path(__file__).resolve().parents[2])
        path = os.environ.get("PYTHONPATH")
        env = {**os.environ, "PYTHONPATH": root + (os.pathsep + path if path else "")}
        try:
            self._process = subprocess.Popen(
                self.command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env
            )
        except OSError as exc:
            raise ArchiveProcessError(f"could not run {self.command[0]}: {exc}") from exc
        try:
            status, why = self._ask(self.url)
        except ArchiveProcessError:
            self.close()
            raise
        if status != "ready":
            self.close()
            raise ArchiveProcessError(f"it could not open the database: {why}")

    def write(self, request_rows: Rows, score_rows: Rows) -> None:
        """Have the child commit the rows in one transaction.

        Raises :class:`ArchiveProcessError` when the child is gone (start a
        new one), and :class:`ServeError` with the child's reason when the
        database refused the transaction.
        """
        status, why = self._ask((request_rows, score_rows))
        if status != "ok":
            raise ServeError(f"the writer process could not write the batch: {why}")

    def _ask(self, message: object) -> tuple[str, str | None]:
        process = self._process
        if process is None or process.stdin is None or process.stdout is None:
            raise ArchiveProcessError("the writer process is not running")
        try:
            _send(process.stdin, message)
            reply: tuple[str, str | None] = _receive(process.stdout)
        except (OSError, EOFError, pickle.UnpicklingError) as exc:
            try:
                code: int | None = process.wait(1.0)  # gone: reap it, for its exit code
            except subprocess.TimeoutExpired:
                code = None
            raise ArchiveProcessError(
                f"the writer process (pid {process.pid}) is gone"
                + (f" with exit code {code}" if code is not None else "")
                + f" ({exc}; its errors are on this process's stderr)"
            ) from None
        return reply

    def close(self, timeout: float = 5.0) -> None:
        """End the child: close its input, wait up to ``timeout``, then kill it."""
        process, self._process = self._process, None
        if process is None:
            return
        for stream in (process.stdin, process.stdout):
            try:
                if stream is not None:
                    stream.close()
            except OSError:
                pass  # the child is gone already
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def main() -> None:
    """The child's side: connect, then commit every batch the parent sends until it closes."""
    from inloop.serve.archive import insert_rows
    from inloop.store.db import begin_write, get_engine

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        os.nice(_NICENESS)  # background work: the server's threads come first for a core
    except OSError:
        pass  # not allowed here: same priority, still off the server's GIL
    source, replies = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # a stray print must not get into the replies
    logging.basicConfig(level=logging.WARNING, format="inloop archive process: %(message)s")
    try:
        url = _receive(source)
    except EOFError:
        return
    try:
        engine = get_engine(url)
        with engine.connect():
            pass
    except Exception as exc:
        _send(replies, ("failed", f"{type(exc).__name__}: {exc}"))
        return
    _send(replies, ("ready", None))
    while True:
        try:
            request_rows, score_rows = _receive(source)
        except EOFError:
            break
        try:
            with begin_write(engine) as conn:
                insert_rows(conn, request_rows, score_rows)
            reply: tuple[str, str | None] = ("ok", None)
        except Exception as exc:
            reply = ("error", f"{type(exc).__name__}: {exc}")
        _send(replies, reply)
