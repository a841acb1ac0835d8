from __future__ import annotations

import hashlib
import multiprocessing
import os
import pickle
import threading
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from inloop.errors import ArtifactNotFoundError, ConfigError, StoreError
from inloop.settings import reset_settings
from inloop.store import artifacts
from inloop.store.artifacts import ArtifactStore, StoredArtifact, open_artifact_store

MISSING_KEY = "0" * 64


def stored_files(root: str) -> list[str]:
    return sorted(
        os.path.relpath(os.path.join(folder, name), root)
        for folder, _, names in os.walk(root)
        for name in names
    )


@pytest.mark.parametrize(
    "value",
    [7, "text", {"lr": 0.1, "layers": [64, 32]}, None, (1, 2.5)],
    ids=["int", "str", "dict", "none", "tuple"],
)
def test_plain_values_round_trip(any_store: ArtifactStore, value: object) -> None:
    stored = any_store.put(value)
    assert isinstance(stored, StoredArtifact)
    assert any_store.get(stored.key) == value


def test_numpy_and_pandas_round_trip(any_store: ArtifactStore) -> None:
    array = np.random.default_rng(1).standard_normal((300, 500))
    frame = pd.DataFrame({"a": np.arange(100_000), "b": ["x", "y"] * 50_000})
    for value in (array, {"weights": array, "frame": frame}):
        key = any_store.put(value).key
        fresh = ArtifactStore(any_store.url, any_store.storage_options)  # no cache
        loaded = fresh.get(key)
        if isinstance(value, np.ndarray):
            np.testing.assert_array_equal(loaded, value)
        else:
            assert isinstance(loaded, dict)
            np.testing.assert_array_equal(loaded["weights"], array)
            pd.testing.assert_frame_equal(loaded["frame"], frame)


def test_key_is_the_sha256_of_the_stored_bytes(any_store: ArtifactStore) -> None:
    for value in ({"a": 1}, np.arange(300_000.0)):
        stored = any_store.put(value)
        data = any_store.get_bytes(stored.key)
        assert stored.key == hashlib.sha256(data).hexdigest()
        assert stored.size == len(data) == any_store.size(stored.key)
        assert any_store.exists(stored.key)


def test_bytes_round_trip_and_are_not_values(any_store: ArtifactStore) -> None:
    log = b"step start\nstep end\n"
    stored = any_store.put_bytes(log)
    assert stored == StoredArtifact(hashlib.sha256(log).hexdigest(), len(log))
    assert any_store.get_bytes(stored.key) == log
    with pytest.raises(StoreError, match="get_bytes"):
        any_store.get(stored.key)
    empty = any_store.put_bytes(b"")
    assert ArtifactStore(any_store.url, any_store.storage_options).get_bytes(empty.key) == b""


def test_same_value_is_stored_once(local_store: ArtifactStore) -> None:
    first = local_store.put({"a": np.arange(200_000)})
    second = ArtifactStore(local_store.url).put({"a": np.arange(200_000)})
    assert first == second
    assert stored_files(local_store.url) == [f"{first.key[:2]}/{first.key[2:]}"]


def test_same_value_is_stored_once_on_s3(s3_store: ArtifactStore) -> None:
    first = s3_store.put([1, 2, 3])
    assert s3_store.put([1, 2, 3]) == first
    assert s3_store.put_bytes(s3_store.get_bytes(first.key)) == first
    fs = s3_store._fs_remote
    fs.invalidate_cache()
    assert [p.split("/", 2)[2] for p in fs.find(s3_store.url)] == [
        f"{first.key[:2]}/{first.key[2:]}"
    ]


def test_concurrent_puts_of_one_value_leave_one_file(local_store: ArtifactStore) -> None:
    value = np.arange(500_000.0)
    keys: list[str] = []
    threads = [
        threading.Thread(target=lambda: keys.append(local_store.put(value).key)) for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(keys)) == 1
    assert stored_files(local_store.url) == [f"{keys[0][:2]}/{keys[0][2:]}"]


