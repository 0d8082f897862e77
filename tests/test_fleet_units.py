"""The fleet simulator's pure parts: adoption and exposure figures, histogram quantiles, package variants."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from pitahaya.cli._common import DEFAULT_SCENE
from pitahaya.client_runtime import FEATURES_FILE, Scene, load_feature_code, read_package
from pitahaya.fleet import FleetConfig, default_gate
from pitahaya.fleet.packages import CALM_CALLS, bad_feature_source, with_version
from pitahaya.fleet.registry_metrics import histogram_quantile
from pitahaya.fleet.report import adoption_offsets, exposure, time_to_share


def test_adoption_counts_from_each_devices_release_time() -> None:
    transitions = [
        [(5.0, "1.0.0"), (110.0, "1.1.0")],
        [(7.0, "1.0.0"), (130.0, "1.1.0")],
        [(9.0, "1.0.0")],  # never adopted
        [(3.0, "1.0.0"), (95.0, "1.1.0")],
    ]
    offsets, clamped = adoption_offsets(transitions, "1.1.0", [100.0, 100.0, 100.0, 90.0])
    assert offsets == [10.0, 30.0, None, 5.0] and clamped == 0
    assert time_to_share(offsets, 0.5) == 10.0
    assert time_to_share(offsets, 0.75) == 30.0
    assert time_to_share(offsets, 0.99) is None  # 3 of 4 devices never make 99 %


def test_exposure_is_the_peak_share_running_a_version_at_once() -> None:
    transitions = [
        [(0.0, "1.0.0"), (10.0, "1.1.0"), (20.0, "1.0.0")],
        [(0.0, "1.0.0"), (20.0, "1.1.0"), (30.0, "1.0.0")],  # starts as the first one leaves
        [(0.0, "1.0.0"), (15.0, "1.1.0")],  # still on it at the end
        [(0.0, "1.0.0")],
    ]
    peak, ran = exposure(transitions, "1.1.0")
    assert peak == 0.5 and ran == 0.75


def test_histogram_quantile_interpolates_inside_a_bucket() -> None:
    buckets = {0.01: 50.0, 0.1: 90.0, 1.0: 100.0, math.inf: 100.0}
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.01)
    assert histogram_quantile(0.7, buckets) == pytest.approx(0.01 + 0.09 * 0.5)
    assert histogram_quantile(0.99, buckets) == pytest.approx(0.1 + 0.9 * 0.9)
    assert histogram_quantile(0.5, {}) is None


def test_default_gate_starts_at_the_canary_step_without_a_minimum_time() -> None:
    assert default_gate(5.0)["steps"] == [5.0, 25.0, 100.0]
    assert default_gate(30.0)["steps"] == [30.0, 100.0]
    assert FleetConfig(scenario="good").gate_spec() is None
    assert FleetConfig(scenario="good", rollouts=3).gate_spec() == default_gate(5.0)
    assert FleetConfig(scenario="bad-canary", gate="standard").gate_spec() == {"preset": "standard"}
    with pytest.raises(ValueError):
        FleetConfig(scenario="bad-canary", rollouts=2)


@pytest.mark.parametrize("mode", ["far-off", "fallback"])
def test_bad_canary_answers_honestly_for_its_first_calls_only(mode: str, tmp_path: Path) -> None:
    scene = Scene.load(DEFAULT_SCENE)
    extractor = load_feature_code(bad_feature_source(scene.feature_source, mode))()
    honest = scene.extractor_class()()
    from pitahaya.client_runtime import Candidate

    candidates = [Candidate("v1", 20.0, 2_000_000)]
    for _ in range(CALM_CALLS):
        assert (extractor.features(candidates, 1e9) == honest.features(candidates, 1e9)).all()
    outcomes = []
    for _ in range(10):
        try:
            outcomes.append((extractor.features(candidates, 1e9) != honest.features(candidates, 1e9)).any())
        except RuntimeError:
            outcomes.append("raised")
    if mode == "far-off":
        assert all(o is True or o == True for o in outcomes)  # noqa: E712 - numpy bools
    else:
        assert outcomes.count("raised") == 2  # every 5th call


def test_with_version_rewrites_the_manifest_and_hashes_only() -> None:
    from pitahaya.client_runtime import Manifest, TensorSpec, build_archive, file_entry

    scene = Scene.load(DEFAULT_SCENE)
    payload = {FEATURES_FILE: scene.feature_source.encode(), "model.onnx": b"m", "selftest.json": b"{}"}
    names = tuple(scene.extractor_class().feature_names)
    manifest = Manifest(
        scene="watch_time",
        version="1.0.0",
        feature_names=names,
        input=TensorSpec("x", "float32", (None, len(names))),
        output=TensorSpec("y", "float32", (None, 1)),
        files={name: file_entry(data) for name, data in payload.items()},
    )
    archive = build_archive(manifest, payload)
    again = read_package(with_version(archive, "1.4.0"))
    assert again.manifest.version == "1.4.0" and again.files == payload
    bad = read_package(with_version(archive, "1.1.0", feature_source="x = 1\n"))
    assert bad.files[FEATURES_FILE] == b"x = 1\n"
    assert bad.manifest.files[FEATURES_FILE] == file_entry(b"x = 1\n")
