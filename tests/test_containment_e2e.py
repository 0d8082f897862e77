"""Hostile publisher code end to end: a real registry process, real devices, packages that attack.

Each scenario is what an attacker holding a valid publisher token can ship: the scene's real
``features.py`` with hostile code added, pushed with a publisher token, released by an
operator, and pulled by a real `Runtime` over HTTP and TUF. The golden vectors are computed
from the scene's honest feature code (``package_factory.make_archive``), so code that behaves
during the self-test and misbehaves afterwards passes it, as it would in the field.

The module's registry runs with its pre-flight off (``PITAHAYA_PREFLIGHT_ENABLED=false``), the
way a compromised or older registry would serve these packages: what is shown here is what
the device itself guarantees. In every scenario the test process (the host app) survives, the
device answers with the right reason code within its deadline plus some slack, its worker
processes end, and a following good release and then the kill switch still reach it. The last
test turns the pre-flight on and shows the registry refusing at push what it detects.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import os
import secrets
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest

from pitahaya.cli._server import registry_process
from pitahaya.client_runtime import Candidate, Limits, Runtime, RuntimeConfig, Scene
from pitahaya.client_runtime.containment import CALL_TIMEOUT_KEY
from pitahaya.client_runtime.state import Mode
from pitahaya.publisher import RegistryClient, RegistryRejected

from package_factory import SCENE_DIR, make_archive, sample_views, scene_policy

pytestmark = pytest.mark.e2e

SCENE = "watch_time"
WATCH_TIME = Scene.load(SCENE_DIR)
#: What the self-test of a `make_archive` package runs: one case folding in this many views
#: and one ``transform``. Hostile code counts its calls and strikes after these.
SELFTEST_UPDATES = len(sample_views())
SELFTEST_TRANSFORMS = 1

LOAD_TIMEOUT_S = 4.0
#: The devices' own deadline is patient, so an honest package never times out on a busy machine ...
LIMITS = Limits(call_timeout_s=10.0, max_call_timeout_s=10.0, load_timeout_s=LOAD_TIMEOUT_S, kill_after_s=1.0)
#: ... while hostile packages ask for a 200 ms deadline per call (their policy), which a stall misses by far.
POLICY = {**scene_policy(), CALL_TIMEOUT_KEY: 200}
CALL_TIMEOUT_S = LIMITS.for_policy(POLICY).call_timeout_s
#: Generous bounds on a busy machine: a call returns within its deadline plus this ...
CALL_SLACK_S = 3.0
#: ... and a refresh (TUF round trips, worker start, load) within the load deadline plus this.
LOAD_SLACK_S = 8.0
#: Consecutive failed calls that take a package out of service on these devices.
BREAKER_FAILURES = 3
T = TypeVar("T")
CANDIDATES = [Candidate("next-1", 30.0, 3_000_000), Candidate("next-2", 12.0, 1_200_000)]


# ------------------------------------------------------------------------ hostile code
def feature_code(*, module: str = "", update: str = "", transform: str = "") -> str:
    """The scene's real ``features.py`` with code added at import, atop ``update()`` or atop ``transform()``.

    Every variant also gets ``import time`` and a call counter ``_CALLS`` at import.
    """
    source = WATCH_TIME.feature_source
    prelude = "import time\n_CALLS = {'update': 0, 'transform': 0}\n" + textwrap.dedent(module)
    for anchor, code, indent in (
        ("from pitahaya.client_runtime import FeatureExtractor\n", prelude, ""),
        ("    def update(self, view):\n", update, " " * 8),
        ("    def transform(self, candidates, now, out):\n", transform, " " * 8),
    ):
        assert anchor in source, f"the scene's features.py changed: {anchor!r} not found"
        if code:
            source = source.replace(anchor, anchor + textwrap.indent(textwrap.dedent(code).strip("\n") + "\n", indent))
    return source


def after_selftest(method: str, action: str) -> str:
    """Body of ``method`` that behaves during the self-test and runs ``action`` on every later call."""
    honest_calls = SELFTEST_UPDATES if method == "update" else SELFTEST_TRANSFORMS
    counted = f"_CALLS[{method!r}] += 1\nif _CALLS[{method!r}] > {honest_calls}:\n"
    return counted + textwrap.indent(textwrap.dedent(action).strip("\n"), "    ") + "\n"


LOOP = "while True:\n    pass"


def build(version: str, feature_source: str | None = None, *, golden_shift: float = 0.0) -> bytes:
    """A tiny real package of the scene (golden vectors from its honest code); hostile code asks
    for `POLICY`'s short deadline, the honest scene code keeps the device's."""
    policy = None if feature_source is None else POLICY
    return make_archive(version=version, feature_source=feature_source, golden_shift=golden_shift, policy=policy)


# ------------------------------------------------------------------------ the registry
@dataclass
class Registry:
    """One registry process for the module; each scenario pushes and releases new versions."""

    url: str
    trusted_root: bytes
    publisher: RegistryClient
    operator: RegistryClient
    numbers: Iterator[int]
    base: str = "1.0.0"

    def next_version(self) -> str:
        return f"2.{next(self.numbers)}.0"

    def publish(self, feature_source: str | None = None) -> str:
        """Build a new version around ``feature_source``, push and release it; its version."""
        return self.push_and_release(build(self.next_version(), feature_source))

    def push_and_release(self, archive: bytes) -> str:
        """Push with the publisher's token, release to every device (operator); the version."""
        version = str(self.publisher.push(archive)["version"])
        self.release(version)
        return version

    def release(self, version: str) -> None:
        self.operator.create_release(SCENE, version)

    def kill_switch(self) -> None:
        self.operator.set_kill_switch(SCENE, True)


