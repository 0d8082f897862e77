"""Properties of the package format: what `build_archive` writes `read_package` reads back the
same, and a manifest of any shape either parses or raises `PackageFormatError`, never anything
else (a device marks the version bad on that error; any other exception would be retried forever).
"""

from __future__ import annotations

import functools
import json
import lzma
import string
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from pitahaya.client_runtime import Manifest, PackageFormatError, TensorSpec, build_archive, file_entry, read_package
from pitahaya.client_runtime.package import PAYLOAD_FILES

from raw_archives import archive_with_manifest

#: Any JSON value Python writes and reads back equal (finite floats; lists, not tuples).
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
#: Values a hostile or broken manifest may hold where a field belongs: any JSON, and numbers past
#: what a float (or Python's int parser, over 4,300 digits) can take.
junk_values = json_values | st.integers(min_value=2**1024, max_value=2**1100) | st.integers(max_value=-(2**1024))
versions = st.tuples(*[st.integers(0, 999_999_999)] * 3).map(lambda t: ".".join(map(str, t)))
names = st.text(max_size=12)
shapes = st.lists(st.none() | st.integers(0, 4096), max_size=4).map(tuple)


@st.composite
def manifests(draw: st.DrawFn, files: dict[str, dict[str, Any]] | None = None) -> Manifest:
    """Any manifest `Manifest.from_dict` accepts (``files`` given: the entries of a real payload)."""
    feature_names = tuple(draw(st.lists(names, max_size=8)))
    hexes = st.text(alphabet="0123456789abcdef", min_size=64, max_size=64)
    return Manifest(
        scene=draw(st.from_regex(r"[a-z][a-z0-9_]{0,63}", fullmatch=True)),
        version=draw(versions),
        feature_names=feature_names,
        input=TensorSpec(draw(names), "float32", (draw(st.none() | st.integers(1, 64)), len(feature_names))),
        output=TensorSpec(draw(names), draw(names), draw(shapes)),
        files=files or {name: {"sha256": draw(hexes), "size": draw(st.integers(0, 2**40))} for name in PAYLOAD_FILES},
        policy=draw(st.dictionaries(names, json_values, max_size=5)),
        mlflow=draw(st.dictionaries(names, json_values, max_size=3)),
        metrics=draw(st.dictionaries(names, st.floats(allow_nan=False, allow_infinity=False), max_size=5)),
        opsets=draw(st.dictionaries(names, st.integers(0, 100), max_size=3)),
    )


@settings(max_examples=100, deadline=None)
@given(manifest=manifests())
def test_a_manifest_reads_back_as_written(manifest: Manifest) -> None:
    assert Manifest.from_dict(json.loads(manifest.to_json())) == manifest


@settings(max_examples=10, deadline=None)
@given(payload=st.fixed_dictionaries({name: st.binary(max_size=64) for name in PAYLOAD_FILES}), data=st.data())
def test_a_package_reads_back_as_built(payload: dict[str, bytes], data: st.DataObject) -> None:
    manifest = data.draw(manifests(files={name: file_entry(blob) for name, blob in payload.items()}))
    archive = build_archive(manifest, payload)
    package = read_package(archive)

    assert (package.manifest, package.files, package.size_bytes) == (manifest, payload, len(archive))
    assert build_archive(package.manifest, package.files) == archive  # reproducible from what was read


@st.composite
def broken_manifests(draw: st.DrawFn) -> Any:
    """A valid manifest with fields removed, replaced by junk or junk added, or junk altogether."""
    raw: dict[str, Any] = json.loads(draw(manifests()).to_json())
    for key in draw(st.lists(st.sampled_from(sorted(raw)), max_size=3, unique=True)):
        if draw(st.booleans()):
            del raw[key]
        else:
            raw[key] = draw(junk_values)
    if draw(st.booleans()):  # junk one level down: a file entry, a tensor spec, a metric
        key = draw(st.sampled_from(["files", "input", "output", "metrics", "opsets", "policy"]))
        if isinstance(raw.get(key), dict):
            raw[key][draw(st.sampled_from(sorted(raw[key]) or ["x"]))] = draw(junk_values)
    return raw if draw(st.integers(0, 9)) else draw(junk_values)


@settings(max_examples=150, deadline=None)
@given(raw=broken_manifests())
def test_any_manifest_mapping_parses_or_is_a_format_error(raw: Any) -> None:
    try:
        Manifest.from_dict(raw)
    except PackageFormatError:
        pass


@settings(max_examples=40, deadline=None)
@given(
    text=broken_manifests().map(lambda raw: json.dumps(raw).encode())
    | st.binary(max_size=64)
    | st.text(alphabet=string.printable, max_size=64).map(str.encode)
)
@example(text=b'{"metrics": {"mae": ' + b"9" * 5_000 + b"}}")  # past Python's int parser
@example(text=b'{"opsets": {"": 1e999}}')  # an infinity
def test_any_manifest_file_in_an_archive_reads_or_is_a_format_error(text: bytes) -> None:
    files = {name: b"" for name in PAYLOAD_FILES}
    try:
        read_package(archive_with_manifest(text, files))
    except PackageFormatError:
        pass


@functools.cache
def _tar_of_a_package() -> bytes:
    """The uncompressed tar stream of a small valid package."""
    payload = {name: name.encode() * 3 for name in PAYLOAD_FILES}
    manifest = Manifest(
        scene="watch_time",
        version="1.0.0",
        feature_names=("a",),
        input=TensorSpec("x", "float32", (None, 1)),
        output=TensorSpec("y", "float32", (None, 1)),
        files={name: file_entry(blob) for name, blob in payload.items()},
    )
    return lzma.decompress(build_archive(manifest, payload))


@settings(max_examples=60, deadline=None)
@given(
    cut=st.none() | st.integers(0, 6 * 1024),
    flips=st.lists(st.tuples(st.integers(0, 6 * 1024), st.integers(1, 255)), max_size=4),
)
def test_a_corrupt_tar_inside_a_valid_xz_is_a_format_error(cut: int | None, flips: list[tuple[int, int]]) -> None:
    # xz's own check catches a flipped byte of the archive; a publisher can still sign a broken tar
    tar = bytearray(_tar_of_a_package()[:cut])
    for offset, mask in flips:
        if offset < len(tar):
            tar[offset] ^= mask
    try:
        read_package(lzma.compress(bytes(tar), format=lzma.FORMAT_XZ))
    except PackageFormatError:
        pass
