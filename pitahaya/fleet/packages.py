"""The packages a fleet run releases: one trained model, a stable version and its candidates.

One small model is trained on a generated log (fast settings) and packaged once with
`pitahaya.packaging.build_package`, parity gate included, as the stable version ``1.0.0``; it
is kept under ``<work>/model/`` and reused by later runs with the same seed. Candidates are the
same archive under a new version (`with_version`: manifest and file hashes rewritten, nothing
else), so a good candidate answers exactly as the stable one does.

The bad canary (`bad_feature_source`) is a copy of the scene's ``features.py`` that behaves for
its first `CALM_CALLS` calls, longer than the self-test any device or the registry's pre-flight
replays (one fresh extractor per case, a few calls each), then misbehaves on devices:

- ``fallback``: every `FAIL_EVERY`-th call raises, so that share of decisions falls back to the
  default policy (below the runtime's circuit breaker, 5 failures in 20 calls, so devices keep
  it: only the gate takes it away);
- ``far-off``: every feature is scaled by `FAR_OFF_SCALE`, so the model predicts far off the
  real watch time (online MAE up, nothing falls back).

Both pass the registry's pre-flight, as a subtle bug in real feature code would. The gate sees
both: the online error of ``far-off``, and the fallbacks of ``fallback`` (the last-known-good
package answers those calls, but telemetry counts them against the candidate that was asked).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

from pitahaya.client_runtime import FEATURES_FILE, build_archive, file_entry, read_package
from pitahaya.fleet.config import BAD_MODES, BadMode

#: Version of the package every device runs before the release.
STABLE_VERSION = "1.0.0"
#: Calls a bad canary's extractor answers honestly before it misbehaves.
CALM_CALLS = 3
#: In ``fallback`` mode, every this many calls one raises (1 in 5: a 20 % fallback rate).
FAIL_EVERY = 5
#: In ``far-off`` mode, every feature is multiplied by this.
FAR_OFF_SCALE = 4.0

_MODEL_VIEWS = 20_000
_MODEL_USERS = 120

_BAD_CODE = """

# ---- appended by the fleet simulator (pitahaya.fleet.packages): a bad canary ----------------
# The scene's extractor, honest for its first {calm} calls (what the self-test and the
# registry's pre-flight replay), then broken on devices ({mode!r}).
_SceneExtractor = Extractor


class Extractor(_SceneExtractor):
    def __init__(self):
        super().__init__()
        self._calls = 0

    def transform(self, candidates, now, out):
        self._calls += 1
        super().transform(candidates, now, out)
        if self._calls <= {calm}:
            return
        if {mode!r} == "fallback" and self._calls % {fail_every} == 0:
            raise RuntimeError("bad canary: feature code failed on this device")
        if {mode!r} == "far-off":
            out *= {scale!r}
"""


def candidate_version(index: int) -> str:
    """Version of the ``index``-th candidate (1-based): ``1.1.0``, ``1.2.0``, ..."""
    return f"1.{index}.0"


def with_version(archive: bytes, version: str, *, feature_source: str | None = None) -> bytes:
    """The same package under another version (and, if given, other feature code).

    Raises:
        pitahaya.client_runtime.PackageFormatError: ``archive`` is not a valid package.
    """
    package = read_package(archive)
    payload = dict(package.files)
    if feature_source is not None:
        payload[FEATURES_FILE] = feature_source.encode()
    files = {name: file_entry(data) for name, data in payload.items()}
    return build_archive(dataclasses.replace(package.manifest, version=version, files=files), payload)


def bad_feature_source(source: str, mode: BadMode) -> str:
    """``source`` (a scene's ``features.py``) turned into a bad canary's; see the module docstring."""
    if mode not in BAD_MODES:
        raise ValueError(f"bad mode must be one of {', '.join(BAD_MODES)}, got {mode!r}")
    return source + _BAD_CODE.format(calm=CALM_CALLS, mode=mode, fail_every=FAIL_EVERY, scale=FAR_OFF_SCALE)


def stable_package(
    work: Path, scene_path: Path, *, seed: int, progress: Callable[[str, float], None] | None = None
) -> bytes:
    """The stable package: trained and built once per seed under ``work/model``, then reused.

    Raises:
        pitahaya.training.TrainingError, pitahaya.packaging.PackagingError: training or packaging failed.
    """
    cached = work / "model" / f"watch_time-{STABLE_VERSION}-seed{seed}.tar.xz"
    if cached.is_file():
        return cached.read_bytes()
    from pitahaya.client_runtime import Scene
    from pitahaya.packaging import build_package
    from pitahaya.training import GeneratorConfig, TrainConfig, generate_views, train, write_events

    report = progress or (lambda stage, fraction: None)
    folder = work / "model" / f"seed{seed}"
    folder.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{(folder / 'mlflow.db').resolve()}"
    report("train a small model", 0.0)
    events = folder / "events.csv.gz"
    write_events(events, generate_views(GeneratorConfig(n_views=_MODEL_VIEWS, n_users=_MODEL_USERS, seed=seed)))
    trained = train(
        TrainConfig(
            scene=scene_path,
            tracking_uri=uri,
            events=events,
            artifact_location=(folder / "artifacts").resolve().as_uri(),
            seed=seed,
            run_name="fleet-simulator",
        ),
        progress=report,
    )
    built = build_package(
        run_id=trained.run_id,
        scene=Scene.load(scene_path),
        version=STABLE_VERSION,
        tracking_uri=uri,
        out_dir=folder,
        register=False,
        progress=report,
    )
    data = built.path.read_bytes()
    tmp = cached.with_suffix(".tmp")
    tmp.write_bytes(data)
    tmp.replace(cached)
    return data
