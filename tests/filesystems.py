"""A real, small filesystem for full-disk tests: tmpfs, mounted for one test and unmounted after.

A full disk is simulated by nothing: `small_tmpfs` mounts a real tmpfs of a few MiB (root
only, as tests run here and in CI) and `filled` occupies all but a chosen number of bytes
of it, so the code under test meets the kernel's own ``ENOSPC``. Where mounting is not
permitted, `tmpfs_fixture` skips with the reason, and fails under ``CI=true``, like the
missing servers of `servers`.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from servers import unavailable


class MountUnavailable(RuntimeError):
    """This process may not mount a tmpfs (not root, or no ``mount``)."""


@contextmanager
def small_tmpfs(folder: Path, size_bytes: int) -> Iterator[Path]:
    """Mount a tmpfs of ``size_bytes`` on ``folder`` (created) and unmount it on exit.

    Raises:
        MountUnavailable: mounting failed; the reason is the ``mount`` error.
    """
    folder.mkdir(parents=True, exist_ok=True)
    try:
        mounted = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size_bytes},mode=0755", "tmpfs", str(folder)],
            capture_output=True,
            text=True,
        )
    except FileNotFoundError as e:
        raise MountUnavailable(f"no mount command: {e}") from e
    if mounted.returncode != 0:
        raise MountUnavailable(f"cannot mount a tmpfs (needs root): {mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "--lazy", str(folder)], check=True)


def tmpfs_fixture(folder: Path, size_bytes: int) -> Iterator[Path]:
    """Fixture body: a mounted `small_tmpfs`; skips locally (fails under CI) where mounting is refused."""
    try:
        with small_tmpfs(folder, size_bytes) as mounted:
            yield mounted
    except MountUnavailable as e:
        unavailable(e)


def free_bytes(folder: Path) -> int:
    stat = os.statvfs(folder)
    return stat.f_bavail * stat.f_frsize


@contextmanager
def filled(folder: Path, *, leave_bytes: int) -> Iterator[None]:
    """Occupy the filesystem of ``folder`` until only ``leave_bytes`` are free; free it on exit."""
    filler = folder / "filler"
    size = free_bytes(folder) - leave_bytes
    if size > 0:
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.posix_fallocate(fd, 0, size)
        finally:
            os.close(fd)
    try:
        yield
    finally:
        filler.unlink(missing_ok=True)
