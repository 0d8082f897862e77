import dataclasses
import functools
import hashlib
import json

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from pitahaya.client_runtime import PackageFormatError, Scene, build_archive, read_package
from pitahaya.client_runtime.package import (
    MAX_JSON_DEPTH,
    MAX_MANIFEST_BYTES,
    SELFTEST_FILE,
    Package,
    file_entry,
    parse_version,
)

from package_factory import make_archive
from raw_archives import archive_with_manifest, nested, with_member


def test_archive_round_trip_verifies_every_file(archive: bytes) -> None:
    package = read_package(archive)
    assert package.manifest.scene == "watch_time"
    assert package.manifest.version == "1.0.0"
    assert package.sha256 == hashlib.sha256(archive).hexdigest()
    assert set(package.files) == {"model.onnx", "features.py", "selftest.json"}


def test_build_is_reproducible() -> None:
    assert make_archive() == make_archive()


@pytest.mark.parametrize("offset", [0, 100, -40])
def test_any_flipped_byte_is_refused(archive: bytes, offset: int) -> None:
    tampered = bytearray(archive)
    tampered[offset] ^= 0x01
    with pytest.raises(PackageFormatError):
        read_package(bytes(tampered))


def test_version_parsing_orders_numerically() -> None:
    assert parse_version("1.10.0") > parse_version("1.9.3")
    with pytest.raises(ValueError):
        parse_version("1.0")


@functools.cache
def _valid_package() -> Package:
    return read_package(make_archive())


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 1_000, 200_000])
def test_a_manifest_nested_too_deeply_is_a_format_error_not_a_recursion_error(depth: int) -> None:
    manifest = with_member(_valid_package().manifest.to_json(), "deep", nested(depth))
    with pytest.raises(PackageFormatError, match="deeper than"):
        read_package(archive_with_manifest(manifest, _valid_package().files))


@pytest.mark.parametrize("number", [b"NaN", b"Infinity", b"-Infinity", b"1e309"])
@pytest.mark.parametrize("member", ["metrics", "policy"])
def test_a_manifest_holding_a_non_finite_number_is_refused(member: str, number: bytes) -> None:
    # A NaN planner knob would make every decision fail outside the package's code, forever.
    manifest = json.loads(_valid_package().manifest.to_json())
    manifest[member]["safety" if member == "policy" else "mae_s"] = "__NUMBER__"
    raw = json.dumps(manifest).encode().replace(b'"__NUMBER__"', number)
    with pytest.raises(PackageFormatError, match="NaN or an infinity"):
        read_package(archive_with_manifest(raw, _valid_package().files))


def test_a_manifest_over_the_format_limit_is_refused_however_well_it_compresses() -> None:
    padded = with_member(_valid_package().manifest.to_json(), "pad", b'"' + b" " * MAX_MANIFEST_BYTES + b'"')
    archive = archive_with_manifest(padded, _valid_package().files)
    assert len(archive) < 16 * 1024  # the row it would have stored is a thousand times larger
    with pytest.raises(PackageFormatError, match="manifest.json is .* bytes"):
        read_package(archive)


@settings(max_examples=20, deadline=None)
@given(depth=st.integers(min_value=1, max_value=3 * MAX_JSON_DEPTH))
@example(depth=MAX_JSON_DEPTH)
@example(depth=MAX_JSON_DEPTH + 1)
@example(depth=200_000)
def test_selftest_json_parses_up_to_the_depth_limit_and_is_a_format_error_past_it(depth: int) -> None:
    payload = {**_valid_package().files, SELFTEST_FILE: nested(depth)}
    manifest = dataclasses.replace(
        _valid_package().manifest, files={name: file_entry(data) for name, data in payload.items()}
    )
    package = read_package(build_archive(manifest, payload))
    if depth <= MAX_JSON_DEPTH:
        assert package.selftest == json.loads(nested(depth))
    else:
        with pytest.raises(PackageFormatError, match="deeper than"):
            package.selftest  # noqa: B018 - the property parses


@functools.cache
def _quantile_package() -> Package:
    return read_package(make_archive(quantiles=(0.2, 0.8)))


def test_quantile_levels_round_trip_and_a_point_only_manifest_does_not_mention_them() -> None:
    manifest = _quantile_package().manifest
    assert manifest.quantiles == (0.2, 0.8) and manifest.outputs == 3
    assert json.loads(manifest.to_json())["quantiles"] == [0.2, 0.8]
    assert "quantiles" not in json.loads(_valid_package().manifest.to_json())  # old manifests keep their bytes
    assert _valid_package().manifest.quantiles == () and _valid_package().manifest.outputs == 1


@pytest.mark.parametrize(
    "levels",
    [[0.8, 0.2], [0.2, 0.2], [0.0, 0.5], [0.5, 1.0], [-0.5], [True], ["0.2"], [None], 0.2, {"q": 0.2}, [0.1] * 9],
)
def test_quantile_levels_a_device_cannot_read_are_refused(levels: object) -> None:
    manifest = json.loads(_quantile_package().manifest.to_json())
    manifest["quantiles"] = levels
    with pytest.raises(PackageFormatError, match="quantile levels"):
        read_package(archive_with_manifest(json.dumps(manifest).encode(), _quantile_package().files))


def test_a_manifest_whose_output_has_no_column_per_quantile_is_refused() -> None:
    manifest = json.loads(_quantile_package().manifest.to_json())
    manifest["output"]["shape"] = [None, 2]
    with pytest.raises(PackageFormatError, match=r"outputs float32 \[N, 3\]"):
        read_package(archive_with_manifest(json.dumps(manifest).encode(), _quantile_package().files))


def test_a_scene_declares_its_quantile_levels_in_scene_toml(tmp_path) -> None:
    (tmp_path / "features.py").write_text("")
    toml = tmp_path / "scene.toml"
    toml.write_text('[scene]\nname = "s"\nquantiles = [0.2, 0.8]\n')
    assert Scene.load(tmp_path).quantiles == (0.2, 0.8)
    toml.write_text('[scene]\nname = "s"\n')
    assert Scene.load(tmp_path).quantiles == ()
    toml.write_text('[scene]\nname = "s"\nquantiles = [0.8, 0.2]\n')
    with pytest.raises(ValueError, match=r"scene.toml: \[scene\] quantiles: quantile levels must be"):
        Scene.load(tmp_path)


def test_a_scene_whose_policy_names_a_level_it_does_not_predict_is_refused(tmp_path) -> None:
    (tmp_path / "features.py").write_text("")
    toml = tmp_path / "scene.toml"
    toml.write_text('[scene]\nname = "s"\nquantiles = [0.2, 0.8]\n[policy]\nbuffer_quantile = 0.5\n')
    with pytest.raises(ValueError, match=r"\[policy\]: buffer_quantile 0.5 is not one of the model's quantile levels"):
        Scene.load(tmp_path)
    toml.write_text('[scene]\nname = "s"\n[policy]\npreload_quantile = 0.2\n')
    with pytest.raises(ValueError, match=r"preload_quantile 0.2 is not one of the model's quantile levels \[\]"):
        Scene.load(tmp_path)
