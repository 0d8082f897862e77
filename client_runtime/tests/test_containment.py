"""Publisher code against the compute container, as an attacker holding a valid signing key would
write it: every hostile package here is a real archive loaded by a real worker process (or thread)."""

from __future__ import annotations

import os
import resource
import signal
import time
from pathlib import Path

import numpy as np
import pytest

from pitahaya.client_runtime import (
    CallTimeoutError,
    Candidate,
    ContainedPackage,
    FeatureCodeError,
    InferenceError,
    Limits,
    LoadedPackage,
    LoadTimeoutError,
    ResourceLimitError,
    SandboxCrashError,
    SelfTestError,
    WorkerLostError,
    read_package,
)
from pitahaya.client_runtime.containment import wire
from pitahaya.client_runtime.history import RecentViews

from package_factory import hostile_source, make_archive, sample_views
from runtime_support import CANDIDATES

#: Generous slack over a deadline: a busy 2-core CI machine must not fail these.
SLACK_S = 3.0
LIMITS = Limits(call_timeout_s=0.2, max_call_timeout_s=0.2, load_timeout_s=5.0, kill_after_s=0.5)


def contained(tmp_path: Path, source: str | None = None, *, isolation: str = "process", limits: Limits = LIMITS, **kw):
    views = RecentViews(64)
    for view in sample_views("device-user", 4):
        views.append(view)
    package = read_package(make_archive(feature_source=source, **kw))
    return ContainedPackage(package, isolation=isolation, limits=limits, sandbox_root=tmp_path / "sandbox", views=views)


def later() -> float:
    return time.monotonic() + LIMITS.call_timeout_s


@pytest.mark.parametrize("isolation", ["process", "thread", "inline"])
def test_every_mode_answers_exactly_what_the_package_computes(tmp_path: Path, isolation: str) -> None:
    reference = contained(tmp_path / "ref", isolation="inline")
    package = contained(tmp_path, isolation=isolation)
    try:
        want = reference.predict(CANDIDATES, 1_700_000_500.0, later() + 5)
        assert package.predict(CANDIDATES, 1_700_000_500.0, later() + 5) == want
        assert all(x > 0 for x in want)
    finally:
        package.close()
        reference.close()


@pytest.mark.parametrize("isolation", ["process", "thread"])
def test_a_call_past_its_deadline_times_out_and_the_next_one_fails_fast(tmp_path: Path, isolation: str) -> None:
    package = contained(
        tmp_path, hostile_source(at_import="import time", in_transform="time.sleep(30)"), isolation=isolation
    )
    try:
        started = time.monotonic()
        with pytest.raises(CallTimeoutError):
            package.predict(CANDIDATES, 1.7e9, later())
        assert time.monotonic() - started < LIMITS.call_timeout_s + SLACK_S
        started = time.monotonic()
        with pytest.raises((CallTimeoutError, WorkerLostError)):  # still busy (or already given up)
            package.predict(CANDIDATES, 1.7e9, later())
        assert time.monotonic() - started < SLACK_S
    finally:
        package.close()


def test_a_stuck_worker_is_killed_and_restarted_then_answers_again(tmp_path: Path) -> None:
    # Stuck on one input only: the restarted process is healthy for the others.
    poison = "if candidates[0].video_id == 'poison':\n    time.sleep(60)"
    package = contained(tmp_path, hostile_source(at_import="import time", in_transform=poison))
    try:
        first_pid = package._backend.pid  # type: ignore[union-attr]
        with pytest.raises(CallTimeoutError):
            package.predict([Candidate("poison", 10.0, 1_000_000)], 1.7e9, later())
        deadline = time.monotonic() + 60
        answer = None
        while answer is None and time.monotonic() < deadline:
            try:
                answer = package.predict(CANDIDATES, 1.7e9, later())
            except (CallTimeoutError, WorkerLostError):
                time.sleep(0.1)
        assert answer is not None and len(answer) == len(CANDIDATES)
        assert package._backend.pid != first_pid  # type: ignore[union-attr]
        with pytest.raises(ProcessLookupError):
            os.kill(first_pid, 0)
    finally:
        package.close()


