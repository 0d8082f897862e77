"""Errors raised by the packager, grouped by what the caller should do next.

::

    PackagingError            no package was produced; nothing was written or registered
    ├── LintError             the feature code uses something devices must not run: fix the code
    ├── ConversionError       the trained model cannot be turned into the ONNX model we ship
    ├── ParityError           the package, run as a device runs it, disagrees with training: block it
    └── BudgetError           the package works but is too big or too slow for the scene's budgets

Foreign exceptions (MLflow, LightGBM, onnxmltools) are wrapped once, where they cross into
this package, with ``raise ... from e``. Misuse (bad arguments) stays ``ValueError``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

    from pitahaya.packaging.lint import LintViolation
    from pitahaya.packaging.parity import ParityReport


class PackagingError(Exception):
    """Root of every error the packager raises on bad inputs or failed I/O."""


class LintError(PackagingError):
    """The scene's feature code imports or calls something feature code may not; nothing was built.

    Attributes:
        violations: Every refused construct; ``str(error)`` lists them as ``file:line:col: why``.
    """

    def __init__(self, violations: Sequence[LintViolation]) -> None:
        lines = "\n".join(f"  {v}" for v in violations)
        super().__init__(f"feature code refused ({len(violations)} violations):\n{lines}")
        self.violations = tuple(violations)


class ConversionError(PackagingError):
    """The run's model could not be loaded or converted to an equivalent ONNX model."""


class ParityError(PackagingError):
    """The packaged feature code or model disagrees with the training run; never ship it.

    Attributes:
        report: The full parity report; ``str(error)`` is its summary.
    """

    def __init__(self, report: ParityReport) -> None:
        super().__init__(report.summary())
        self.report = report


class BudgetError(PackagingError):
    """The package exceeds the scene's size budget.

    Attributes:
        report: The parity report of the refused package (it passed parity), for its figures.
    """

    def __init__(self, message: str, report: ParityReport | None = None) -> None:
        super().__init__(message)
        self.report = report
