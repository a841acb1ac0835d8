"""The journal: answered requests on local disk before their answers leave, until archived.

The archive writer commits requests a few tens of milliseconds after their
answers left; a server killed in between (``SIGKILL``, out of memory) would
lose them. So the rendezvous first appends each answered request to this
process's :class:`Journal`, a folder of its own under ``INLOOP_HOME/journal``,
and the archive writer tells the journal what it has committed.

- **Cheap on the event loop.** A segment is a file mapped into memory
  (``mmap``, shared): appending a record is a copy into the page cache, no
  system call and no release of the GIL. What is copied there survives the
  process being killed; only the machine going down can lose it.
- **Truncated as it is archived.** Segments are fixed-size files; a full
  segment whose every request is committed is deleted, and a server that
  stops cleanly deletes its folder.
- **Replayed at start.** Each folder holds a ``lock`` file its process holds
  an exclusive ``flock`` on while it lives (the kernel releases it when the
  process dies, however it dies). A starting server's archive writer takes
  the lock of every folder whose process is gone (:func:`orphans`), archives
  the requests the database does not have yet and deletes the folder. Any
  number of servers may share one ``INLOOP_HOME``: only one of them gets
  each lock.
- **A torn record is skipped.** Each record is framed by its length and a
  CRC-32 of its bytes, written after the bytes themselves; reading stops,
  with a warning, at the first record that does not check out, which can
  only be the last one a process was writing when it died.

A record is a tuple of plain values (numbers, strings, lists, tuples, dicts),
written with :mod:`marshal` (with :mod:`pickle` when marshal cannot write
it). The journal holds what the archive would, so it is as private as the
archive, and as trusted as the code: only this process's user can read it.

>>> import tempfile
>>> folder = tempfile.mkdtemp()
>>> journal = Journal(folder).open()
>>> journal.append("r1", ("a record",))
>>> journal.pending
1
>>> [list(orphan.records()) for orphan in orphans(folder)]  # its process still lives
[]
>>> journal.committed(["r1"])
>>> journal.close()
>>> sorted(Path(folder).iterdir())  # all archived: nothing left
[]
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import marshal
import mmap
import os
import pickle
import shutil
import struct
import threading
import uuid
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["SEGMENT_BYTES", "Journal", "Orphan", "orphans", "read_segment"]

log = logging.getLogger("inloop.serve.journal")

#: The size of a journal segment file (sparse: only what is written takes disk space).
SEGMENT_BYTES = 16 * 1024 * 1024
# A record's frame: its length and the CRC-32 of its bytes. Length 0 marks the end; the
# length's top bit marks a pickled record (else marshal's format 4, readable by every
# Python this runs on).
_HEADER = struct.Struct("<II")
_PICKLED = 1 << 31
_MARSHAL_VERSION = 4
_LOCK = "lock"
_SUFFIX = ".log"


@dataclass(eq=False)
class _Segment:
    path: Path
    mm: mmap.mmap
    pos: int = 0
    pending: int = 0
    full: bool = False

    @property
    def capacity(self) -> int:
        return len(self.mm)


def _new_segment(path: Path, capacity: int) -> _Segment:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.ftruncate(fd, capacity)
        mm = mmap.mmap(fd, capacity)  # shared: what is copied in lands in the file
    finally:
        os.close(fd)
    return _Segment(path, mm)


@dataclass(eq=False)
class Journal:
    """This process's journal in a new folder under ``folder``.

    :meth:`append` (on the event loop, before an answer leaves) and
    :meth:`committed` (in the archive writer's thread, after a commit) may
    run in different threads. ``segment_bytes`` is the size of each segment
    file; a record larger than that gets a segment of its own.
    """

    folder: Path | str
    segment_bytes: int = SEGMENT_BYTES
    path: Path | None = field(default=None, init=False)
    _lock_fd: int | None = field(default=None, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _segment: _Segment | None = field(default=None, init=False, repr=False)
    _spare: _Segment | None = field(default=None, init=False, repr=False)
    _numbers: Iterator[int] = field(init=False, repr=False)
    _where: dict[str, _Segment] = field(default_factory=dict, init=False, repr=False)

    def open(self) -> Journal:
        """Create this process's folder, holding its lock, and the first segment; returns self.

        The folder is locked before it gets its name, so that no other
        process ever takes it for one whose owner died.
        """
        root = Path(self.folder)
        root.mkdir(parents=True, exist_ok=True, mode=0o700)
        name = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
        staging = root / f".{name}"
        staging.mkdir(mode=0o700)
        fd = os.open(staging / _LOCK, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self.path = root / name
        staging.rename(self.path)
        self._lock_fd = fd
        self._numbers = iter(range(1, 1 << 62))
        self._segment = self._make(self.segment_bytes)
        self._spare = self._make(self.segment_bytes)
        return self

    def _make(self, capacity: int) -> _Segment:
        assert self.path is not None
        return _new_segment(self.path / f"{next(self._numbers):08d}{_SUFFIX}", capacity)

    @property
    def pending(self) -> int:
        """Requests appended and not yet committed."""
        with self._lock:
            return len(self._where)

    def append(self, request_id: str, record: tuple[Any, ...]) -> None:
        """Write ``record`` for ``request_id`` (a tuple of plain values) to the current segment."""
        try:
            # marshal: three times faster than pickle on the numbers and lists of a request.
            data, length = marshal.dumps(record, _MARSHAL_VERSION), 0
        except ValueError:  # something marshal does not write (a numpy value, say)
            data = pickle.dumps(record, protocol=pickle.HIGHEST_PROTOCOL)
            length = _PICKLED
        length |= len(data)
        size = _HEADER.size + len(data)
        with self._lock:
            segment = self._segment
            if segment is None:
                raise RuntimeError("the journal is closed (or was never opened)")
            # Room for the record and the zero header that ends the segment.
            if segment.pos + size + _HEADER.size > segment.capacity:
                segment = self._rotate(size)
            start = segment.pos
            mm = segment.mm
            mm[start + _HEADER.size : start + size] = data
            # The header last: a record whose header is there is whole (the CRC checks it).
            mm[start : start + _HEADER.size] = _HEADER.pack(length, zlib.crc32(data))
            segment.pos = start + size
            segment.pending += 1
            self._where[request_id] = segment

    def _rotate(self, size: int) -> _Segment:
        """Retire the current segment for the spare (or a new one that fits ``size``)."""
        old = self._segment
        assert old is not None
        old.full = True
        if old.pending == 0:
            self._drop(old)
        needed = size + 2 * _HEADER.size
        spare, self._spare = self._spare, None
        if spare is None or spare.capacity < needed:
            if spare is not None:
                self._drop(spare)
            spare = self._make(max(self.segment_bytes, needed))
        self._segment = spare
        return spare

    @staticmethod
    def _drop(segment: _Segment) -> None:
        segment.mm.close()
        with contextlib.suppress(FileNotFoundError):
            segment.path.unlink()

    def committed(self, request_ids: Iterable[str]) -> None:
        """The archive holds these requests now: delete full segments with nothing pending."""
        with self._lock:
            for request_id in request_ids:
                segment = self._where.pop(request_id, None)
                if segment is None:
                    continue
                segment.pending -= 1
                if segment.full and segment.pending == 0:
                    self._drop(segment)
            if self._spare is None and self._segment is not None:
                # Made here, off the event loop, for the next rotation.
                self._spare = self._make(self.segment_bytes)

    def close(self) -> None:
        """Stop journaling. With nothing pending the folder goes; else the next start replays it."""
        with self._lock:
            segments = {id(s): s for s in (self._segment, self._spare, *self._where.values())}
            for segment in segments.values():
                if segment is not None:
                    segment.mm.close()
            self._segment = self._spare = None
            left = len(self._where)
            if self.path is not None and not left:
                shutil.rmtree(self.path, ignore_errors=True)
            elif left:
                log.warning(
                    "journal: %d answered requests are not archived yet; the next server "
                    "started on this INLOOP_HOME archives them (from %s)",
                    left,
                    self.path,
                )
            if self._lock_fd is not None:
                os.close(self._lock_fd)  # releases the lock
                self._lock_fd = None


def read_segment(path: Path) -> Iterator[tuple[Any, ...]]:
    """The records of one segment file in order; stops (with a warning) at a torn record."""
    with path.open("rb") as f:
        data = f.read()
    pos = 0
    while pos + _HEADER.size <= len(data):
        length, crc = _HEADER.unpack_from(data, pos)
        if length == 0:
            return
        pickled, length = length & _PICKLED, length & ~_PICKLED
        payload = data[pos + _HEADER.size : pos + _HEADER.size + length]
        if len(payload) < length or zlib.crc32(payload) != crc:
            log.warning(
                "journal %s: the record at byte %d is torn (its process died writing it); "
                "skipped with whatever follows it",
                path,
                pos,
            )
            return
        try:
            record = pickle.loads(payload) if pickled else marshal.loads(payload)
        except Exception as exc:  # a checked record that does not load: skip it, keep going
            log.warning("journal %s: the record at byte %d does not load: %s", path, pos, exc)
        else:
            yield record
        pos += _HEADER.size + length


@dataclass(eq=False)
class Orphan:
    """The journal folder of a process that is gone; this process holds its lock."""

    path: Path
    _fd: int

    def records(self) -> Iterator[tuple[Any, ...]]:
        """Every whole record of the folder's segments, oldest first."""
        for segment in sorted(self.path.glob(f"*{_SUFFIX}")):
            yield from read_segment(segment)

    def remove(self) -> None:
        """Delete the folder (its requests are archived) and let go of its lock."""
        shutil.rmtree(self.path, ignore_errors=True)
        self.release()

    def release(self) -> None:
        """Let go of the lock, keeping the folder for a later start."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def orphans(folder: Path | str, *, exclude: Path | None = None) -> Iterator[Orphan]:
    """The journal folders under ``folder`` whose processes are gone, each locked by this one.

    A folder another living process holds is skipped, and so is ``exclude``
    (this process's own). The caller archives an orphan's records, then
    calls :meth:`Orphan.remove` (or :meth:`Orphan.release` to leave it).
    """
    root = Path(folder)
    if not root.is_dir():
        return
    for path in sorted(root.iterdir()):
        if path.name.startswith(".") or not path.is_dir() or path == exclude:
            continue
        try:
            fd = os.open(path / _LOCK, os.O_RDWR)
        except FileNotFoundError:
            continue  # removed by another process a moment ago
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)  # its process lives, or another one is replaying it
            continue
        if not path.exists():  # replayed and removed while we waited for the lock
            os.close(fd)
            continue
        yield Orphan(path, fd)
