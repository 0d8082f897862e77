import pytest

from package_factory import make_archive


@pytest.fixture
def archive() -> bytes:
    return make_archive()
