"""Streaming features for the watch-time scene (predict seconds watched of an upcoming video).

This file ships inside every package and runs on devices: it may import only the standard
math/collections modules, numpy and the client runtime's public API. One ``Extractor``
instance holds the state of one user; it is updated with each finished view in time order
and asked for a feature row per upcoming candidate. Training runs this same class over each
user's stream, so the model sees on-device features by construction.

All arithmetic is float64 Python floats; the only float32 rounding is the final store.

A video's length or size may be unknown (None: an image post, a feed item without its
metadata). Such a view counts in the user's sitting (gap, position, elapsed time) but in none
of the user's watch figures: dwell on an image says little about how long a video will be
watched (on KuaiRand, mixing them in cost 0.07 s of MAE). Such a candidate's length, size and
bitrate features are 0 (never a known value), and its expected watch seconds fall back from
ratio x length to the user's (and the crowd's) typical watch seconds.
"""

import math
from collections import deque

from pitahaya.client_runtime import FeatureExtractor

SESSION_GAP_S = 1800.0  # a pause longer than this starts a new session
QUICK_SWIPE_S = 3.0  # a view shorter than this is a quick swipe
RATIO_CAP = 5.0  # replays beyond 5x the duration count as 5x in running stats
RECENT_N = 10  # window of the quick-swipe share
FAST_ALPHA = 0.3  # weight of the newest view in the fast moving average
SLOW_ALPHA = 0.05  # ... and in the slow one
PRIOR_RATIO = 0.5  # watch ratio assumed before a user has any history
PRIOR_WATCH_S = 10.0  # watch seconds assumed before a user has any history
# The feed's figures of a video (Candidate.item, every user's earlier views of it) are shrunk
# towards these priors as if the prior had ITEM_PRIOR_VIEWS views: a video seen twice says
# little, one seen a thousand times says a lot, one the server knows nothing of is the prior.
ITEM_PRIOR_VIEWS = 5.0
PRIOR_QUICK_SHARE = 0.3


class Extractor(FeatureExtractor):
    feature_names = (
        "cand_duration_s",
        "cand_log_size",
        "cand_bitrate_kbps",
        "hist_log_views",
        "hist_mean_ratio",
        "ewm_ratio_fast",
        "ewm_ratio_slow",
        "ratio_trend",
        "ewm_watch_s",
        "last_ratio",
        "last_watch_s",
        "quick_share_recent",
        "gap_s",
        "session_position",
        "session_elapsed_s",
        "hour_of_day",
        "expected_watch_s",
        "item_log_views",
        "item_ratio",
        "item_quick_share",
        "item_watch_s",
        "item_expected_watch_s",
    )

    def __init__(self):
        self.n = 0  # videos watched (views with a length)
        self.sum_ratio = 0.0
        self.ewm_fast = PRIOR_RATIO
        self.ewm_slow = PRIOR_RATIO
        self.ewm_watch = PRIOR_WATCH_S
        self.last_ratio = PRIOR_RATIO
        self.last_watch = PRIOR_WATCH_S
        self.last_end = None
        self.session_start = None
        self.session_views = 0
        self.recent_quick = deque(maxlen=RECENT_N)

    def update(self, view):
        if self.last_end is None or view.start_ts - self.last_end > SESSION_GAP_S:
            self.session_start = view.start_ts
            self.session_views = 0
        self.session_views += 1
        self.last_end = view.start_ts + view.watch_s
        if view.duration_s is None:
            return  # no length (an image post): part of the sitting, not of the user's watch figures
        ratio = min(view.watch_s / view.duration_s, RATIO_CAP)
        if self.n == 0:
            self.ewm_fast = self.ewm_slow = ratio
            self.ewm_watch = view.watch_s
        else:
            self.ewm_fast += FAST_ALPHA * (ratio - self.ewm_fast)
            self.ewm_slow += SLOW_ALPHA * (ratio - self.ewm_slow)
            self.ewm_watch += FAST_ALPHA * (view.watch_s - self.ewm_watch)
        self.n += 1
        self.sum_ratio += ratio
        self.last_ratio = ratio
        self.last_watch = view.watch_s
        self.recent_quick.append(1.0 if view.watch_s < QUICK_SWIPE_S else 0.0)

    def transform(self, candidates, now, out):
        n = self.n
        mean_ratio = self.sum_ratio / n if n else PRIOR_RATIO
        quick = sum(self.recent_quick) / len(self.recent_quick) if self.recent_quick else 0.0
        if self.last_end is None:
            gap = -1.0
            position = 0.0
            elapsed = 0.0
        else:
            gap = min(max(now - self.last_end, 0.0), SESSION_GAP_S)
            in_session = now - self.last_end <= SESSION_GAP_S
            position = float(self.session_views) if in_session else 0.0
            elapsed = max(now - self.session_start, 0.0) if in_session else 0.0
        hour = (now % 86400.0) / 3600.0
        user = (
            math.log1p(n),
            mean_ratio,
            self.ewm_fast,
            self.ewm_slow,
            self.ewm_fast - self.ewm_slow,
            self.ewm_watch,
            self.last_ratio,
            self.last_watch,
            quick,
            gap,
            position,
            elapsed,
            hour,
        )
        k = ITEM_PRIOR_VIEWS
        for i, cand in enumerate(candidates):
            duration, size = cand.duration_s, cand.size_bytes
            item = cand.item
            if item is None:
                views = mean_watch = mean_ratio = quick_share = 0.0
            else:
                views = float(item.views)
                mean_watch, mean_ratio, quick_share = item.mean_watch_s, item.mean_ratio, item.quick_share
            item_ratio = (views * mean_ratio + k * PRIOR_RATIO) / (views + k)
            item_watch = (views * mean_watch + k * PRIOR_WATCH_S) / (views + k)
            if duration is None:
                duration, expected, item_expected = 0.0, self.ewm_watch, item_watch
            else:
                expected, item_expected = self.ewm_fast * duration, item_ratio * duration
            out[i] = (
                duration,
                0.0 if size is None else math.log1p(size),
                0.0 if size is None or not duration else size * 0.008 / duration,
                *user,
                expected,
                math.log1p(views),
                item_ratio,
                (views * quick_share + k * PRIOR_QUICK_SHARE) / (views + k),
                item_watch,
                item_expected,
            )
