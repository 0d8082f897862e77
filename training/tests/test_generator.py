"""The generator is reproducible, fast enough for tests, and shaped like real swipe logs."""

from __future__ import annotations

import numpy as np
import pytest
from pitahaya.training import GeneratorConfig, generate_views

SMALL = GeneratorConfig(n_views=20_000, n_users=100, n_videos=3_000, seed=7)


@pytest.fixture(scope="module")
def views():
    return generate_views(SMALL)


@pytest.fixture(scope="module")
def columns(views):
    return {
        "user": np.array([v.user_id for v in views]),
        "start": np.array([v.start_ts for v in views]),
        "duration": np.array([v.duration_s for v in views]),
        "watch": np.array([v.watch_s for v in views]),
        "size": np.array([v.size_bytes for v in views]),
    }


def test_same_seed_same_log_and_other_seed_other_log(views):
    config = GeneratorConfig(n_views=2_000, n_users=20, n_videos=500, seed=7)
    assert generate_views(config) == generate_views(config)
    assert generate_views(config) != generate_views(GeneratorConfig(n_views=2_000, n_users=20, n_videos=500, seed=8))


def test_exact_count_sorted_by_user_then_time(views):
    assert len(views) == SMALL.n_views
    keys = [(v.user_id, v.start_ts) for v in views]
    assert keys == sorted(keys)


def test_catalog_ranges(columns):
    assert columns["duration"].min() >= SMALL.min_duration_s
    assert columns["duration"].max() <= SMALL.max_duration_s
    assert 12.0 < np.median(columns["duration"]) < 30.0
    bitrate = columns["size"] * 8 / columns["duration"]
    assert bitrate.min() >= SMALL.min_bitrate_bps * 0.99
    assert bitrate.max() <= SMALL.max_bitrate_bps * 1.01


def test_times_are_rounded_to_milliseconds(columns):
    for name in ("start", "duration", "watch"):
        assert np.allclose(columns[name], np.round(columns[name], 3), rtol=0, atol=1e-6)


def test_sessions_are_consecutive_swipes_hours_apart(columns):
    same_user = columns["user"][1:] == columns["user"][:-1]
    gap = (columns["start"][1:] - columns["start"][:-1] - columns["watch"][:-1])[same_user]
    swipe = gap < 60.0
    assert gap[swipe].min() >= 0.3 - 0.002 and gap[swipe].max() <= 3.0 + 0.002
    assert gap[~swipe].min() >= 3600.0 - 0.002
    sessions = (~swipe).sum() + len(np.unique(columns["user"]))
    sessions_per_user_day = sessions / (len(np.unique(columns["user"])) * SMALL.days)
    assert 1.0 <= sessions_per_user_day <= 5.0


def test_watch_ratios_are_bimodal_with_a_replay_tail(columns):
    ratio = columns["watch"] / columns["duration"]
    assert np.mean(ratio < 0.2) > 0.25  # fast swipes
    assert np.mean((ratio > 0.9) & (ratio < 1.1)) > 0.15  # finished
    assert np.mean((ratio > 0.4) & (ratio < 0.6)) < np.mean(ratio < 0.2) / 2  # a valley between
    assert np.mean(ratio > 1.5) > 0.02  # replays
    short = columns["duration"] < 10
    assert np.mean(ratio[short] > 2.0) > np.mean(ratio[~short] > 2.0)  # short videos loop more
    assert ratio.max() > 3.0


def test_rejects_nonsense_config():
    with pytest.raises(ValueError):
        GeneratorConfig(n_views=0)
    with pytest.raises(ValueError):
        GeneratorConfig(min_duration_s=30.0, median_duration_s=20.0)
