import hashlib

import pytest

from pitahaya.client_runtime import PackageFormatError, read_package
from pitahaya.client_runtime.package import parse_version

from package_factory import make_archive


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