def test_missing_key_names_key_and_store(any_store: ArtifactStore) -> None:
    for read in (any_store.get, any_store.get_bytes, any_store.size):
        with pytest.raises(ArtifactNotFoundError) as info:
            read(MISSING_KEY)
        assert MISSING_KEY in str(info.value)
        assert any_store.url in str(info.value)
        assert isinstance(info.value, KeyError)
    assert not any_store.exists(MISSING_KEY)


@pytest.mark.parametrize("key", ["../../etc/passwd", "ABC", "g" * 64, "0" * 63, ""])
def test_malformed_key_is_refused(local_store: ArtifactStore, key: str) -> None:
    assert not local_store.exists(key)
    with pytest.raises(ArtifactNotFoundError, match="64 lowercase hex"):
        local_store.get(key)


def test_crash_mid_write_leaves_nothing_at_the_key(
    local_store: ArtifactStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    value = np.arange(400_000.0)
    real_write_all = artifacts._write_all
    calls = 0

    def crash_after_first_chunk(fd: int, chunk: memoryview | bytes) -> None:
        nonlocal calls
        calls += 1
        if calls > 1:
            os.write(fd, memoryview(chunk)[:1000])
            raise KeyboardInterrupt  # like a kill in the middle of the write
        real_write_all(fd, chunk)

    monkeypatch.setattr(artifacts, "_write_all", crash_after_first_chunk)
    with pytest.raises(KeyboardInterrupt):
        local_store.put(value)
    assert stored_files(local_store.url) == []  # neither the blob nor its temporary file

    def disk_full(fd: int, chunk: memoryview | bytes) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(artifacts, "_write_all", disk_full)
    with pytest.raises(StoreError, match=r"No space left on device.*disk space"):
        local_store.put(value)
    assert stored_files(local_store.url) == []

    monkeypatch.setattr(artifacts, "_write_all", real_write_all)
    stored = local_store.put(value)
    np.testing.assert_array_equal(local_store.get(stored.key), value)


@pytest.mark.s3
def test_crash_mid_upload_leaves_nothing_on_s3(
    s3_store: ArtifactStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(artifacts, "_REMOTE_PIECE", 5 * 2**20)  # S3's smallest part
    value = np.arange(2 * 2**20, dtype=np.float64)  # 16 MiB: four parts
    fs = s3_store._fs_remote
    real_open = fs.open

    def open_failing_on_third_part(*args: Any, **kwargs: Any) -> Any:
        f = real_open(*args, **kwargs)
        real_write = f.write
        writes = 0

        def write(data: Any) -> int:
            nonlocal writes
            writes += 1
            if writes == 3:
                raise OSError("connection reset")
            return int(real_write(data))

        f.write = write
        return f

    monkeypatch.setattr(fs, "open", open_failing_on_third_part)
    with pytest.raises(StoreError, match="connection reset"):
        s3_store.put(value)
    key = hashlib.sha256(b"".join(artifacts.serialize.dump_chunks(value))).hexdigest()
    fs.invalidate_cache()
    assert not s3_store.exists(key)
    assert fs.find(s3_store.url) == []
    bucket = s3_store.url.split("/")[2]
    uploads = fs.call_s3("list_multipart_uploads", Bucket=bucket)
    assert not uploads.get("Uploads")  # the partial upload was aborted

    monkeypatch.undo()
    stored = s3_store.put(value)
    assert stored.key == key
    np.testing.assert_array_equal(s3_store.get(key), value)


def _measure_peaks(store: ArtifactStore, out: Any) -> None:
    array = np.random.default_rng(0).standard_normal(4 * 2**20)  # 32 MiB
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    stored = store.put(array)
    put_peak = tracemalloc.get_traced_memory()[1] - before
    reader = ArtifactStore(store.url, store.storage_options)
    tracemalloc.reset_peak()
    before = tracemalloc.get_traced_memory()[0]
    loaded = reader.get(stored.key)
    get_peak = tracemalloc.get_traced_memory()[1] - before
    tracemalloc.stop()
    assert isinstance(loaded, np.ndarray)
    out.put((put_peak / array.nbytes, get_peak / array.nbytes, bool((loaded == array).all())))


def test_large_array_peak_memory_stays_below_twice_the_array(any_store: ArtifactStore) -> None:
    # Measured in a forked child: the moto server thread of this process allocates too.
    context = multiprocessing.get_context("fork")
    out = context.Queue()
    child = context.Process(target=_measure_peaks, args=(any_store, out))
    child.start()
    put_ratio, get_ratio, equal = out.get(timeout=120)
    child.join(60)
    assert equal
    if any_store.is_local:
        assert put_ratio < 0.1  # hashed and written straight from the array's memory
        assert get_ratio < 1.1  # read into one buffer the array then views
    else:
        # Parts of a few MiB are copied on their way to the network.
        assert put_ratio < 2
        assert get_ratio < 2


def test_loaded_objects_never_alias_each_other_or_the_cache(any_store: ArtifactStore) -> None:
    value = {"weights": np.zeros(1000), "names": ["a"]}
    key = any_store.put(value).key
    first = any_store.get(key)
    second = any_store.get(key)
    assert isinstance(first, dict)
    assert isinstance(second, dict)
    first["weights"][0] = 99.0
    first["names"].append("b")
    for loaded in (second, any_store.get(key)):
        assert isinstance(loaded, dict)
        assert loaded["weights"][0] == 0.0
        assert loaded["names"] == ["a"]
        assert loaded["weights"].flags.writeable


def test_small_blobs_are_served_from_the_byte_cache(local_store: ArtifactStore) -> None:
    small = local_store.put({"a": 1}).key
    os.remove(os.path.join(local_store.url, small[:2], small[2:]))
    assert local_store.get(small) == {"a": 1}
    uncached = ArtifactStore(local_store.url, cache_bytes=0)
    key = uncached.put([1, 2]).key
    os.remove(os.path.join(uncached.url, key[:2], key[2:]))
    with pytest.raises(ArtifactNotFoundError):
        uncached.get(key)


def test_byte_cache_is_bounded_and_evicts_the_oldest(tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path), cache_bytes=1_000_000)
    keys = [store.put_bytes(bytes([i]) * 400_000).key for i in range(3)]
    for key in keys:
        os.remove(os.path.join(store.url, key[:2], key[2:]))
    with pytest.raises(ArtifactNotFoundError):
        store.get_bytes(keys[0])  # evicted
    assert store.get_bytes(keys[2]) == bytes([2]) * 400_000
    assert store.get_bytes(keys[1]) == bytes([1]) * 400_000


def test_large_blobs_are_not_cached(local_store: ArtifactStore) -> None:
    key = local_store.put(np.arange(2**18, dtype=np.float64)).key  # 2 MiB
    local_store.get(key)
    os.remove(os.path.join(local_store.url, key[:2], key[2:]))
    with pytest.raises(ArtifactNotFoundError):
        local_store.get(key)


def test_store_is_picklable_and_reopens_its_file_system(any_store: ArtifactStore) -> None:
    key = any_store.put({"a": [1, 2]}).key
    copy = pickle.loads(pickle.dumps(any_store))
    assert isinstance(copy, ArtifactStore)
    assert copy.url == any_store.url
    assert copy.storage_options == any_store.storage_options
    assert copy._fs is None and not copy._cache  # nothing process-bound travels
    assert copy.get(key) == {"a": [1, 2]}


def _read_in_child(store: ArtifactStore, key: str, out: Any) -> None:
    value = store.get(key)
    new_key = store.put({"from": "child"}).key
    out.put((value, new_key))


@pytest.mark.parametrize("kind", ["local", pytest.param("s3", marks=pytest.mark.s3)])
def test_store_works_after_fork(request: pytest.FixtureRequest, kind: str) -> None:
    store: ArtifactStore = request.getfixturevalue(f"{kind}_store")
    key = store.put({"from": "parent"}).key  # opens the file system in the parent
    context = multiprocessing.get_context("fork")
    out = context.Queue()
    child = context.Process(target=_read_in_child, args=(store, key, out))
    child.start()
    value, child_key = out.get(timeout=60)
    child.join(60)
    assert child.exitcode == 0
    assert value == {"from": "parent"}
    assert store.get(child_key) == {"from": "child"}


def test_opening_is_lazy(tmp_path: Path, s3_options: dict[str, Any]) -> None:
    folder = tmp_path / "not-yet"
    store = ArtifactStore(str(folder))
    assert not folder.exists()
    assert not store.exists(MISSING_KEY)
    assert not folder.exists()
    remote = ArtifactStore("s3://no-such-bucket/prefix", s3_options)
    assert remote._fs is None


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("s3://bucket/some/prefix/", "s3://bucket/some/prefix"),
        ("memory://scratch", "memory://scratch"),
    ],
)
def test_urls_are_normalized(url: str, expected: str) -> None:
    assert open_artifact_store(url).url == expected


