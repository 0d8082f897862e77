"""What the feed's server knows about a video: figures of its earlier views, served with it.

A host app's feed backend aggregates every user's finished views of each video and sends the
figures along with the video's details; the host passes them on as `Candidate.item` (and
records them with the `View` once watched). A scene's feature code reads them like any other
candidate field, with its own priors for a video the server knows little or nothing of
(``item=None`` or few ``views``).

The definition lives here, once, so that training computes exactly what a server serves:
`ItemStats` of a video *at time t* aggregates the views of that video, by every user, that
**ended before t** (a view still playing has no watch time yet). `item_stats_at` computes it for
every view of a log at the view's start time: what the server would have served while that view
was upcoming. Training, the simulator and a server share it; nothing here looks ahead in time.

NumPy and the standard library only: this is the light leaf.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # events imports this module
    from pitahaya.client_runtime.events import View


#: Watch ratios beyond this count as this (a looping video would otherwise dominate a mean).
RATIO_CAP = 5.0
#: A view shorter than this many seconds is a quick swipe.
QUICK_SWIPE_S = 3.0
#: Column order of `item_stats_at`'s matrix, and the field names in event logs and parity sets.
ITEM_FIELDS: tuple[str, ...] = ("item_views", "item_mean_watch_s", "item_mean_ratio", "item_quick_share")


@dataclass(frozen=True, slots=True)
class ItemStats:
    """Figures of a video's earlier views, as its feed's server serves them.

    Attributes:
        views: Finished views counted (0: the server knows nothing yet, like ``item=None``).
        mean_watch_s: Their mean watch time in seconds.
        mean_ratio: Their mean watch ratio (watch time over duration, each capped at `RATIO_CAP`),
            over the views whose video length was known; 0 when none was.
        quick_share: Share of them shorter than `QUICK_SWIPE_S`.

    Raises:
        ValueError: a figure is negative, not finite, or a share above 1: hostile or broken
            server data is refused where it enters, not inside a package's feature code.
    """

    views: int
    mean_watch_s: float
    mean_ratio: float
    quick_share: float

    def __post_init__(self) -> None:
        if not (
            isinstance(self.views, int)
            and 0 <= self.views < 1 << 53  # exact as a float64 on the containment wire
            and 0.0 <= self.mean_watch_s < math.inf
            and 0.0 <= self.mean_ratio <= RATIO_CAP
            and 0.0 <= self.quick_share <= 1.0
        ):
            raise ValueError(
                "item stats need 0 <= views < 2**53, a finite mean_watch_s >= 0, "
                f"0 <= mean_ratio <= {RATIO_CAP} and 0 <= quick_share <= 1; got {self!r}"
            )

    def as_tuple(self) -> tuple[float, float, float, float]:
        """The four figures as floats, in `ITEM_FIELDS` order (one row of `item_stats_at`)."""
        return float(self.views), self.mean_watch_s, self.mean_ratio, self.quick_share

    @classmethod
    def from_row(cls, row: Any) -> ItemStats | None:
        """The stats of one `ITEM_FIELDS`-ordered row, or None for a row of a video with no views."""
        views = int(row[0])
        if views == 0:
            return None
        return cls(views, float(row[1]), float(row[2]), float(row[3]))


def item_stats_at(
    video_id: np.ndarray, start_ts: np.ndarray, duration_s: np.ndarray, watch_s: np.ndarray
) -> np.ndarray:
    """Each view's `ItemStats` as served at its start: over views of its video that ended before.

    One pass of sorts and cumulative sums over the whole log (any order), so it scales like a
    sort: every view's end is an event that adds to its video's sums, every view's start a
    query that reads them; at equal times the query goes first (``ended before`` is strict, so
    a view never counts itself, not even one watched for 0 s).

    Args:
        video_id: The video of each view (any hashable values NumPy can sort).
        start_ts: Start time of each view.
        duration_s: Video length of each view (> 0; 0 or NaN: unknown, left out of the ratio).
        watch_s: Seconds watched of each view (>= 0).

    Returns:
        float64, shape ``(n, 4)``, columns in `ITEM_FIELDS` order; a row with ``views == 0``
        (nothing ended before it) holds zeros.
    """
    n = len(start_ts)
    out = np.zeros((n, len(ITEM_FIELDS)))
    if not n:
        return out
    codes = _codes(np.asarray(video_id))
    watch = np.asarray(watch_s, dtype=np.float64)
    duration = np.asarray(duration_s, dtype=np.float64)
    known = duration > 0  # NaN compares false
    ratio = np.zeros(n)
    np.divide(watch, duration, out=ratio, where=known)
    np.minimum(ratio, RATIO_CAP, out=ratio)
    # events: n queries (kind 0, at the start) then n additions (kind 1, at the end)
    event_code = np.concatenate([codes, codes])
    event_time = np.concatenate([start_ts, np.asarray(start_ts, dtype=np.float64) + watch])
    event_kind = np.repeat(np.array([0, 1], dtype=np.int8), n)
    order = np.lexsort((event_kind, event_time, event_code))
    # columns: views, watch sum, ratio sum, quick swipes, views with a known length
    added = np.zeros((2 * n, len(ITEM_FIELDS) + 1))
    added[n:] = np.column_stack([np.ones(n), watch, ratio, (watch < QUICK_SWIPE_S), known])
    sums = np.cumsum(added[order], axis=0)
    # sums restart with each video: subtract what the videos sorted before it added
    sorted_code = event_code[order]
    starts = np.r_[True, sorted_code[1:] != sorted_code[:-1]]
    first = np.maximum.accumulate(np.where(starts, np.arange(2 * n), 0))
    sums -= np.where(first[:, None] > 0, sums[first - 1], 0.0)
    query = order < n
    rows, at = order[query], sums[query]
    counts, with_length = np.rint(at[:, 0]), np.rint(at[:, 4])
    out[rows, 0] = counts
    # differences of running sums may miss a bound by an ulp: clip to the figures' ranges
    seen = counts > 0
    out[rows[seen], 1] = np.maximum(at[seen, 1] / counts[seen], 0.0)
    out[rows[seen], 3] = np.clip(at[seen, 3] / counts[seen], 0.0, 1.0)
    measured = with_length > 0
    out[rows[measured], 2] = np.clip(at[measured, 2] / with_length[measured], 0.0, RATIO_CAP)
    return out


def _codes(ids: np.ndarray) -> np.ndarray:
    """An integer label per distinct id (any labels: they only group the views of a video)."""
    if ids.dtype != object:
        return np.unique(ids, return_inverse=True)[1].reshape(-1)
    index: dict[Any, int] = {}  # a dict beats sorting Python strings by far
    return np.fromiter((index.setdefault(i, len(index)) for i in ids.tolist()), dtype=np.int64, count=len(ids))


def with_item_stats(views: Sequence[View]) -> list[View]:
    """``views`` (a whole log, any order), each with the figures a server would have served with it.

    `item_stats_at` over all of them; a view's earlier ``item`` is replaced.
    """
    rows = item_stats_at(
        np.array([v.video_id for v in views], dtype=object),
        np.array([v.start_ts for v in views], dtype=np.float64),
        np.array([v.duration_s for v in views], dtype=np.float64),  # None -> NaN: unknown
        np.array([v.watch_s for v in views], dtype=np.float64),
    )
    return [  # type(v) is View (events imports this module); a constructor call, not dataclasses.replace: 2x faster
        type(v)(v.user_id, v.video_id, v.start_ts, v.duration_s, v.watch_s, v.size_bytes, ItemStats.from_row(row))
        for v, row in zip(views, rows.tolist(), strict=True)
    ]
