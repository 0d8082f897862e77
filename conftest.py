"""Root pytest config.

Import PyPA ``packaging`` before any test module: under ``--import-mode=importlib`` pytest
would otherwise register the repo's ``packaging/`` folder (the pitahaya-packaging
component, a plain directory) as the top-level ``packaging`` module and hide the PyPA
library that MLflow imports.
"""

import packaging.version  # noqa: F401
