"""The byte format of an artifact: a pickle stream with its large buffers beside it.

A value is pickled with protocol 5. Buffers that support out-of-band pickling
(numpy arrays, pandas columns, ``PickleBuffer``) are not copied into the stream;
they follow it, each starting at a 64-byte boundary of the blob, so that a
reader can hand zero-copy, aligned slices of the blob back to ``pickle.loads``.

Layout of a blob (integers little-endian)::

    MAGIC  b"INL1"
    u32    number of out-of-band buffers (n)
    u64    length of the pickle stream
    u64*n  length of each buffer
    ...    pickle stream
    ...    per buffer: zero padding to the next multiple of 64, then the buffer

There is no compression: arrays are mostly incompressible floats, and copying
through a compressor is what makes pickle+gzip slow.

>>> loads(b"".join(dump_chunks({"a": 1})))
{'a': 1}
"""

from __future__ import annotations

import pickle
import struct

from inloop.errors import StoreError

MAGIC = b"INL1"
ALIGNMENT = 64

_FIXED = struct.Struct("<4sIQ")
# Buffers smaller than this stay inside the pickle stream: a separate frame
# (length, padding, one more chunk) costs more than the copy it saves.
_IN_BAND_LIMIT = 4096


def _pad(offset: int) -> int:
    return -offset % ALIGNMENT


def _pickle(value: object, buffers: list[pickle.PickleBuffer]) -> bytes:
    def keep(buf: pickle.PickleBuffer) -> bool:
        # True keeps the buffer in band; False sends it out of band (not copied).
        view = buf.raw()
        if view.nbytes < _IN_BAND_LIMIT:
            return True
        buffers.append(buf)
        return False

    try:
        return pickle.dumps(value, protocol=5, buffer_callback=keep)
    except Exception as plain_error:
        # Lambdas, local functions and classes need pickling by value.
        buffers.clear()
        try:
            import cloudpickle

            return cloudpickle.dumps(value, protocol=5, buffer_callback=keep)
        except Exception as exc:
            raise StoreError(
                f"Cannot serialize a value of type {type(value).__qualname__}: {exc} "
                f"(plain pickle said: {plain_error}). An artifact must be picklable by "
                "pickle or cloudpickle; store a picklable form of it (a dict, an array, "
                "a file's bytes) or do not assign it to self."
            ) from exc


def dump_chunks(value: object) -> list[memoryview | bytes]:
    """Serialize ``value`` into chunks whose concatenation is its blob.

    Large buffers are returned as memoryviews of the value's own memory, so
    nothing big is copied: hash and write the chunks one by one. The value must
    not be mutated until the chunks have been consumed.
    """
    buffers: list[pickle.PickleBuffer] = []
    stream = _pickle(value, buffers)
    views = [buf.raw() for buf in buffers]
    header = _FIXED.pack(MAGIC, len(views), len(stream))
    if views:
        header += struct.pack(f"<{len(views)}Q", *(v.nbytes for v in views))
    chunks: list[memoryview | bytes] = [header, stream]
    offset = len(header) + len(stream)
    for view in views:
        pad = _pad(offset)
        if pad:
            chunks.append(bytes(pad))
        chunks.append(view)
        offset += pad + view.nbytes
    return chunks


def blob_size(chunks: list[memoryview | bytes]) -> int:
    """Total length in bytes of the blob the chunks make up."""
    return sum(len(c) if isinstance(c, bytes) else c.nbytes for c in chunks)


def loads(blob: bytes | bytearray | memoryview) -> object:
    """Rebuild the value from a blob written by :func:`dump_chunks`.

    Buffers are memoryview slices of ``blob``: nothing is copied, and arrays
    loaded from a ``bytearray`` are writeable (from ``bytes``, read-only).
    The blob stays alive as long as any array viewing it.
    """
    view = memoryview(blob)
    if view.ndim != 1 or view.itemsize != 1:
        view = view.cast("B")
    if view.nbytes < _FIXED.size or bytes(view[:4]) != MAGIC:
        start = bytes(view[:8])
        raise StoreError(
            f"The blob ({view.nbytes} bytes, starting {start!r}) is not an inloop artifact: "
            f"it must start with {MAGIC!r}. Load raw bytes (logs) with get_bytes(), "
            "not get()."
        )
    _, count, stream_len = _FIXED.unpack_from(view, 0)
    offset = _FIXED.size + 8 * count
    if offset > view.nbytes:
        raise _truncated(view.nbytes, offset)
    lengths = struct.unpack_from(f"<{count}Q", view, _FIXED.size) if count else ()
    stream = view[offset : offset + stream_len]
    offset += stream_len
    buffers = []
    for length in lengths:
        offset += _pad(offset)
        buffers.append(view[offset : offset + length])
        offset += length
    if offset != view.nbytes:
        raise _truncated(view.nbytes, offset)
    try:
        return pickle.loads(stream, buffers=buffers)
    except Exception as exc:
        raise StoreError(
            f"Cannot unpickle the artifact ({view.nbytes} bytes): {type(exc).__name__}: {exc}. "
            "The code that defined its classes may be missing or changed: import the module "
            "that defines them, or load it with the versions of the libraries that wrote it."
        ) from exc


def _truncated(actual: int, expected: int) -> StoreError:
    return StoreError(
        f"The artifact blob is {actual} bytes but its header describes {expected} bytes: "
        "it is truncated or corrupt. Store the value again; if the store is a folder, check "
        "the disk for errors."
    )