@pytest.mark.parametrize(
    ("at_import", "error"),
    [
        ("while True:\n    pass", LoadTimeoutError),
        ("import time\ntime.sleep(3600)", LoadTimeoutError),
        ("raise SystemExit(0)", FeatureCodeError),
        ("raise KeyboardInterrupt", FeatureCodeError),
        ("import os\nos._exit(7)", SandboxCrashError),
        ("blocks = [bytearray(64 * 2**20) for _ in range(1000)]", ResourceLimitError),
    ],
    ids=["busy-loop", "sleep", "SystemExit", "KeyboardInterrupt", "os._exit", "allocate"],
)
def test_hostile_code_at_import_is_refused_and_the_host_survives(tmp_path: Path, at_import: str, error: type) -> None:
    limits = Limits(call_timeout_s=0.2, max_call_timeout_s=0.2, load_timeout_s=3.0, memory_bytes=256 * 2**20)
    host_rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.monotonic()
    with pytest.raises(error):
        contained(tmp_path, hostile_source(at_import=at_import), limits=limits)
    assert time.monotonic() - started < limits.load_timeout_s + limits.start_timeout_s
    assert not list((tmp_path / "sandbox").iterdir())  # the refused package's folder is gone
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - host_rss_before < 200 * 1024  # KiB: not the 64 GB


@pytest.mark.parametrize("isolation", ["process", "thread", "inline"])
@pytest.mark.parametrize("exit_call", ["raise SystemExit(1)", "raise KeyboardInterrupt"])
def test_exits_from_transform_and_update_are_errors_not_exits(tmp_path: Path, isolation: str, exit_call: str) -> None:
    in_transform = contained(tmp_path / "t", hostile_source(in_transform=exit_call), isolation=isolation)
    try:
        with pytest.raises(InferenceError, match="SystemExit|KeyboardInterrupt"):
            in_transform.predict(CANDIDATES, 1.7e9, later())
    finally:
        in_transform.close()
    with pytest.raises(FeatureCodeError, match="SystemExit|KeyboardInterrupt"):  # during the replay of history
        contained(tmp_path / "u", hostile_source(in_update=exit_call), isolation=isolation)


def test_update_looping_forever_during_replay_is_a_load_timeout(tmp_path: Path) -> None:
    started = time.monotonic()
    with pytest.raises(LoadTimeoutError):
        contained(tmp_path, hostile_source(in_update="while True:\n    pass"))
    assert time.monotonic() - started < LIMITS.load_timeout_s + LIMITS.start_timeout_s


def test_os_exit_in_transform_loses_the_worker_not_the_host(tmp_path: Path) -> None:
    package = contained(tmp_path, hostile_source(at_import="import os", in_transform="os._exit(9)"))
    try:
        with pytest.raises(WorkerLostError):
            package.predict(CANDIDATES, 1.7e9, later())
    finally:
        package.close()


def test_the_package_cannot_signal_its_host(tmp_path: Path) -> None:
    received: list[int] = []
    previous = signal.signal(signal.SIGUSR1, lambda signum, frame: received.append(signum))
    try:
        source = hostile_source(at_import="import os, signal\nos.kill(os.getppid(), signal.SIGUSR1)")
        with pytest.raises(FeatureCodeError, match="PermissionError"):
            contained(tmp_path, source)
    finally:
        signal.signal(signal.SIGUSR1, previous)
    assert received == []


@pytest.mark.parametrize(
    "attack",
    [
        "open({target!r}, 'w').write('pwned')",
        "import os\nfd = os.open({target!r}, os.O_WRONLY | os.O_CREAT)\nos.write(fd, b'pwned')",
        "import pathlib\npathlib.Path({target!r}).write_text('pwned')",
        "import shutil\nshutil.copyfile(__import__('sys').executable, {target!r})",
    ],
    ids=["open", "os.open", "pathlib", "shutil"],
)
def test_writes_outside_the_workers_folder_are_refused(tmp_path: Path, attack: str) -> None:
    target = tmp_path / "outside" / "pwned.txt"
    target.parent.mkdir()
    with pytest.raises(FeatureCodeError, match="PermissionError"):
        contained(tmp_path, hostile_source(at_import=attack.format(target=str(target))))
    assert not target.exists()


def test_the_host_files_are_out_of_reading_reach(tmp_path: Path) -> None:
    secret = tmp_path / "keys" / "online.key"
    secret.parent.mkdir()
    secret.write_text("registry private key")
    probe = contained(tmp_path / "probe")
    try:
        if not probe._backend.walls.get("landlock_abi"):  # type: ignore[union-attr]
            pytest.skip("this kernel has no Landlock: reads are not restricted (docs/SECURITY.md)")
    finally:
        probe.close()
    for attack in (f"open({str(secret)!r}).read()", f"__import__('os').listdir({str(secret.parent)!r})"):
        with pytest.raises(FeatureCodeError, match="PermissionError"):
            contained(tmp_path, hostile_source(at_import=attack))


