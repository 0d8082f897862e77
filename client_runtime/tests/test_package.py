import dataclasses
import functools
import hashlib
import json

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from pitahaya.client_runtime import PackageFormatError, build_archive, read_package
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
