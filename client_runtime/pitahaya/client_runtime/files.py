"""Writing files all-or-nothing: the one helper every pitahaya component writes files with.

A file is written to a temp file beside it (``.<name>.<random>.tmp``), flushed and fsynced,
renamed over the target, and the folder is fsynced, so readers and a crash see the old file
or the complete new one, never a torn one, and a power cut cannot undo the rename. A process
killed before the rename leaves only its temp file (`is_temp_file`), which owners of a folder
may sweep (``pitahaya registry gc`` does for the blob store).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

#: Suffix of the temp files (named ``.<target name>.<random>.tmp``).
TEMP_SUFFIX = ".tmp"


@contextlib.contextmanager
def atomic_output(path: Path, *, mode: int | None = None) -> Iterator[IO[bytes]]:
    """A binary file that becomes ``path`` when the block ends without an error (else nothing does).

    Args:
        mode: Permission bits of the new file (default: `tempfile`'s 0600).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as stream:
            yield stream
            stream.flush()
            os.fsync(stream.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def write_atomic(path: Path, data: bytes, *, mode: int | None = None) -> None:
    """Write ``data`` to ``path`` all-or-nothing (see `atomic_output`)."""
    with atomic_output(path, mode=mode) as stream:
        stream.write(data)


def is_temp_file(path: Path) -> bool:
    """Whether ``path`` is named like a temp file of `atomic_output`."""
    return path.name.startswith(".") and path.name.endswith(TEMP_SUFFIX)


def fsync_dir(folder: Path) -> None:
    """Persist a rename in ``folder``, so a power cut cannot resurrect the old file."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
