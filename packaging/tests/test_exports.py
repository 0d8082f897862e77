import pitahaya.packaging


def test_public_api_is_pinned():
    assert pitahaya.packaging.__all__ == [
        "BudgetError",
        "BuildResult",
        "ConversionError",
        "ConvertedModel",
        "LintError",
        "LintViolation",
        "PackagingError",
        "ParityError",
        "ParityMismatch",
        "ParityReport",
        "build_package",
        "convert_lightgbm",
        "convert_sklearn",
        "lint_feature_code",
    ]
