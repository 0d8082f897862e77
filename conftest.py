"""Root pytest config.

Import PyPA ``packaging`` before any test module: under ``--import-mode=importlib`` pytest
would otherwise register the repo's ``packaging/`` folder (the pitahaya-packaging
component, a plain directory) as the top-level ``packaging`` module and hide the PyPA
library that MLflow imports.
"""

import os
import sys
from collections.abc import Iterator

import packaging.version  # noqa: F401
import pytest

#: MLflow's tracking URI from the environment the test session started in.
_SESSION_MLFLOW_URI = os.environ.get("MLFLOW_TRACKING_URI")


def _restore_mlflow_tracking_uri() -> None:
    """Undo any ``mlflow.set_tracking_uri``: it also exports ``MLFLOW_TRACKING_URI``, so code
    that restores "the previous URI" by value leaves MLflow's cwd default behind for later tests."""
    if "mlflow" in sys.modules:
        sys.modules["mlflow"].set_tracking_uri(_SESSION_MLFLOW_URI)  # None unsets global and variable
    if _SESSION_MLFLOW_URI is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = _SESSION_MLFLOW_URI


@pytest.fixture(autouse=True, scope="module")
def _mlflow_tracking_uri_per_module() -> Iterator[None]:
    """Tests of one module may share MLflow's global URI on purpose (a module fixture sets it);
    the next module must not inherit it. Autouse fixtures of a scope are set up first, so this
    one is torn down after the module's own fixtures."""
    yield
    _restore_mlflow_tracking_uri()

