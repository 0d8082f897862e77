"""Algorithm package format v1: one reproducible ``.tar.xz`` holding a model and its feature code.

Layout of the archive (flat, entries sorted, mtime 0, uid/gid 0, mode 0644)::

    manifest.json    what the package is; sha256 and size of every other file
    model.onnx       the model, float32 input of shape [N, len(feature_names)]
    features.py      the scene's feature code, defining ``class Extractor(FeatureExtractor)``
    selftest.json    golden cases: views, candidates, expected features and predictions

The archive as a whole is a TUF target, so its bytes are verified by signed metadata before
this module ever sees them; the per-file hashes in the manifest additionally bind every file
to the manifest that the registry, MLflow and the parity gate all refer to.

`build_archive` is the only writer and `read_package` the only reader, so the format is
defined in exactly one place.
"""

from __future__ import annotations

import hashlib
import io
import json
import lzma
import re
import tarfile
from dataclasses import dataclass, field
from typing import Any

from pitahaya.client_runtime.errors import PackageFormatError

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
MODEL_FILE = "model.onnx"
FEATURES_FILE = "features.py"
SELFTEST_FILE = "selftest.json"
PAYLOAD_FILES: tuple[str, ...] = (MODEL_FILE, FEATURES_FILE, SELFTEST_FILE)
ARCHIVE_SUFFIX = ".tar.xz"

#: Hard cap on an archive's unpacked size, against decompression bombs.
MAX_UNPACKED_BYTES = 64 * 1024 * 1024

#: Largest ``manifest.json`` the format allows (a real one is a few KB); xz packs a padded
#: manifest of tens of MiB into a few KB, and every listing of packages would carry it.
MAX_MANIFEST_BYTES = 1024 * 1024

#: Deepest nesting of arrays and objects in a package's JSON files (a real manifest nests 4
#: levels). Deeper documents are refused before anything walks them recursively.
MAX_JSON_DEPTH = 64

#: Most quantile levels a model may output beside its point prediction (each is a whole tree
#: ensemble that every decision on a device evaluates).
MAX_QUANTILES = 8

_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_VERSION_RE = re.compile(r"^(0|[1-9]\d{0,8})\.(0|[1-9]\d{0,8})\.(0|[1-9]\d{0,8})$")


def parse_version(version: str) -> tuple[int, int, int]:
    """Parse a ``MAJOR.MINOR.PATCH`` package version into a comparable tuple.

    Raises:
        ValueError: the string is not three dot-separated non-negative integers.
    """
    match = _VERSION_RE.match(version)
    if match is None:
        raise ValueError(f"package version must look like 1.2.3, got {version!r}")
    major, minor, patch = (int(part) for part in match.groups())
    return major, minor, patch


def validate_scene_name(scene: str) -> str:
    """Return ``scene`` if it is a valid scene name (lowercase identifier), else raise ValueError."""
    if not _NAME_RE.match(scene):
        raise ValueError(f"scene must match {_NAME_RE.pattern}, got {scene!r}")
    return scene


def validate_quantiles(value: Any) -> tuple[float, ...]:
    """Quantile levels as ``scene.toml`` or a manifest spell them: a list of at most
    `MAX_QUANTILES` strictly increasing numbers in (0, 1).

    Raises:
        ValueError: anything else (booleans, strings, NaN, repeats, 0 or 1 included).
    """
    shown = repr(value)[:200]  # a hostile manifest's list may be long
    if not isinstance(value, list) or not all(type(q) in (int, float) for q in value):
        raise ValueError(f"quantile levels must be a list of numbers, got {shown}")
    levels = tuple(float(q) for q in value)
    if len(levels) > MAX_QUANTILES or not all(0.0 < q < 1.0 for q in levels) or list(levels) != sorted(set(levels)):
        raise ValueError(
            f"quantile levels must be at most {MAX_QUANTILES} strictly increasing numbers in (0, 1), got {shown}"
        )
    return levels


def target_path(scene: str, version: str) -> str:
    """The TUF target path of a package: ``packages/<scene>/<scene>-<version>.tar.xz``."""
    return f"packages/{scene}/{scene}-{version}{ARCHIVE_SUFFIX}"


