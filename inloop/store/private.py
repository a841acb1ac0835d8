"""Files and folders that only their owner may read: the database, the artifacts, ``INLOOP_HOME``.

Labels, tokens' digests, archived requests and pickled models live there; other
accounts on the machine have no business reading them. Folders inloop creates
get mode 0700 and files 0600 (a umask can only take more away); what exists
already keeps its mode.

>>> import tempfile, pathlib
>>> root = pathlib.Path(tempfile.mkdtemp())
>>> make_private_dir(root / "a" / "b")
>>> oct((root / "a").stat().st_mode & 0o777), oct((root / "a" / "b").stat().st_mode & 0o777)
('0o700', '0o700')
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["PRIVATE_DIR_MODE", "PRIVATE_FILE_MODE", "create_private_file", "make_private_dir"]

#: Mode of the folders inloop creates.
PRIVATE_DIR_MODE = 0o700
#: Mode of the files inloop creates.
PRIVATE_FILE_MODE = 0o600


def make_private_dir(path: str | os.PathLike[str]) -> None:
    """Create folder ``path``, and each missing parent, readable by the owner only.

    Unlike ``os.makedirs(mode=...)``, whose mode reaches only the last folder,
    every folder made here gets :data:`PRIVATE_DIR_MODE`.
    """
    folder = Path(path)
    missing: list[Path] = []
    while not folder.is_dir():
        missing.append(folder)
        if folder.parent == folder:
            break
        folder = folder.parent
    for made in reversed(missing):
        try:
            made.mkdir(mode=PRIVATE_DIR_MODE)
        except FileExistsError:
            pass  # made at the same moment by another process (or not a folder: open says)


def create_private_file(path: str | os.PathLike[str]) -> None:
    """Create an empty file at ``path`` readable by the owner only, unless it exists."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, PRIVATE_FILE_MODE)
    os.close(fd)