def test_local_paths_and_file_urls_become_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert open_artifact_store("relative/store").url == str(tmp_path / "relative" / "store")
    assert open_artifact_store(f"file://{tmp_path}/a/").url == str(tmp_path / "a")
    store = open_artifact_store(f"file://{tmp_path}/b")
    key = store.put(1).key
    assert (tmp_path / "b" / key[:2] / key[2:]).is_file()


@pytest.mark.parametrize("url", ["gs://bucket/x", "http://host/x", "", "s3://"])
def test_unsupported_url_lists_the_accepted_ones(url: str) -> None:
    with pytest.raises(ConfigError) as info:
        open_artifact_store(url)
    message = str(info.value)
    assert repr(url) in message
    for accepted in ("local path", "file://", "s3://", "memory://"):
        assert accepted in message


def test_bad_cache_size_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cache_bytes.*>= 0.*-1"):
        ArtifactStore(str(tmp_path), cache_bytes=-1)


def test_default_store_comes_from_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INLOOP_HOME", str(tmp_path))
    monkeypatch.delenv("INLOOP_ARTIFACTS_URL", raising=False)
    monkeypatch.setenv("INLOOP_S3_ENDPOINT_URL", "http://127.0.0.1:1")
    reset_settings()
    try:
        assert open_artifact_store().url == str(tmp_path / "artifacts")
        monkeypatch.setenv("INLOOP_ARTIFACTS_URL", "s3://bucket/runs")
        reset_settings()
        store = open_artifact_store()
        assert store.url == "s3://bucket/runs"
        assert store.storage_options == {"client_kwargs": {"endpoint_url": "http://127.0.0.1:1"}}
    finally:
        reset_settings()