@contextlib.contextmanager
def running_registry(data_dir: Path, **settings: str) -> Iterator[Registry]:
    """A registry process with these settings (``PITAHAYA_<NAME>``), publisher and operator tokens, and 1.0.0 pushed."""
    admin_token = secrets.token_urlsafe(24)
    with contextlib.ExitStack() as stack:
        with pytest.MonkeyPatch.context() as env:  # only the registry process sees them
            for name, value in settings.items():
                env.setenv(f"PITAHAYA_{name.upper()}", value)
            url = stack.enter_context(registry_process(data_dir, admin_token))
        admin = stack.enter_context(RegistryClient(url, token=admin_token))
        publisher = stack.enter_context(
            RegistryClient(url, token=admin.create_token("ci-publisher", "publisher")["secret"])
        )
        operator = stack.enter_context(
            RegistryClient(url, token=admin.create_token("release-operator", "operator")["secret"])
        )
        publisher.push(build("1.0.0"))
        yield Registry(url, admin.root_metadata(), publisher, operator, itertools.count(1))


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """The module's registry, with its pre-flight off: hostile packages reach the devices."""
    with running_registry(tmp_path_factory.mktemp("containment-registry"), preflight_enabled="false") as running:
        yield running


@pytest.fixture
def new_device(registry: Registry, tmp_path: Path) -> Iterator[Callable[..., Runtime]]:
    """Build devices with a fresh cache each, trusting the registry's root; all closed at the end."""
    made: list[Runtime] = []

    def make(*, isolation: str = "process", limits: Limits = LIMITS) -> Runtime:
        home = tmp_path / f"device-{len(made)}"
        config = RuntimeConfig(breaker_failures=BREAKER_FAILURES, breaker_reset_s=600.0, limits=limits)
        device = Runtime(
            registry.url,
            SCENE,
            f"{tmp_path.name}-{len(made)}",
            cache_dir=home,
            trusted_root=registry.trusted_root,
            config=config,
            isolation=isolation,  # type: ignore[arg-type]
        )
        made.append(device)
        return device

    yield make
    for device in made:
        device.close()


