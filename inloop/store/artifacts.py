"""The content-addressed artifact store: values kept by the sha256 of their bytes.

A store is a folder (the embedded default), an S3 bucket prefix (at scale) or
fsspec's in-memory file system (tests). Each blob lives at
``<root>/<key[:2]>/<key[2:]>`` and is written once: storing an equal value again
finds the blob already there. Writes are atomic, so a reader never sees half a
blob: a folder gets a temporary name renamed into place, S3 publishes an object
only when its upload completes. A folder store's folders and files are the
owner's only (modes 0700 and 0600).

>>> store = open_artifact_store("memory://inloop-doctest")
>>> stored = store.put({"alpha": 0.5})
>>> store.get(stored.key)
{'alpha': 0.5}
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from inloop.errors import (
    ArtifactIntegrityError,
    ArtifactNotFoundError,
    ConfigError,
    MissingExtraError,
    StoreError,
)
from inloop.store import serialize
from inloop.store.private import PRIVATE_FILE_MODE, make_private_dir

__all__ = ["ArtifactStore", "StoredArtifact", "open_artifact_store"]

DEFAULT_CACHE_BYTES = 64 * 1024 * 1024
# Blobs below this size are kept in the byte cache; larger ones are read each time.
CACHEABLE_BYTES = 1024 * 1024
# Remote blobs up to this size are uploaded and read in one request; larger ones
# are streamed in pieces of this size so memory stays bounded.
_REMOTE_PIECE = 8 * 1024 * 1024
_SCHEMES = ("a local path", "file:///path", "s3://bucket/prefix", "memory://name")
_KEY = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class StoredArtifact:
    """Where a stored value lives: its content key (hex sha256 of the blob) and byte size."""

    key: str
    size: int


class ArtifactStore:
    """Values and raw bytes stored once each, under the sha256 of their bytes.

    Safe to pickle (Dask ships it to workers) and to use after ``fork``: only
    the URL, options and cache limit travel, and the file system is reopened in
    the new process on first use.
    """

    url: str

    def __init__(
        self,
        url: str,
        storage_options: dict[str, Any] | None = None,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
    ) -> None:
        if not isinstance(cache_bytes, int) or cache_bytes < 0:
            raise ConfigError(
                f"cache_bytes of ArtifactStore must be an int >= 0 (0 turns the cache off). "
                f"Got {cache_bytes!r}."
            )
        self._configure(url, storage_options, cache_bytes)

    def _configure(
        self, url: str, storage_options: dict[str, Any] | None, cache_bytes: int
    ) -> None:
        self.url, self._protocol, self._root = _parse_url(url)
        self.storage_options: dict[str, Any] = dict(storage_options or {})
        self.cache_bytes = cache_bytes
        self._reset_process_state()

    def _reset_process_state(self) -> None:
        self._pid = os.getpid()
        self._fs: Any = None
        self._lock = threading.Lock()
        self._cache: OrderedDict[str, bytes] = OrderedDict()
        self._cached_bytes = 0
        self._made_dirs: set[str] = set()

    def _check_pid(self) -> None:
        # After fork a lock may be held by a thread that no longer exists, and a
        # remote file system's event loop and sockets belong to the parent.
        if self._pid != os.getpid():
            self._reset_process_state()

    def __getstate__(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "storage_options": self.storage_options,
            "cache_bytes": self.cache_bytes,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._configure(state["url"], state["storage_options"], state["cache_bytes"])

    def __repr__(self) -> str:
        return f"ArtifactStore({self.url!r})"

    @property
    def is_local(self) -> bool:
        """True when the store is a folder on this machine (``url`` is then its path)."""
        return self._protocol == "file"

    @property
    def _fs_remote(self) -> Any:
        """The fsspec file system of a remote store, opened on first use in each process."""
        self._check_pid()
        if self._fs is None:
            import fsspec

            try:
                self._fs = fsspec.filesystem(self._protocol, **self.storage_options)
            except ImportError as exc:
                if self._protocol in ("s3", "s3a"):
                    raise MissingExtraError("s3", f"The artifact store {self.url}", exc) from None
                raise ConfigError(
                    f"The artifact store {self.url} needs the {self._protocol!r} file system, "
                    f"whose package is not installed ({exc}). Install the package fsspec names; "
                    'inloop\'s own extras cover s3:// (pip install "inloop[s3]").'
                ) from None
        return self._fs

    def check_backend(self) -> None:
        """Import a remote store's file system now: a missing package fails here, in one line.

        A process that hands work to others (a flow's runtime, the server) calls
        it first, so that a missing extra is not found inside a task. A folder or
        in-memory store has nothing to check.

        >>> open_artifact_store("memory://check-doc").check_backend()
        """
        if self._protocol != "file":
            self._fs_remote  # noqa: B018 - opened for its import errors

    def _path(self, key: str) -> str:
        _check_key(key, self.url)
        return f"{self._root}/{key[:2]}/{key[2:]}"

    # -- writing -----------------------------------------------------------------------

    def put(self, value: object) -> StoredArtifact:
        """Store ``value`` (once) and return its key and size.

        Large buffers (arrays, frames) are hashed and written straight from the
        value's memory, never joined into one bytes object.
        """
        chunks = serialize.dump_chunks(value)
        size = serialize.blob_size(chunks)
        if size < CACHEABLE_BYTES:
            # Small: joining is one cheap copy, and the blob can go to the cache.
            return self.put_bytes(b"".join(chunks))
        digest = hashlib.sha256()
        for chunk in chunks:
            digest.update(chunk)
        key = digest.hexdigest()
        self._write(key, chunks, size)
        return StoredArtifact(key, size)

    def put_bytes(self, data: bytes) -> StoredArtifact:
        """Store raw bytes (a log, a file) under the sha256 of those bytes."""
        key = hashlib.sha256(data).hexdigest()
        size = len(data)
        self._write(key, [data], size)
        if size < CACHEABLE_BYTES:
            self._cache_put(key, bytes(data))
        return StoredArtifact(key, size)

    def _write(self, key: str, chunks: list[memoryview | bytes], size: int) -> None:
        path = f"{self._root}/{key[:2]}/{key[2:]}"
        if self._protocol == "file":
            if not os.path.exists(path):
                self._write_local(path, chunks)
            return
        fs = self._fs_remote
        if fs.exists(path):
            return
        try:
            if size <= _REMOTE_PIECE or self._protocol == "memory":
                # One request (memory: one dict assignment) makes it appear whole.
                fs.pipe_file(path, b"".join(chunks))
            else:
                self._write_remote_streamed(path, chunks)
        except (OSError, ValueError) as exc:
            raise StoreError(
                f"Could not write artifact {key} ({size} bytes) to the artifact store "
                f"{self.url}: {exc}. Check that the store is reachable and writable "
                "(bucket exists, credentials, INLOOP_S3_ENDPOINT_URL)."
            ) from exc

    def _write_local(self, path: str, chunks: list[memoryview | bytes]) -> None:
        folder = path[: path.rfind("/")]
        tmp = f"{folder}/.tmp-{os.getpid()}-{os.urandom(6).hex()}"
        try:
            if folder not in self._made_dirs:
                make_private_dir(folder)
                self._made_dirs.add(folder)
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
            except FileNotFoundError:
                # The folder was removed behind our back (a clean-up): make it again.
                make_private_dir(folder)
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
        except OSError as exc:
            raise self._write_error(path, exc) from exc
        try:
            try:
                for chunk in chunks:
                    _write_all(fd, chunk)
            finally:
                os.close(fd)
            # Readers see no file or the whole file, never a part of it.
            os.replace(tmp, path)
        except BaseException as exc:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            if isinstance(exc, OSError):
                raise self._write_error(path, exc) from exc
            raise

    def _write_error(self, path: str, exc: OSError) -> StoreError:
        folder, name = os.path.split(path)
        return StoreError(
            f"Could not write artifact {os.path.basename(folder)}{name} to the artifact store "
            f"{self.url}: {exc}. Check free disk space and the permissions of {folder}."
        )

    def _write_remote_streamed(self, path: str, chunks: list[memoryview | bytes]) -> None:
        fs = self._fs_remote
        size = serialize.blob_size(chunks)
        # S3 allows at most 10,000 parts; beyond 80 GB the parts must grow.
        piece = max(_REMOTE_PIECE, -(-size // 9_000))
        f = fs.open(path, "wb", block_size=piece)
        try:
            for chunk in chunks:
                view = memoryview(chunk)
                # The file object copies what it is given into its buffer: hand it
                # one part at a time so the copy stays one part big.
                for start in range(0, view.nbytes, piece):
                    f.write(view[start : start + piece])
        except BaseException:
            # Abort the multipart upload: nothing appears at the key.
            f.discard()
            f.closed = True
            raise
        f.close()

    # -- reading -----------------------------------------------------------------------

    def get(self, key: str, *, verify: bool = False) -> object:
        """Load the value stored under ``key``; each call returns a fresh object.

        Loading unpickles, which runs whatever code the blob names: whoever
        can write the store can run code here. With ``verify`` the blob's
        sha256 must equal ``key`` before anything is unpickled, else
        :class:`~inloop.errors.ArtifactIntegrityError` (a swapped or corrupt
        file); it costs one pass of sha256 over the blob (about 1 GB/s).

        >>> store = open_artifact_store("memory://get-verify-doc")
        >>> store.get(store.put([1, 2]).key, verify=True)
        [1, 2]
        """
        blob = self._cache_get(key)
        if blob is not None:
            if verify:
                self._verify(key, blob)
            # A private writeable copy: loaded arrays must not alias the cache.
            return serialize.loads(bytearray(blob))
        read = self._read(key)
        if verify:
            self._verify(key, read)
        return serialize.loads(read)

    def get_bytes(self, key: str, *, verify: bool = False) -> bytes:
        """The raw bytes stored under ``key`` (for a value: its serialized blob).

        ``verify`` checks that they hash to ``key``, as :meth:`get` does.
        """
        blob = self._cache_get(key)
        if blob is None:
            blob = bytes(self._read(key))
        if verify:
            self._verify(key, blob)
        return blob

    def _verify(self, key: str, blob: bytes | bytearray) -> None:
        found = hashlib.sha256(blob).hexdigest()
        if found != key:
            raise ArtifactIntegrityError(
                f"Artifact {key} in the artifact store {self.url} holds other bytes: "
                f"expected sha256 {key}, found {found}. The file was replaced or is corrupt, "
                "and it was not loaded. Restore it from a backup or store the value again; "
                "anyone who can write the artifact store can run code where it is loaded.",
                key=key,
                found=found,
            )

    def exists(self, key: str) -> bool:
        """Whether a blob is stored under ``key`` (False for a malformed key)."""
        if not isinstance(key, str) or not _KEY.fullmatch(key):
            return False
        if key in self._cache:
            return True
        path = f"{self._root}/{key[:2]}/{key[2:]}"
        if self._protocol == "file":
            return os.path.exists(path)
        return bool(self._fs_remote.exists(path))

    def size(self, key: str) -> int:
        """Size in bytes of the blob stored under ``key``."""
        path = self._path(key)
        try:
            if self._protocol == "file":
                return os.stat(path).st_size
            return int(self._fs_remote.size(path))
        except FileNotFoundError:
            raise self._not_found(key) from None

    def _read(self, key: str) -> bytearray:
        """The blob of ``key`` in a bytearray of its exact size, read without extra copies."""
        path = self._path(key)
        try:
            local = self._protocol == "file"
            blob = _read_local(path) if local else self._read_remote(path)
        except FileNotFoundError:
            raise self._not_found(key) from None
        except OSError as exc:
            raise StoreError(
                f"Could not read artifact {key} from the artifact store {self.url}: {exc}. "
                "Check that the store is reachable and readable."
            ) from exc
        if len(blob) < CACHEABLE_BYTES:
            self._cache_put(key, bytes(blob))
        return blob

    def _read_remote(self, path: str) -> bytearray:
        fs = self._fs_remote
        size = int(fs.size(path))
        blob = bytearray(size)
        view = memoryview(blob)
        # Ranged reads of bounded size: a remote file object would buffer its own
        # copy of the blob.
        for start in range(0, size, _REMOTE_PIECE):
            end = min(start + _REMOTE_PIECE, size)
            piece = fs.cat_file(path, start=start, end=end)
            if len(piece) != end - start:
                raise StoreError(
                    f"Artifact {path} in {self.url} changed size while being read "
                    f"(expected {size} bytes). Read it again."
                )
            view[start:end] = piece
        return blob

    def _not_found(self, key: str) -> ArtifactNotFoundError:
        return ArtifactNotFoundError(
            f"No artifact with key {key} in the artifact store {self.url}. Check that the key "
            "comes from a run recorded against this store (INLOOP_ARTIFACTS_URL) and that the "
            "artifact was not deleted."
        )

    # -- byte cache (bytes only: callers may mutate the objects they load) ----------------

    def _cache_get(self, key: str) -> bytes | None:
        if not self.cache_bytes:
            return None
        self._check_pid()
        with self._lock:
            blob = self._cache.get(key)
            if blob is not None:
                self._cache.move_to_end(key)
            return blob

    def _cache_put(self, key: str, blob: bytes) -> None:
        if len(blob) > self.cache_bytes:
            return
        self._check_pid()
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return
            self._cache[key] = blob
            self._cached_bytes += len(blob)
            while self._cached_bytes > self.cache_bytes:
                _, old = self._cache.popitem(last=False)
                self._cached_bytes -= len(old)


def _write_all(fd: int, chunk: memoryview | bytes) -> None:
    view = memoryview(chunk)
    while view.nbytes:
        written = os.write(fd, view)
        view = view[written:]


def _read_local(path: str) -> bytearray:
    with open(path, "rb", buffering=0) as f:
        size = os.fstat(f.fileno()).st_size
        blob = bytearray(size)
        view = memoryview(blob)
        done = 0
        while done < size:
            n = f.readinto(view[done:])
            if not n:
                raise StoreError(
                    f"Artifact file {path} is shorter than its size {size}: it changed while "
                    "being read. Read it again."
                )
            done += n
        return blob


def _check_key(key: str, url: str) -> None:
    if not isinstance(key, str) or not _KEY.fullmatch(key):
        raise ArtifactNotFoundError(
            f"{key!r} is not an artifact key of {url}: keys are 64 lowercase hex characters "
            "(the sha256 of the blob), as returned in StoredArtifact.key by put()."
        )


def _parse_url(url: str) -> tuple[str, str, str]:
    """Return (normalized url, fsspec protocol, root path without a trailing slash)."""
    if not isinstance(url, str) or not url.strip():
        raise ConfigError(_bad_url_message(url))
    url = url.strip()
    scheme, sep, rest = url.partition("://")
    if not sep:
        root = os.path.abspath(os.path.expanduser(url))
        return root, "file", root.rstrip("/") or "/"
    scheme = scheme.lower()
    if scheme == "file":
        root = os.path.abspath(os.path.expanduser(rest))
        return root, "file", root.rstrip("/") or "/"
    if scheme in ("s3", "s3a"):
        rest = rest.strip("/")
        if not rest:
            raise ConfigError(_bad_url_message(url))
        return f"s3://{rest}", "s3", rest
    if scheme == "memory":
        rest = rest.strip("/")
        return f"memory://{rest}", "memory", "/" + rest if rest else ""
    raise ConfigError(_bad_url_message(url))


def _bad_url_message(url: object) -> str:
    return (
        f"The artifact store URL {url!r} is not supported. Use one of: {', '.join(_SCHEMES)} "
        "(set INLOOP_ARTIFACTS_URL or pass url=)."
    )


def open_artifact_store(
    url: str | None = None, storage_options: dict[str, Any] | None = None
) -> ArtifactStore:
    """Open the artifact store at ``url``, by default the one the settings name.

    ``storage_options`` go to fsspec (for S3: ``{"client_kwargs": {"endpoint_url": ...}}``);
    with no URL they also default to the settings'.
    """
    if url is None:
        from inloop.settings import get_settings

        settings = get_settings()
        url = settings.resolved_artifacts_url
        if storage_options is None:
            storage_options = settings.storage_options
    return ArtifactStore(url, storage_options)