@dataclass(frozen=True)
class TensorSpec:
    """Name, element type and shape (None = any size) of a model input or output."""

    name: str
    dtype: str
    shape: tuple[int | None, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TensorSpec:
        return cls(name=str(data["name"]), dtype=str(data["dtype"]), shape=tuple(data["shape"]))


@dataclass(frozen=True)
class Manifest:
    """The parsed ``manifest.json`` of a package.

    Attributes:
        scene: Scene the package serves (e.g. ``watch_time``).
        version: Package version, ``MAJOR.MINOR.PATCH``.
        feature_names: Model input columns, in order; must equal the extractor's names.
        input: Model input spec (float32, ``[None, len(feature_names)]``).
        output: Model output spec: float32 ``[N, outputs]``, the predicted watch time in seconds
            then its quantiles.
        files: sha256 hex digest and size of every payload file.
        policy: Scene decision knobs (preload floors and caps) read by the planner.
        mlflow: Provenance: tracking run id, model name/version when registered.
        metrics: Offline evaluation figures of the trained model.
        opsets: ONNX opset per domain used by the model.
        quantiles: Levels of the quantiles the model outputs after its point prediction, in
            column order (empty: the point only; such manifests omit the key).
    """

    scene: str
    version: str
    feature_names: tuple[str, ...]
    input: TensorSpec
    output: TensorSpec
    files: dict[str, dict[str, Any]]
    policy: dict[str, Any] = field(default_factory=dict)
    mlflow: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    opsets: dict[str, int] = field(default_factory=dict)
    quantiles: tuple[float, ...] = ()
    format_version: int = FORMAT_VERSION

    @property
    def outputs(self) -> int:
        """Columns of the model's output: the point prediction, then one per quantile level."""
        return 1 + len(self.quantiles)

    def to_dict(self) -> dict[str, Any]:
        quantiles = {"quantiles": list(self.quantiles)} if self.quantiles else {}
        return {
            **quantiles,
            "format_version": self.format_version,
            "scene": self.scene,
            "version": self.version,
            "feature_names": list(self.feature_names),
            "input": self.input.to_dict(),
            "output": self.output.to_dict(),
            "files": {name: dict(info) for name, info in sorted(self.files.items())},
            "policy": self.policy,
            "mlflow": self.mlflow,
            "metrics": self.metrics,
            "opsets": self.opsets,
        }

    def to_json(self) -> bytes:
        """Canonical JSON bytes (sorted keys, fixed separators): same manifest, same bytes."""
        return (json.dumps(self.to_dict(), sort_keys=True, indent=2) + "\n").encode()

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Manifest:
        """Parse and validate a manifest mapping.

        Raises:
            PackageFormatError: a field is missing, of the wrong type, or inconsistent.
        """
        try:
            if data["format_version"] != FORMAT_VERSION:
                raise PackageFormatError(
                    f"unsupported package format_version {data['format_version']!r} (this runtime reads {FORMAT_VERSION})"
                )
            manifest = cls(
                format_version=int(data["format_version"]),
                scene=validate_scene_name(str(data["scene"])),
                version=str(data["version"]),
                feature_names=tuple(str(n) for n in data["feature_names"]),
                input=TensorSpec.from_dict(data["input"]),
                output=TensorSpec.from_dict(data["output"]),
                files={str(k): dict(v) for k, v in data["files"].items()},
                policy=dict(data.get("policy", {})),
                mlflow=dict(data.get("mlflow", {})),
                metrics={str(k): float(v) for k, v in data.get("metrics", {}).items()},
                opsets={str(k): int(v) for k, v in data.get("opsets", {}).items()},
                quantiles=validate_quantiles(data.get("quantiles", [])),
            )
            parse_version(manifest.version)
        except PackageFormatError:
            raise
        # ArithmeticError: an integer too large for a float
        except (KeyError, TypeError, ValueError, AttributeError, ArithmeticError) as e:
            raise PackageFormatError(f"invalid manifest: {type(e).__name__}: {e}") from e
        if set(manifest.files) != set(PAYLOAD_FILES):
            raise PackageFormatError(
                f"manifest must list exactly {sorted(PAYLOAD_FILES)}, got {sorted(manifest.files)}"
            )
        if manifest.input.dtype != "float32" or manifest.input.shape[1:] != (len(manifest.feature_names),):
            raise PackageFormatError(
                f"model input must be float32 [N, {len(manifest.feature_names)}], got {manifest.input.dtype} {list(manifest.input.shape)}"
            )
        if manifest.quantiles and manifest.output.shape[1:] != (manifest.outputs,):
            raise PackageFormatError(
                f"a model with {len(manifest.quantiles)} quantile levels outputs float32 [N, {manifest.outputs}], "
                f"not {list(manifest.output.shape)}"
            )
        return manifest


@dataclass(frozen=True)
class Package:
    """A package read from an archive whose every file matched the manifest's hashes."""

    manifest: Manifest
    files: dict[str, bytes]
    sha256: str
    size_bytes: int

    @property
    def feature_source(self) -> str:
        return self.files[FEATURES_FILE].decode("utf-8")

    @property
    def model_bytes(self) -> bytes:
        return self.files[MODEL_FILE]

    @property
    def selftest(self) -> Any:
        """The parsed ``selftest.json``.

        Raises:
            PackageFormatError: not JSON, or nested deeper than `MAX_JSON_DEPTH`.
        """
        return _parse_json(self.files[SELFTEST_FILE], SELFTEST_FILE)


def file_entry(data: bytes) -> dict[str, Any]:
    """The manifest's ``files`` entry for a payload: its sha256 and size."""
    return {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}


def build_archive(manifest: Manifest, payload: dict[str, bytes]) -> bytes:
    """Write a reproducible archive: same manifest and payload, byte-identical output.

    Args:
        manifest: The manifest; its ``files`` entries must match ``payload``.
        payload: Bytes of each file in `PAYLOAD_FILES`.

    Raises:
        ValueError: the payload does not match the manifest (a packager bug).
    """
    if set(payload) != set(PAYLOAD_FILES):
        raise ValueError(f"payload must hold exactly {sorted(PAYLOAD_FILES)}")
    for name, data in payload.items():
        if manifest.files.get(name) != file_entry(data):
            raise ValueError(f"manifest entry for {name} does not match its bytes")
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in sorted({MANIFEST: manifest.to_json(), **payload}.items()):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 0
            info.mode = 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(data))
    return lzma.compress(raw.getvalue(), format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC64, preset=9 | lzma.PRESET_EXTREME)