# ------------------------------------------------------------------------ checks
def workers(home: Path, version: str | None = None) -> list[int]:
    """Live worker processes of the device at ``home`` (optionally of one version), by their folder."""
    sandbox = str(home / "sandbox") + os.sep + (f"{version}-" if version else "")
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            if state != "Z" and os.readlink(entry / "cwd").startswith(sandbox):
                found.append(int(entry.name))
        except OSError:
            continue  # gone meanwhile, or not ours
    return found


def wait_until_no_workers(home: Path, version: str | None = None, *, within_s: float) -> None:
    if not sys.platform.startswith("linux"):
        return
    deadline = time.monotonic() + within_s
    while (left := workers(home, version)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not left, f"worker processes {left} still running {within_s:g} s on"


def rss_bytes() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def timed(call: Callable[[], T]) -> tuple[T, float]:
    started = time.monotonic()
    result = call()
    return result, time.monotonic() - started


def assert_refused(device: Runtime, version: str, reason: str) -> None:
    """The released ``version`` is refused with ``reason`` in time, and the default policy answers."""
    event, took = timed(device.refresh)
    assert (event.outcome, event.version, event.reason) == ("rejected", version, reason), event
    assert took < LOAD_TIMEOUT_S + LOAD_SLACK_S
    decision, took = timed(lambda: device.predict(CANDIDATES))
    assert (decision.reason, decision.package_version, decision.watch_s) == (reason, None, None)
    assert took < CALL_TIMEOUT_S + CALL_SLACK_S
    again = device.refresh()  # remembered as bad: not loaded again
    assert (again.outcome, again.version, again.reason) == ("rejected", version, reason)
    wait_until_no_workers(device.cache_dir, version, within_s=5.0)


def assert_fails_every_call(device: Runtime, version: str, reason: str) -> None:
    """The released ``version`` installs, every call falls back with ``reason``, repeated failures open the circuit."""
    event = device.refresh()
    assert (event.outcome, event.version) == ("installed", version), event
    for _ in range(BREAKER_FAILURES):
        decision, took = timed(lambda: device.predict(CANDIDATES))
        assert (decision.reason, decision.package_version, decision.watch_s) == (reason, None, None)
        assert took < CALL_TIMEOUT_S + CALL_SLACK_S
    assert device.mode is Mode.CIRCUIT_OPEN
    decision = device.predict(CANDIDATES)
    assert (decision.reason, decision.package_version) == ("circuit_open", None)


def assert_good_release_and_kill_switch_get_through(device: Runtime, registry: Registry) -> None:
    """After the attack: a new good release installs and answers, then the kill switch takes over."""
    good = registry.publish()
    event = device.refresh()
    assert (event.outcome, event.version, event.reason) == ("installed", good, "ok"), event
    decision = device.predict(CANDIDATES)
    assert (decision.reason, decision.package_version) == ("ok", good)
    assert decision.watch_s is not None and len(decision.watch_s) == len(CANDIDATES)
    registry.kill_switch()
    event = device.refresh()
    assert (event.outcome, event.reason) == ("default_policy", "kill_switch"), event
    decision = device.predict(CANDIDATES)
    assert (decision.reason, decision.package_version, decision.watch_s) == ("kill_switch", None, None)
    device.close()
    wait_until_no_workers(device.cache_dir, within_s=LOAD_TIMEOUT_S + 5.0)


def record_views(device: Runtime, n: int = 8) -> None:
    """Views the device saw before the refresh: the new package's load replays them."""
    for view in sample_views("device-user", n=n):
        device.record(view)


# ------------------------------------------------------------------------ deadlines
@pytest.mark.parametrize(
    ("stall", "last_good"),
    [("time.sleep(30)", True), (LOOP, False)],
    ids=["sleep-demoted-to-last-good", "busy-loop-circuit-opens"],
)
def test_feature_code_past_the_deadline_gets_the_default_within_the_deadline_and_is_taken_out_of_service(
    registry: Registry, new_device: Callable[..., Runtime], stall: str, last_good: bool
) -> None:
    device = new_device()
    if last_good:
        registry.release(registry.base)
        assert device.refresh().outcome == "installed"
    version = registry.publish(feature_code(transform=after_selftest("transform", stall)))
    event = device.refresh()
    assert (event.outcome, event.version) == ("installed", version), event
    for call in range(BREAKER_FAILURES):
        decision, took = timed(lambda: device.predict(CANDIDATES))
        assert decision.reason == "timeout"
        assert took < CALL_TIMEOUT_S + CALL_SLACK_S  # the stall is 30 s or forever
        # The first call uses up its deadline; later ones find the worker busy and fail at once,
        # leaving time for the last-known-good package to answer within the same call.
        expected = registry.base if last_good and call > 0 else None
        assert decision.package_version == expected
    if last_good:
        assert (device.mode, device.active_version, device.last_known_good_version) == (
            Mode.ACTIVE,
            registry.base,
            None,
        )
        decision = device.predict(CANDIDATES)
        assert (decision.reason, decision.package_version) == ("ok", registry.base)
        again = device.refresh()  # the demoted version is remembered as bad
        assert (again.outcome, again.version, again.reason) == ("rejected", version, "timeout")
    else:
        assert (device.mode, device.active_version) == (Mode.CIRCUIT_OPEN, version)
        assert device.predict(CANDIDATES).reason == "circuit_open"
    # The stuck worker is killed kill_after_s past the deadline, not left to run.
    wait_until_no_workers(device.cache_dir, version, within_s=LIMITS.kill_after_s + 5.0)
    assert_good_release_and_kill_switch_get_through(device, registry)


def test_a_single_timeout_does_not_take_the_package_out_of_service(
    registry: Registry, new_device: Callable[..., Runtime]
) -> None:
    device = new_device(limits=dataclasses.replace(LIMITS, kill_after_s=5.0))
    hiccup = "_CALLS['transform'] += 1\nif _CALLS['transform'] == 2:\n    time.sleep(0.5)\n"
    version = registry.publish(feature_code(transform=hiccup))
    assert device.refresh().outcome == "installed"
    decision, took = timed(lambda: device.predict(CANDIDATES))
    assert (decision.reason, decision.package_version) == ("timeout", None)
    assert took < CALL_TIMEOUT_S + CALL_SLACK_S
    time.sleep(1.5)  # the worker finishes its 0.5 s call (well before kill_after_s)
    for _ in range(BREAKER_FAILURES + 1):
        decision = device.predict(CANDIDATES)
        assert (decision.reason, decision.package_version) == ("ok", version)
    assert (device.mode, device.active_version) == (Mode.ACTIVE, version)
    assert_good_release_and_kill_switch_get_through(device, registry)


# ------------------------------------------------------------------------ loads that never end
@pytest.mark.parametrize(
    ("source", "replay"),
    [
        (feature_code(module=LOOP), False),
        (feature_code(transform=LOOP), False),  # from the first call: the self-test's
        (feature_code(update=after_selftest("update", LOOP)), True),
    ],
    ids=["at-import", "in-transform", "in-update-during-replay"],
)
def test_a_load_that_never_ends_is_abandoned_at_the_load_deadline(
    registry: Registry, new_device: Callable[..., Runtime], source: str, replay: bool
) -> None:
    device = new_device()
    if replay:
        record_views(device)
    assert_refused(device, registry.publish(source), "load_timeout")
    assert_good_release_and_kill_switch_get_through(device, registry)


def test_a_hanging_load_leaves_the_active_package_answering(
    registry: Registry, new_device: Callable[..., Runtime]
) -> None:
    device = new_device()
    registry.release(registry.base)
    assert device.refresh().outcome == "installed"
    record_views(device)
    version = registry.publish(feature_code(update=after_selftest("update", LOOP)))
    event, took = timed(device.refresh)
    assert (event.outcome, event.version, event.reason) == ("rejected", version, "load_timeout")
    assert took < LOAD_TIMEOUT_S + LOAD_SLACK_S
    decision = device.predict(CANDIDATES)
    assert (decision.reason, decision.package_version) == ("ok", registry.base)
    assert_good_release_and_kill_switch_get_through(device, registry)


# ------------------------------------------------------------------------ SystemExit, KeyboardInterrupt
RAISING = [
    ("import", "SystemExit", "feature_code"),
    ("import", "KeyboardInterrupt", "feature_code"),
    ("transform", "SystemExit", "inference_error"),
    ("transform", "KeyboardInterrupt", "inference_error"),
    ("update-replay", "SystemExit", "feature_code"),
    ("update-replay", "KeyboardInterrupt", "feature_code"),
    ("update-serving", "SystemExit", "inference_error"),
]
#: Every case on a worker thread (the host's own interpreter); in a worker process one
#: exception per place is enough (the worker catches them all the same way).
RAISING_CASES = [("thread", *case) for case in RAISING] + [
    ("process", *case) for case in RAISING if (case[0] == "transform") == (case[1] == "KeyboardInterrupt")
]


@pytest.mark.parametrize(
    ("isolation", "where", "exception", "reason"), RAISING_CASES, ids=["-".join(case[:3]) for case in RAISING_CASES]
)
def test_system_exit_and_keyboard_interrupt_never_reach_the_host(
    registry: Registry, new_device: Callable[..., Runtime], isolation: str, where: str, exception: str, reason: str
) -> None:
    raise_it = f"raise {exception}(3)" if exception == "SystemExit" else f"raise {exception}()"
    device = new_device(isolation=isolation)
    if where == "import":
        source = feature_code(module=raise_it)
    elif where == "transform":
        source = feature_code(transform=after_selftest("transform", raise_it))
    else:
        source = feature_code(update=after_selftest("update", raise_it))
    if where == "update-replay":
        record_views(device)
    if where in ("import", "update-replay"):
        assert_refused(device, registry.publish(source), reason)
    elif where == "transform":
        assert_fails_every_call(device, registry.publish(source), reason)
    else:  # views recorded once it serves are folded in at the next call
        version = registry.publish(source)
        assert device.refresh().outcome == "installed"
        record_views(device)
        for _ in range(BREAKER_FAILURES):
            decision = device.predict(CANDIDATES)
            assert (decision.reason, decision.package_version) == (reason, None)
        assert (device.mode, device.active_version) == (Mode.CIRCUIT_OPEN, version)
    assert_good_release_and_kill_switch_get_through(device, registry)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the worker processes in /proc")
def test_feature_code_that_kills_its_worker_gets_worker_lost_and_a_restarted_worker(
    registry: Registry, new_device: Callable[..., Runtime]
) -> None:
    device = new_device()
    version = registry.publish(feature_code(transform=after_selftest("transform", "import os\nos._exit(7)")))
    assert_fails_every_call(device, version, "worker_lost")
    deadline = time.monotonic() + LOAD_TIMEOUT_S + 5.0
    while not workers(device.cache_dir, version) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert workers(device.cache_dir, version), "the lost worker was not restarted"
    assert_good_release_and_kill_switch_get_through(device, registry)


# ------------------------------------------------------------------------ memory
def hog(chunk_mib: int) -> str:
    """Allocate and touch up to 1 GiB in ``chunk_mib`` pieces, holding on to them."""
    return f"_HOG = []\nfor _ in range({1024 // chunk_mib}):\n    _HOG.append(bytearray(b'x') * ({chunk_mib} << 20))"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="address-space limits and /proc are Linux's")
