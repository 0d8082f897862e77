import pitahaya.client_runtime.package as package_format
import pitahaya.packaging
from pitahaya.packaging import builder


def test_public_api_is_pinned():
    assert pitahaya.packaging.__all__ == [
        "BudgetError",
        "BuildResult",
        "ConversionError",
        "ConvertedModel",
        "PackagingError",
        "ParityError",
        "ParityMismatch",
        "ParityReport",
        "build_package",
        "convert_lightgbm",
    ]


def test_payload_names_match_the_package_format():
    assert (builder.MODEL_FILE, builder.FEATURES_FILE, builder.SELFTEST_FILE) == (
        package_format.MODEL_FILE,
        package_format.FEATURES_FILE,
        package_format.SELFTEST_FILE,
    )
