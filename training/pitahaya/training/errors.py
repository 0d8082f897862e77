"""Errors raised by the training job, grouped by what the caller should do next.

::

    TrainingError        the job cannot produce a trustworthy model from this input
    └── EventLogError    an event log is unreadable or has a malformed row: fix the data

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
        path: The offending file.
        line: 1-based line number of the offending row (the header is line 1), or None when
            the problem is with the file as a whole.
    """

    def __init__(self, path: str | Path, line: int | None, reason: str) -> None:
        self.path = Path(path)
        self.line = line
        self.reason = reason
        where = f"{self.path}:{line}" if line is not None else str(self.path)
        super().__init__(f"{where}: {reason}")