@pytest.mark.parametrize(
    ("where", "reason"),
    [("import", "resource_limit"), ("transform", "inference_error")],
    ids=["at-import", "in-transform"],
)
def test_unbounded_allocation_is_stopped_in_the_worker(
    registry: Registry, new_device: Callable[..., Runtime], where: str, reason: str
) -> None:
    """Up to 1 GiB, touched, against a 64 MiB limit: the worker fails alone, the host does not grow."""
    device = new_device(limits=dataclasses.replace(LIMITS, memory_bytes=64 << 20))
    before = rss_bytes()
    if where == "import":
        assert_refused(device, registry.publish(feature_code(module=hog(16))), reason)
    else:  # pieces past the limit: each call fails at once, well within its deadline
        source = feature_code(transform="global _HOG\n" + after_selftest("transform", hog(128)))
        assert_fails_every_call(device, registry.publish(source), reason)
    assert rss_bytes() - before < 32 << 20
    assert_good_release_and_kill_switch_get_through(device, registry)


# ------------------------------------------------------------------------ the self-test
REBIND_SELFTEST = """
import sys

def _passes(*args, **kwargs):
    return None

for _name, _module in list(sys.modules.items()):
    if _name.startswith('pitahaya.client_runtime') and _module is not None:
        for _check in ('judge', 'check_answers'):
            if hasattr(_module, _check):
                setattr(_module, _check, _passes)
from pitahaya.client_runtime.loader import LoadedPackage
LoadedPackage.run_selftest = _passes
"""