@pytest.mark.parametrize("size", [10, 2_000_000], ids=["small", "large"])
def test_verify_refuses_bytes_that_do_not_hash_to_the_key(
    local_store: ArtifactStore, size: int
) -> None:
    from inloop.errors import ArtifactIntegrityError

    key = local_store.put(np.arange(size, dtype=np.uint8)).key
    np.testing.assert_array_equal(
        local_store.get(key, verify=True), np.arange(size, dtype=np.uint8)
    )
    other = pickle.dumps("something else")
    Path(local_store.url, key[:2], key[2:]).write_bytes(other)
    fresh = ArtifactStore(local_store.url)  # no byte cache holding the original
    for read in (fresh.get, fresh.get_bytes):
        with pytest.raises(ArtifactIntegrityError, match=hashlib.sha256(other).hexdigest()):
            read(key, verify=True)
    assert fresh.get_bytes(key) == other  # unverified reads (raw logs) read what is there


def test_a_local_store_is_the_owners_only(tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path / "home" / "artifacts"))
    stored = store.put({"secret": "labels"})
    root = tmp_path / "home" / "artifacts"
    blob = root / stored.key[:2] / stored.key[2:]
    modes = [oct(p.stat().st_mode & 0o777) for p in (tmp_path / "home", root, blob.parent, blob)]
    assert modes == ["0o700", "0o700", "0o700", "0o600"]
