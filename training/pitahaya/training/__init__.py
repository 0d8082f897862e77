"""pitahaya training job: event logs in, a tracked, evaluated model out.

Workflow: `load_events` reads and validates event logs (CSV / TSV / JSONL / Parquet, local,
glob or S3, via an adapter; bad rows quarantined) into a `ViewTable`, or `generate_table`
makes one; `build_matrix` replays each user's stream through the scene's feature extractor
(`build_matrix_batch` computes the same with array operations); `split_by_time` cuts train /
valid / test; `train` does all of that, fits LightGBM or scikit-learn (locally or on Dask),
scores it against baselines, and logs the run, the model and the parity set to MLflow.
"""

import lazy_loader

# The public names and the submodule each comes from are listed once, in ``__init__.pyi``: type
# checkers read it as this package's stub, and each name loads its module on first use (PEP 562),
# so code that needs only the generator (a fleet simulator's worker process) does not pay for
# LightGBM and MLflow.
__getattr__, __dir__, __all__ = lazy_loader.attach_stub(__name__, __file__)
