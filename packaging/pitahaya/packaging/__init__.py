"""pitahaya packager: turn a training run into a verified, reproducible algorithm package.

`build_package` converts the run's LightGBM model to ONNX, bundles it with the scene's
feature code and golden self-test vectors, loads the result with the real client runtime
and replays held-out events against the training side (the parity gate), enforces the
scene's size and latency budgets, writes the archive and registers it in MLflow.
"""

from pitahaya.packaging.builder import BuildResult, build_package
from pitahaya.packaging.convert import ConvertedModel, convert_lightgbm
from pitahaya.packaging.errors import BudgetError, ConversionError, PackagingError, ParityError
from pitahaya.packaging.parity import ParityMismatch, ParityReport

__all__ = [
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