#: The self-test as it ran before containment, in the interpreter of the package's code: an
#: honest package with wrong vectors fails it, the rebinding one passes.
SELFTEST_IN_ITS_OWN_INTERPRETER = """
import sys
from pitahaya.client_runtime import LoadedPackage, SelfTestError, read_package

honest, hostile = (read_package(open(path, 'rb').read()) for path in sys.argv[1:])
try:
    LoadedPackage.load(honest)
except SelfTestError:
    pass
else:
    sys.exit('the wrong golden vectors passed')
LoadedPackage.load(hostile)
"""


def test_a_package_that_rebinds_its_self_test_is_still_judged_and_refused(
    registry: Registry, new_device: Callable[..., Runtime], tmp_path: Path
) -> None:
    """Wrong golden vectors plus code that disables every self-test check it can reach."""
    version = registry.next_version()
    hostile = build(version, feature_code(module=REBIND_SELFTEST), golden_shift=5.0)
    paths = tmp_path / "honest.tar.xz", tmp_path / "hostile.tar.xz"
    paths[0].write_bytes(build(version, golden_shift=5.0))
    paths[1].write_bytes(hostile)
    fooled = subprocess.run(
        [sys.executable, "-c", SELFTEST_IN_ITS_OWN_INTERPRETER, *map(str, paths)], capture_output=True, timeout=120
    )
    assert fooled.returncode == 0, fooled.stderr.decode()[-2000:]  # the attack works there ...
    device = new_device()
    assert_refused(device, registry.push_and_release(hostile), "self_test")  # ... not on a device
    assert_good_release_and_kill_switch_get_through(device, registry)


