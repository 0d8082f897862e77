"""Errors raised by the training job, grouped by what the caller should do next.

::

    TrainingError              the job cannot produce a trustworthy model from this input
    ├── EventLogError          an event log is unreadable or has a malformed row: fix the data
    └── FeatureMismatchError   the batch feature path disagrees with the scene's features.py:
                               fix the batch path or train with the streaming extractor

Misuse of the API (bad config values, wrong types) raises ``ValueError`` and stays outside
this tree, so ``except TrainingError`` never hides a bug.
"""

from __future__ import annotations

from pathlib import Path


class TrainingError(Exception):
    """Root of every error the training job raises on bad data."""


class EventLogError(TrainingError):
    """An event log is missing columns or holds a malformed row.

    Attributes:
        path: The offending file (a local path or an ``s3://`` URI, as given).
        line: 1-based line number of the offending row (the header is line 1), or None when
            the problem is with the file as a whole.
    """

    def __init__(self, path: str | Path, line: int | None, reason: str) -> None:
        self.path = str(path)
        self.line = line
        self.reason = reason
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {reason}")


class FeatureMismatchError(TrainingError):
    """The vectorized feature path computed different values than the scene's extractor.

    Training on them would ship a model fed different features on devices than in training.

    Attributes:
        feature: Name of the first differing feature.
        row: Index (in the checked sample) of the first differing row.
    """

    def __init__(self, feature: str, row: int, batch: float, streaming: float) -> None:
        self.feature = feature
        self.row = row
        super().__init__(
            f"batch feature path disagrees with the scene's features.py on {feature!r} (sample row {row}: "
            f"batch {batch!r}, streaming {streaming!r}); retrain with the streaming path (--features stream)"
        )
