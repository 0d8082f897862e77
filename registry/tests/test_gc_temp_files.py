"""``registry gc`` finds the temp file of a blob write whose process was SIGKILLed mid-write.

A child process writes a large blob through the real `LocalBlobStore`; the parent SIGKILLs it
as soon as the write's temp file appears (before the rename), as a crash or an OOM kill would.
Garbage collection then lists that file as young within the grace period (a write in flight
looks the same), would delete it in a dry run, and deletes it once older than the grace
period, leaving committed blobs alone.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pitahaya.registry import Settings, collect_garbage
from pitahaya.registry.blobs import LocalBlobStore, sha256_hex

WRITER = """
import sys
from pathlib import Path
from pitahaya.registry.blobs import LocalBlobStore
LocalBlobStore(Path(sys.argv[1])).put(bytes(int(sys.argv[2])))
"""


def kill_a_writer_mid_write(root: Path) -> Path:
    """Run a blob write in a child and SIGKILL it while its temp file exists; return that file.

    A write of this size takes far longer than the poll-and-kill, so the first try almost
    always lands mid-write; a child that finished first is retried with a larger blob.
    """
    for size in (64 << 20, 256 << 20):
        child = subprocess.Popen([sys.executable, "-c", WRITER, str(root), str(size)])
        try:
            while child.poll() is None:
                partial = [p for p in root.rglob("*.tmp") if _size(p) > 0]
                if partial:
                    os.kill(child.pid, signal.SIGKILL)
                    child.wait()
                    survivors = [p for p in partial if p.exists()]
                    if survivors:
                        return survivors[0]
                    break
                time.sleep(0.001)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
        LocalBlobStore(root).delete(sha256_hex(bytes(size)))  # the write won the race: try a larger one
    pytest.fail("could not catch a blob write in the middle")


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:  # renamed into place (or removed) since it was listed
        return 0


def test_gc_lists_and_deletes_the_temp_file_of_a_writer_killed_mid_write(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", registry_token="gc-test-token-0123456789")
    blobs = LocalBlobStore(settings.resolved_blob_dir)
    complete = blobs.put(b"a blob whose write finished")
    partial = kill_a_writer_mid_write(settings.resolved_blob_dir)
    name = str(partial.relative_to(settings.resolved_blob_dir))
    assert name.startswith("sha256/") and [digest for digest, _ in blobs.list()] == [complete]

    young = collect_garbage(settings, min_age_seconds=3600)
    assert young.kept_young_temp_files == [name] and young.deleted_temp_files == [] and partial.exists()
    dry = collect_garbage(settings, min_age_seconds=0, dry_run=True)
    assert dry.deleted_temp_files == [name] and partial.exists()
    done = collect_garbage(settings, min_age_seconds=0)

    assert done.deleted_temp_files == [name] and not partial.exists()
    assert collect_garbage(settings, min_age_seconds=0).deleted_temp_files == []
    assert done.deleted == [complete]  # no row refers to it here: an orphan, collected as before