def read_package(archive: bytes) -> Package:
    """Unpack and verify an archive.

    Args:
        archive: The bytes of a ``.tar.xz`` package.

    Returns:
        The package, every payload file checked against the manifest's sha256 and size.

    Raises:
        PackageFormatError: not an archive of this format, unexpected entries, hash mismatch.
    """
    try:
        raw = lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(archive, max_length=MAX_UNPACKED_BYTES + 1)
    except lzma.LZMAError as e:
        raise PackageFormatError(f"package is not a valid .tar.xz archive: {e}") from e
    if len(raw) > MAX_UNPACKED_BYTES:
        raise PackageFormatError(f"package unpacks to more than {MAX_UNPACKED_BYTES} bytes")
    files: dict[str, bytes] = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as tar:
            for member in tar:
                if not member.isfile() or member.name not in (MANIFEST, *PAYLOAD_FILES) or member.name in files:
                    raise PackageFormatError(f"unexpected archive entry {member.name!r}")
                extracted = tar.extractfile(member)
                assert extracted is not None  # isfile() above
                files[member.name] = extracted.read()
    except tarfile.TarError as e:
        raise PackageFormatError(f"package archive is corrupt: {e}") from e
    if MANIFEST not in files:
        raise PackageFormatError("package has no manifest.json")
    manifest_bytes = files.pop(MANIFEST)
    if len(manifest_bytes) > MAX_MANIFEST_BYTES:
        raise PackageFormatError(
            f"manifest.json is {len(manifest_bytes)} bytes, more than the format's {MAX_MANIFEST_BYTES}"
        )
    manifest_data = _parse_json(manifest_bytes, MANIFEST)
    if not isinstance(manifest_data, dict):
        raise PackageFormatError("manifest.json must hold an object")
    try:  # Python's parser reads NaN, Infinity and 1e309; planner knobs or metrics must not be either
        json.dumps(manifest_data, allow_nan=False)
    except ValueError as e:
        raise PackageFormatError(f"manifest.json holds NaN or an infinity: {e}") from e
    manifest = Manifest.from_dict(manifest_data)
    for name in PAYLOAD_FILES:
        if name not in files:
            raise PackageFormatError(f"package is missing {name}")
        if file_entry(files[name]) != {k: manifest.files[name].get(k) for k in ("sha256", "size")}:
            raise PackageFormatError(f"{name} does not match the sha256/size in manifest.json")
    return Package(
        manifest=manifest,
        files=files,
        sha256=hashlib.sha256(archive).hexdigest(),
        size_bytes=len(archive),
    )


def _parse_json(data: bytes, name: str) -> Any:
    """Parse a package's JSON file, refusing nesting deeper than `MAX_JSON_DEPTH`.

    Python's parser raises RecursionError near a thousand levels, and code that walks a
    parsed document recursively fails sooner; a device must see a format error (and mark
    the version bad), never a RecursionError.

    Raises:
        PackageFormatError: not UTF-8 JSON, or nested too deeply.
    """
    too_deep = PackageFormatError(f"{name} nests arrays/objects deeper than {MAX_JSON_DEPTH} levels")
    try:
        document = json.loads(data)
    except RecursionError:
        raise too_deep from None
    except ValueError as e:  # not UTF-8, not JSON, or a number past Python's int parser (4,300 digits)
        raise PackageFormatError(f"{name} is not valid JSON: {e}") from e
    pending: list[tuple[Any, int]] = [(document, 1)]
    while pending:  # iterative: the check itself must not recurse
        value, depth = pending.pop()
        if isinstance(value, dict | list):
            if depth > MAX_JSON_DEPTH:
                raise too_deep
            pending.extend((child, depth + 1) for child in (value.values() if isinstance(value, dict) else value))
    return document
