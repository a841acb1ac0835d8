"""Taking work from a queue in batches: one blocking wait, then whatever else is queued.

The archive writer, the Redis sender and the worker's lanes all serve a
queue the same way: wait for one item, then take what else is already there
(up to a limit) and handle it in one round trip. Under light load a batch is
one item and goes out at once; under heavy load batches grow and the cost
per item falls. ``None`` in the queue means stop.

>>> import queue
>>> q = queue.SimpleQueue()
>>> for item in (1, 2, 3, None):
...     q.put(item)
>>> take_batch(q, 2), take_batch(q, 2)
(([1, 2], False), ([3], True))
"""

from __future__ import annotations

import queue
from typing import Protocol, TypeVar

__all__ = ["drain", "take_batch"]

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)


class _Source(Protocol[T_co]):
    """A :class:`queue.Queue` or :class:`queue.SimpleQueue`."""

    def get(self) -> T_co | None: ...

    def get_nowait(self) -> T_co | None: ...


def take_batch(source: _Source[T], limit: int) -> tuple[list[T], bool]:
    """Wait for an item, then take up to ``limit`` in all; True once a ``None`` was taken."""
    first = source.get()
    if first is None:
        return [], True
    batch = [first]
    return batch, drain(source, batch, limit)


def drain(source: _Source[T], batch: list[T], limit: int) -> bool:
    """Move what is queued into ``batch`` (up to ``limit`` in all); True once a ``None`` was taken.

    >>> q = queue.SimpleQueue()
    >>> for item in (2, 3, None):
    ...     q.put(item)
    >>> batch = [1]
    >>> drain(q, batch, 10), batch
    (True, [1, 2, 3])
    """
    while len(batch) < limit:
        try:
            more = source.get_nowait()
        except queue.Empty:
            return False
        if more is None:
            return True
        batch.append(more)
    return False
