"""A columnar event log: one numpy array per field of `View`.

Millions of `View` objects cost far more memory and time than six arrays, so the training job
carries views as a `ViewTable` and makes `View` objects only where one is needed (the
streaming extractor, the parity set).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from pitahaya.client_runtime import ITEM_FIELDS, UNKNOWN, ItemStats, View, item_stats_at


@dataclass(frozen=True, eq=False)
class ViewTable:
    """Views as parallel arrays, in any order.

    Attributes:
        user_id: Object array of ``str``.
        video_id: Object array of ``str``.
        start_ts: float64 Unix times.
        duration_s: float64, > 0, or 0 where unknown (`pitahaya.client_runtime.UNKNOWN`).
        watch_s: float64, all >= 0.
        size_bytes: int64, > 0, or 0 where unknown.
        item: float64 ``(n, 4)``: the feed's figures of each view's video when it was upcoming
            (`pitahaya.client_runtime.ITEM_FIELDS`; a row of zeros: none), or None before
            `with_item_stats` computed them.
    """

    user_id: np.ndarray
    video_id: np.ndarray
    start_ts: np.ndarray
    duration_s: np.ndarray
    watch_s: np.ndarray
    size_bytes: np.ndarray
    item: np.ndarray | None = None

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
            None if self.item is None else self.item[rows],
        )

    def with_item_stats(self) -> ViewTable:
        """This log with each view's item figures as a server would have served them (leak-free in time).

        Computed over the whole log (every user's views of a video), so call it before any
        split by user or time: a server knows all users' views, and only those that ended
        before the view started count (`pitahaya.client_runtime.item_stats_at`).
        """
        item = item_stats_at(self.video_id, self.start_ts, self.duration_s, self.watch_s)
        return ViewTable(
            self.user_id, self.video_id, self.start_ts, self.duration_s, self.watch_s, self.size_bytes, item
        )

    def item_matrix(self) -> np.ndarray:
        """``item``, or zeros (no figures) when they were not computed."""
        return np.zeros((len(self), len(ITEM_FIELDS))) if self.item is None else self.item

    def views(self, rows: np.ndarray | None = None) -> list[View]:
        """`View` objects for ``rows`` (all rows if None), in that order."""
        table = self if rows is None else self.take(rows)
        items = [None] * len(table) if table.item is None else [ItemStats.from_row(r) for r in table.item.tolist()]
        return [
            View(u, v, ts, d or None, w, s or None, item)  # 0: unknown
            for u, v, ts, d, w, s, item in zip(
                table.user_id.tolist(),
                table.video_id.tolist(),
                table.start_ts.tolist(),
                table.duration_s.tolist(),
                table.watch_s.tolist(),
                table.size_bytes.tolist(),
                items,
                strict=True,
            )
        ]

    @classmethod
    def from_views(cls, views: Sequence[View]) -> ViewTable:
        """Columns of a list of views (with their item figures if any view has some)."""
        item = None
        if any(v.item is not None for v in views):
            item = np.array([(0.0,) * len(ITEM_FIELDS) if v.item is None else v.item.as_tuple() for v in views])
        return cls(
            user_id=np.array([v.user_id for v in views], dtype=object),
            video_id=np.array([v.video_id for v in views], dtype=object),
            start_ts=np.array([v.start_ts for v in views], dtype=np.float64),
            duration_s=np.array([v.duration_s or UNKNOWN for v in views], dtype=np.float64),
            watch_s=np.array([v.watch_s for v in views], dtype=np.float64),
            size_bytes=np.array([v.size_bytes or UNKNOWN for v in views], dtype=np.int64),
            item=item,
        )

    @classmethod
    def concat(cls, tables: Sequence[ViewTable]) -> ViewTable:
        """All rows of ``tables``, one after the other."""
        if not tables:
            return cls.from_views([])
        columns = {name: np.concatenate([getattr(t, name) for t in tables]) for name in _FIELDS}
        item = None if all(t.item is None for t in tables) else np.concatenate([t.item_matrix() for t in tables])
        return cls(**columns, item=item)


_FIELDS = ("user_id", "video_id", "start_ts", "duration_s", "watch_s", "size_bytes")
