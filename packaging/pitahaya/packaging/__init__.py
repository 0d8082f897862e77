"""pitahaya packager: turn a training run into a verified, reproducible algorithm package.

`build_package` lints the scene's feature code, converts the run's LightGBM or scikit-learn
model to compact ONNX, bundles it with the feature code and golden self-test vectors, loads
the result with the real client runtime and replays held-out events against the training
side (the parity gate), enforces the scene's size and latency budgets, writes the archive and
registers it in MLflow.
"""

from pitahaya.packaging.builder import BuildResult, build_package
from pitahaya.packaging.convert import ConvertedModel, convert_lightgbm, convert_sklearn
from pitahaya.packaging.errors import BudgetError, ConversionError, LintError, PackagingError, ParityError
from pitahaya.packaging.lint import LintViolation, lint_feature_code
from pitahaya.packaging.parity import ParityMismatch, ParityReport

__all__ = [
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
