"""A columnar event log: one numpy array per field of `View`.

Millions of `View` objects cost far more memory and time than six arrays, so the training job
carries views as a `ViewTable` and makes `View` objects only where one is needed (the
streaming extractor, the parity set).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from pitahaya.client_runtime import View


@dataclass(frozen=True, eq=False)
class ViewTable:
    """Views as parallel arrays, in any order.

    Attributes:
        user_id: Object array of ``str``.
        video_id: Object array of ``str``.
        start_ts: float64 Unix times.
        duration_s: float64, all > 0.
        watch_s: float64, all >= 0.
        size_bytes: int64, all > 0.
    """

    user_id: np.ndarray
    video_id: np.ndarray
    start_ts: np.ndarray
    duration_s: np.ndarray
    watch_s: np.ndarray
    size_bytes: np.ndarray

    def __len__(self) -> int:
        return len(self.start_ts)

    def take(self, rows: np.ndarray) -> ViewTable:
        """The views at ``rows`` (indices or a boolean mask), in that order."""
        return ViewTable(
            self.user_id[rows],
            self.video_id[rows],
            self.start_ts[rows],
            self.duration_s[rows],
            self.watch_s[rows],
            self.size_bytes[rows],
        )

    def views(self, rows: np.ndarray | None = None) -> list[View]:
        """`View` objects for ``rows`` (all rows if None), in that order."""
        table = self if rows is None else self.take(rows)
        return [
            View(u, v, ts, d, w, s)
            for u, v, ts, d, w, s in zip(
                table.user_id.tolist(),
                table.video_id.tolist(),
                table.start_ts.tolist(),
                table.duration_s.tolist(),
                table.watch_s.tolist(),
                table.size_bytes.tolist(),
                strict=True,
            )
        ]

    @classmethod
    def from_views(cls, views: Sequence[View]) -> ViewTable:
        """Columns of a list of views."""
        return cls(
            user_id=np.array([v.user_id for v in views], dtype=object),
            video_id=np.array([v.video_id for v in views], dtype=object),
            start_ts=np.array([v.start_ts for v in views], dtype=np.float64),
            duration_s=np.array([v.duration_s for v in views], dtype=np.float64),
            watch_s=np.array([v.watch_s for v in views], dtype=np.float64),
            size_bytes=np.array([v.size_bytes for v in views], dtype=np.int64),
        )

    @classmethod
    def concat(cls, tables: Sequence[ViewTable]) -> ViewTable:
        """All rows of ``tables``, one after the other."""
        if not tables:
            return cls.from_views([])
        return cls(*(np.concatenate([getattr(t, name) for t in tables]) for name in _FIELDS))


_FIELDS = ("user_id", "video_id", "start_ts", "duration_s", "watch_s", "size_bytes")