def test_a_relative_sandbox_folder_works(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A registry or device configured with a relative data folder (``.pitahaya``) passes one.
    monkeypatch.chdir(tmp_path)
    package = ContainedPackage(read_package(make_archive()), limits=LIMITS, sandbox_root=Path("relative") / "sandbox")
    try:
        assert package.predict(CANDIDATES, 1.7e9, later() + 5)
    finally:
        package.close()


def test_writes_inside_its_own_folder_are_allowed(tmp_path: Path) -> None:
    package = contained(tmp_path, hostile_source(at_import="open('scratch.txt', 'w').write('fine')"))
    try:
        assert package.predict(CANDIDATES, 1.7e9, later() + 5)
    finally:
        package.close()


@pytest.mark.parametrize(
    "attack",
    [
        "import socket\nsocket.create_connection(('127.0.0.1', 9))",
        "import subprocess\nsubprocess.run(['true'])",
        "import ctypes\nctypes.CDLL(None).getpid()",
        "import resource\nresource.setrlimit(resource.RLIMIT_AS, (-1, -1))",
    ],
    ids=["network", "subprocess", "ctypes", "rlimit"],
)
def test_network_processes_ctypes_and_limits_are_out_of_reach(tmp_path: Path, attack: str) -> None:
    with pytest.raises(FeatureCodeError, match="PermissionError"):
        contained(tmp_path, hostile_source(at_import=attack))


@pytest.mark.parametrize("isolation", ["process", "thread"])
def test_a_package_that_rebinds_its_self_test_is_still_judged(
    tmp_path: Path, isolation: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Under ``thread`` the rebinding lands in this interpreter: put the original back afterwards.
    monkeypatch.setattr(LoadedPackage, "run_selftest", LoadedPackage.run_selftest)
    rebind = (
        "from pitahaya.client_runtime import LoadedPackage\n"
        "import pitahaya.client_runtime.selftest as st\n"
        "LoadedPackage.run_selftest = lambda self: None\n"
    )
    if (
        isolation == "process"
    ):  # in the host's interpreter the judge itself can be rebound: thread mode is for trusted code
        rebind += "st.judge = lambda *a, **k: None\nst.check_answers = lambda *a, **k: None\n"
    with pytest.raises(SelfTestError):
        contained(tmp_path, hostile_source(at_import=rebind), isolation=isolation, golden_shift=5.0)


def test_garbage_predictions_are_inference_errors(tmp_path: Path) -> None:
    # A feature row of NaN: the model's answer is NaN, which the runtime refuses (tested there);
    # here the container passes numbers through untouched and reports their count faithfully.
    package = contained(tmp_path, hostile_source(in_transform="out[:] = float('nan')\nreturn"))
    try:
        answer = package.predict(CANDIDATES, 1.7e9, later() + 5)
        assert len(answer) == len(CANDIDATES) and all(x != x for x in answer)
    finally:
        package.close()


def test_the_worker_gets_no_secrets_of_the_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PITAHAYA_REGISTRY_TOKEN", "host-secret-token")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "host-secret-key")
    leak = (
        "import os\nif any(v.startswith('host-secret') for v in os.environ.values()):\n    raise RuntimeError('leaked')"
    )
    contained(tmp_path, hostile_source(at_import=leak)).close()


def test_the_worker_ends_with_its_host(tmp_path: Path) -> None:
    """A host that dies without closing leaves no worker behind (it watches the control pipe)."""
    import subprocess
    import sys

    script = (
        "import sys, os; sys.path[:0] = sys.argv[2:]\n"
        "from test_containment import contained\n"
        "from package_factory import hostile_source\n"
        "from pathlib import Path\n"
        "p = contained(Path(sys.argv[1]), hostile_source(in_transform='while True:\\n    pass'))\n"
        "print(p._backend.pid, flush=True)\n"
        "os._exit(0)\n"
    )
    here = str(Path(__file__).parent)
    out = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path), here], capture_output=True, text=True, timeout=120
    )
    worker = int(out.stdout.split()[0])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.kill(worker, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    os.kill(worker, signal.SIGKILL)
    pytest.fail("the worker outlived its host")


def test_the_channel_carries_every_output_of_a_row_and_refuses_an_answer_of_another_shape() -> None:
    """A worker answering 2 rows x 3 outputs with features is read back exactly; an answer
    claiming another number of outputs (a worker whose model is not the manifest's) fails the step."""
    fd, page = wire.open_page()
    try:
        predictions = np.arange(6, dtype=np.float32) + 0.5
        features = np.arange(8, dtype=np.float32).reshape(2, 4)
        wire.write_response(page, 1, 2, predictions, features)
        values, got_features = wire.read_response(page, 2, 3, 4)
        assert values == tuple(predictions.tolist())
        assert got_features is not None and (got_features == features).all()
        with pytest.raises(wire.StepFailed, match="2 x 3 outputs"):
            wire.read_response(page, 2, 1, 0)
    finally:
        page.close()
        os.close(fd)
