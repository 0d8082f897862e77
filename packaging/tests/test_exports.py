import pitahaya.packaging


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

