from __future__ import annotations

import pickle
import threading
from typing import Any

import numpy as np
import pandas as pd
import pytest

from inloop.errors import StoreError
from inloop.store.serialize import ALIGNMENT, MAGIC, blob_size, dump_chunks, loads


def blob_of(value: object) -> bytes:
    return b"".join(dump_chunks(value))


def address(buffer: Any) -> int:
    return int(np.frombuffer(buffer, dtype=np.uint8).ctypes.data)


@pytest.mark.parametrize(
    "value",
    [0, -(2**70), 3.5, "text", b"raw", None, True, [1, "a", None], {"a": {"b": (1, 2)}}, set()],
)
def test_plain_values_round_trip(value: object) -> None:
    blob = blob_of(value)
    assert blob.startswith(MAGIC)
    assert loads(blob) == value


def test_chunks_concatenate_to_the_blob_and_blob_size_counts_them() -> None:
    chunks = dump_chunks({"x": np.arange(10_000.0), "y": np.ones(3000)})
    assert blob_size(chunks) == len(b"".join(chunks))


def test_large_array_is_not_copied_when_dumped() -> None:
    array = np.arange(1_000_000, dtype=np.float64)
    chunks = dump_chunks(array)
    views = [c for c in chunks if isinstance(c, memoryview)]
    assert len(views) == 1
    assert np.shares_memory(np.frombuffer(views[0], dtype=np.uint8), array)


def test_small_arrays_stay_inside_the_pickle_stream() -> None:
    chunks = dump_chunks(np.arange(10))
    assert len(chunks) == 2  # header and stream only
    assert all(isinstance(c, bytes) for c in chunks)


def test_buffers_are_aligned_and_loaded_without_copy() -> None:
    value = {"a": np.arange(1001, dtype=np.int8), "b": np.arange(5000.0), "c": np.ones(777)}
    blob = bytearray(blob_of(value))
    loaded = loads(blob)
    assert isinstance(loaded, dict)
    base = address(blob)
    for name in ("b",):
        array = loaded[name]
        assert np.shares_memory(array, np.frombuffer(blob, dtype=np.uint8))
        assert (array.ctypes.data - base) % ALIGNMENT == 0
    for name, original in value.items():
        np.testing.assert_array_equal(loaded[name], original)


def test_arrays_from_a_bytearray_are_writeable_from_bytes_read_only() -> None:
    array = np.arange(100_000.0)
    writeable = loads(bytearray(blob_of(array)))
    assert isinstance(writeable, np.ndarray)
    assert writeable.flags.writeable
    writeable[0] = 42.0
    read_only = loads(blob_of(array))
    assert isinstance(read_only, np.ndarray)
    assert not read_only.flags.writeable
    assert array[0] == 0.0


def test_loads_accepts_a_memoryview() -> None:
    blob = bytearray(blob_of({"k": np.arange(2000.0)}))
    loaded = loads(memoryview(blob))
    assert isinstance(loaded, dict)
    np.testing.assert_array_equal(loaded["k"], np.arange(2000.0))


@pytest.mark.parametrize(
    "array",
    [
        np.asfortranarray(np.arange(20_000.0).reshape(100, 200)),
        np.arange(40_000.0)[::2],  # not contiguous: pickled in band
        np.zeros((0, 3)),
        np.array(["a", "bc"] * 1000),
        np.arange(10_000, dtype=np.complex64),
    ],
    ids=["fortran", "strided", "empty", "unicode", "complex"],
)
def test_arrays_of_every_layout_round_trip(array: np.ndarray) -> None:
    loaded = loads(bytearray(blob_of(array)))
    assert isinstance(loaded, np.ndarray)
    assert loaded.dtype == array.dtype
    np.testing.assert_array_equal(loaded, array)


def test_pandas_frame_round_trips() -> None:
    frame = pd.DataFrame(
        {
            "x": np.arange(50_000.0),
            "n": np.arange(50_000),
            "s": ["a", "b"] * 25_000,
            "t": pd.date_range("2024-01-01", periods=50_000, freq="s", tz="UTC"),
            "c": pd.Categorical(["u", "v"] * 25_000),
        }
    )
    chunks = dump_chunks(frame)
    assert any(isinstance(c, memoryview) for c in chunks)
    loaded = loads(bytearray(b"".join(chunks)))
    assert isinstance(loaded, pd.DataFrame)
    pd.testing.assert_frame_equal(loaded, frame)


def test_same_value_gives_same_bytes() -> None:
    value = {"w": np.linspace(0, 1, 10_000), "meta": {"lr": 0.1, "tags": ["a", "b"]}}
    assert blob_of(value) == blob_of(value)


def test_lambdas_are_pickled_by_value() -> None:
    offset = 3
    loaded = loads(blob_of(lambda x: x + offset))
    assert callable(loaded)
    assert loaded(1) == 4


def test_unpicklable_value_names_its_type() -> None:
    with pytest.raises(StoreError, match=r"type lock.*picklable"):
        dump_chunks(threading.Lock())


def test_bad_magic_is_refused_with_a_hint() -> None:
    with pytest.raises(StoreError, match=r"not an inloop artifact.*get_bytes"):
        loads(pickle.dumps({"a": 1}))
    with pytest.raises(StoreError, match="not an inloop artifact"):
        loads(b"")


@pytest.mark.parametrize("cut", [1, 100, 5000])
def test_truncated_blob_is_refused(cut: int) -> None:
    blob = blob_of({"a": np.arange(10_000.0)})
    with pytest.raises(StoreError, match="truncated or corrupt"):
        loads(blob[:-cut])


def test_extra_trailing_bytes_are_refused() -> None:
    with pytest.raises(StoreError, match="truncated or corrupt"):
        loads(blob_of([1, 2]) + b"\0")


def test_corrupt_stream_raises_store_error() -> None:
    blob = bytearray(blob_of({"a": 1}))
    blob[-3:] = b"\xff\xff\xff"
    with pytest.raises(StoreError, match="Cannot unpickle"):
        loads(blob)
