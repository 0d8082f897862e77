"""The worker process: runs one package behind the walls of `sandbox` and answers calls.

Started by `ProcessBackend` as ``python -I -c <bootstrap> <config>``; never imported by the
host. Life of a worker:

1. import what the package needs (numpy, onnxruntime, the runtime) and tell the host it is ready;
2. raise the sandbox's walls (`sandbox.harden`), then receive the package and load it: import
   ``features.py``, load the model, warm up. The self-test is *not* here: the host asks for the
   golden cases' answers as ordinary calls and judges them itself;
3. answer calls on the shared page until the host closes the control pipe or kills it.

Whatever the package raises, ``SystemExit`` and ``KeyboardInterrupt`` included, is caught and
reported as a failed load or a failed call; what it does that cannot be caught (``os._exit``,
a crash, running out of memory in C) ends only this process.
"""

from __future__ import annotations

import json
import mmap
import os
import select
import signal
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from pitahaya.client_runtime.containment import sandbox, wire
from pitahaya.client_runtime.loader import Engine, LoadedPackage, load_failure
from pitahaya.client_runtime.package import FEATURES_FILE, MODEL_FILE, Manifest, Package


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"[:1000]


def _load(header: dict[str, Any], blobs: list[bytes]) -> Engine:
    """Load the package sent by the host (no self-test here; the host judges it)."""
    manifest = Manifest.from_dict(header["manifest"])
    features, model = blobs
    package = Package(
        manifest=manifest,
        files={FEATURES_FILE: features, MODEL_FILE: model},
        sha256=str(header["sha256"]),
        size_bytes=0,
    )
    return Engine(LoadedPackage.load(package, selftest=False))


def _load_reply(header: dict[str, Any], blobs: list[bytes]) -> tuple[Engine | None, dict[str, Any]]:
    try:
        return _load(header, blobs), {"ok": True}
    except BaseException as e:  # the package's code may raise anything, SystemExit included
        error = load_failure(e)
        return None, {"ok": False, "reason": error.reason, "message": str(error)[:1000]}


def _serve(engine: Engine, page: mmap.mmap, request_bell: int, response_bell: int) -> None:
    """Answer calls until the host goes (`_exit_with_the_host` ends the process then)."""
    os.set_blocking(request_bell, True)  # one system call per wake-up: sleep in read()
    last = 0
    while True:
        spin_until = time.monotonic() + wire.WORKER_SPIN_S
        while wire.request_seq(page) == last and time.monotonic() < spin_until:
            os.sched_yield()  # a busy machine runs its other work instead of this wait
        if wire.request_seq(page) == last:
            try:
                os.read(request_bell, 8)
            except BlockingIOError:  # a pipe doorbell (non-Linux) drained by an earlier read
                pass
        request = wire.read_request(page, last)
        if request is None:
            continue
        last, step = request
        try:
            features, predictions = engine.step(step.reset, step.views, step.candidates, step.now)
            wire.write_response(page, last, len(step.candidates), predictions, features if step.want_features else None)
        except BaseException as e:  # the package's code may raise anything, SystemExit included
            wire.write_error(page, last, _describe(e))
        wire.Doorbell.ring(response_bell)


def _exit_with_the_host(control_in: int) -> None:
    """End this process when the host's end of the control pipe closes (the host exited or died).

    Runs on its own thread so that a package stuck in a loop does not outlive its host; it
    waits for the hang-up alone (no read), so it never takes a frame meant for the main thread.
    """
    poller = select.poll()
    poller.register(control_in, 0)  # POLLHUP is always reported
    while True:
        for _, events in poller.poll():
            if events & (select.POLLHUP | select.POLLERR | select.POLLNVAL):
                os._exit(0)


def main(config_json: str) -> None:
    """Entry point of the worker (see the module docstring)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the host decides when this process ends
    config = json.loads(config_json)
    control_in, control_out = config["control_in"], config["control_out"]
    threading.Thread(target=_exit_with_the_host, args=(control_in,), name="host-watch", daemon=True).start()
    page = mmap.mmap(config["page_fd"], wire.PAGE_BYTES)
    try:
        walls = sandbox.harden(
            Path(config["workdir"]),
            memory_bytes=config["memory_bytes"],
            cpu_s=config["cpu_s"],
            file_bytes=config["file_bytes"],
        )
        wire.send_frame(control_out, {"ready": True, "walls": vars(walls)})
        header, blobs = wire.read_frame(control_in, max_bytes=1 << 31)
    except (wire.ChannelClosed, OSError, ValueError):
        os._exit(3)
    engine, reply = _load_reply(header, blobs)
    wire.send_frame(control_out, reply)
    if engine is None:
        os._exit(0)
    try:
        _serve(engine, page, config["request_bell"], config["response_bell"])
    except BaseException:  # our own failure: say why on stderr (the worker's log), then stop
        traceback.print_exc()
    os._exit(0)


if __name__ == "__main__":
    main(sys.argv[1])