# ------------------------------------------------------------------------ files
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the worker's file walls are Linux's")
def test_feature_code_cannot_write_outside_its_folder(
    registry: Registry, new_device: Callable[..., Runtime], tmp_path: Path
) -> None:
    """Every write it tries (at import and in each call) is refused; its own folder stays writable."""
    outside = tmp_path / "outside"
    outside.mkdir()
    device = new_device()
    state = device.cache_dir / "state.json"
    escape = f"""
    import os
    import pathlib
    import subprocess

    def _escape(tag):
        target = pathlib.Path({str(outside)!r})
        attempts = (
            lambda: open(target / (tag + '-open'), 'w').write('x'),
            lambda: os.close(os.open(target / (tag + '-os-open'), os.O_CREAT | os.O_WRONLY)),
            lambda: (target / (tag + '-write-text')).write_text('x'),
            lambda: os.mkdir(target / (tag + '-dir')),
            lambda: os.symlink('/etc/passwd', target / (tag + '-link')),
            lambda: subprocess.run(['touch', str(target / (tag + '-touch'))]),
            lambda: open({str(state)!r}, 'a').write('pwned'),
        )
        refused = []
        for attempt in attempts:
            try:
                attempt()
            except BaseException as e:
                refused.append(type(e).__name__)
        pathlib.Path(tag + '-refused').write_text('\\n'.join(refused))  # its own folder (the cwd)

    _escape('import')
    """
    version = registry.publish(feature_code(module=escape, transform="_escape('call')"))
    event = device.refresh()
    assert (event.outcome, event.version) == ("installed", version), event
    for _ in range(3):
        decision = device.predict(CANDIDATES)
        assert (decision.reason, decision.package_version) == ("ok", version)
    assert list(outside.iterdir()) == []
    assert "pwned" not in state.read_text()
    (folder,) = (device.cache_dir / "sandbox").glob(f"{version}-*")
    for tag in ("import", "call"):  # the code ran, and each of its 7 attempts raised
        assert len((folder / f"{tag}-refused").read_text().split()) == 7
    assert_good_release_and_kill_switch_get_through(device, registry)
    assert list(outside.iterdir()) == []


