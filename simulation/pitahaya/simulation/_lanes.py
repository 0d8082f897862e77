"""A playback run's inputs as (lane x slot) arrays: every lane's videos back to back, and its link.

`playback.play` builds them once per run; its steps then read them with array indexing only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from pitahaya.simulation.networks import Trace
from pitahaya.simulation.sessions import Session


@dataclass(frozen=True, eq=False)
class Feeds:
    """Every lane's videos back to back, as (lane x slot) arrays fixed for the run.

    Slot ``n_max`` is a sink of size 0: preload window slots past a session's end and finished
    lanes point at it, so a step is the same array operations for every lane.

    Attributes:
        counts: Videos per lane.
        duration: Length of each video (s); 1 where no video is.
        size: File size (bytes).
        watch: Seconds the user watches.
        rate: Byte rate (size / duration).
        threshold: Bytes needed before the video starts (``startup_s`` of it, or the whole file).
        needed: Bytes the user plays (``min(watch, duration) x rate``, at most the file).
        session_of: Global session number (order of the lanes, then of their sessions).
        local_index: Position of the video in its session.
        session_last: Slot of the last video of the video's session.
    """

    counts: np.ndarray
    duration: np.ndarray
    size: np.ndarray
    watch: np.ndarray
    rate: np.ndarray
    threshold: np.ndarray
    needed: np.ndarray
    session_of: np.ndarray
    local_index: np.ndarray
    session_last: np.ndarray

    @property
    def n_max(self) -> int:
        """The sink's slot (the most videos of a lane)."""
        return self.size.shape[1] - 1

    @classmethod
    def of(cls, lanes: Sequence[Sequence[Session]], startup_s: float) -> Feeds:
        counts = np.array([sum(len(s.views) for s in lane) for lane in lanes])
        shape = (len(lanes), int(counts.max()) + 1)
        duration, size, watch = np.ones(shape), np.zeros(shape), np.zeros(shape)
        session_of = np.full(shape, -1, dtype=np.int64)
        local_index = np.zeros(shape, dtype=np.int64)
        session_last = np.zeros(shape, dtype=np.int64)
        number = 0
        for r, lane in enumerate(lanes):
            j = 0
            for sess in lane:
                k = len(sess.views)
                duration[r, j : j + k] = [v.duration_s for v in sess.views]
                size[r, j : j + k] = [v.size_bytes for v in sess.views]
                watch[r, j : j + k] = [v.watch_s for v in sess.views]
                session_of[r, j : j + k] = number
                local_index[r, j : j + k] = np.arange(k)
                session_last[r, j : j + k] = j + k - 1
                number += 1
                j += k
        rate = size / duration  # 0 in the sink
        return cls(
            counts=counts,
            duration=duration,
            size=size,
            watch=watch,
            rate=rate,
            threshold=np.minimum(size, startup_s * rate),
            needed=np.minimum(size, rate * np.minimum(watch, duration)),
            session_of=session_of,
            local_index=local_index,
            session_last=session_last,
        )


class Links:
    """Each lane's bandwidth trace in bytes/s, tiled to one width, read from the lane's offset on."""

    def __init__(self, traces: Sequence[Trace], offsets: np.ndarray) -> None:
        width = max(len(t.bandwidth_bps) for t in traces)
        self.bytes_per_s = np.empty((len(traces), width))
        for r, t in enumerate(traces):
            self.bytes_per_s[r] = np.resize(np.asarray(t.bandwidth_bps, dtype=np.float64) / 8.0, width)
        self.length = np.array([len(t.bandwidth_bps) for t in traces])
        self.step_s = np.array([t.step_s for t in traces])
        self.offsets = offsets
        self.rows = np.arange(len(traces))

    def speed_at(self, t: float) -> np.ndarray:
        """Each lane's link speed (bytes/s) at simulated time ``t``."""
        return self.bytes_per_s[self.rows, ((t + self.offsets) / self.step_s).astype(np.int64) % self.length]