# ------------------------------------------------------------------------ the registry's pre-flight
def test_with_its_pre_flight_on_the_registry_refuses_at_push_what_a_device_would(tmp_path: Path) -> None:
    """Refused with 422 and audited; nothing of it can be released or reaches a device. What
    behaves during its self-test passes, and the device contains it."""
    refused = {  # (version, reason): the reasons' full range is in registry/tests/test_preflight.py
        ("2.1.0", "load_timeout"): build("2.1.0", feature_code(module=LOOP)),
        ("2.2.0", "self_test"): build("2.2.0", feature_code(module=REBIND_SELFTEST), golden_shift=5.0),
    }
    settings = {"preflight_enabled": "true", "preflight_load_timeout_seconds": str(LOAD_TIMEOUT_S)}
    with running_registry(tmp_path / "registry", **settings) as registry:
        device = Runtime(
            registry.url,
            SCENE,
            "preflight-device",
            cache_dir=tmp_path / "device",
            trusted_root=registry.trusted_root,
            config=RuntimeConfig(limits=LIMITS),
        )
        try:
            registry.release(registry.base)
            assert device.refresh().outcome == "installed"
            for archive in refused.values():
                with pytest.raises(RegistryRejected) as rejected:
                    registry.publisher.push(archive)
                assert rejected.value.status_code == 422, rejected.value
            audited = [
                (entry["detail"]["version"], entry["detail"]["reason"])
                for entry in registry.operator.list_audit_entries()
                if entry["action"] == "refuse_package"
            ]
            assert sorted(audited) == sorted(refused)
            assert [package["version"] for package in registry.operator.list_packages(SCENE)] == [registry.base]
            for version, _ in refused:
                with pytest.raises(RegistryRejected) as unknown:
                    registry.release(version)
                assert unknown.value.status_code == 404
            assert (device.refresh().outcome, device.active_version) == ("unchanged", registry.base)

            # Code that behaves during its self-test passes any pre-flight; the device contains it.
            sleeper = registry.publish(feature_code(transform=after_selftest("transform", "time.sleep(30)")))
            assert sleeper == "2.1.0"  # the refused push left nothing under its version
            assert (device.refresh().outcome, device.active_version) == ("installed", sleeper)
            decision, took = timed(lambda: device.predict(CANDIDATES))
            assert (decision.reason, decision.package_version) == ("timeout", None)  # its deadline used up
            assert took < CALL_TIMEOUT_S + CALL_SLACK_S
        finally:
            device.close()
        wait_until_no_workers(device.cache_dir, within_s=LOAD_TIMEOUT_S + 5.0)
