"""The feed's item figures: served definition, leak-free computation over a log, and where they travel."""

from __future__ import annotations

import io
import mmap
import math
import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pitahaya.client_runtime import ITEM_FIELDS, Candidate, ItemStats, View, item_stats_at, with_item_stats
from pitahaya.client_runtime.containment import wire
from pitahaya.client_runtime.item_stats import QUICK_SWIPE_S, RATIO_CAP
from pitahaya.client_runtime.parity_set import read_views_csv, write_views_csv


def _served(views: list[View], at: float, video_id: str) -> tuple[float, float, float, float]:
    """The definition, spelled out: every view of the video that ended strictly before ``at``."""
    ended = [v for v in views if v.video_id == video_id and v.start_ts + v.watch_s < at]
    if not ended:
        return (0.0, 0.0, 0.0, 0.0)
    n = len(ended)
    return (
        float(n),
        sum(v.watch_s for v in ended) / n,
        sum(min(v.watch_s / v.duration_s, RATIO_CAP) for v in ended) / n,
        sum(v.watch_s < QUICK_SWIPE_S for v in ended) / n,
    )


_view = st.builds(
    View,
    user_id=st.sampled_from(["u1", "u2", "u3"]),
    video_id=st.sampled_from(["a", "b", "c", "d"]),
    start_ts=st.integers(0, 60).map(float),  # coarse times: many ties between starts and ends
    duration_s=st.sampled_from([0.5, 2.0, 10.0, 30.0]),
    watch_s=st.sampled_from([0.0, 1.0, 2.5, 5.0, 10.0, 40.0, 200.0]),
    size_bytes=st.just(1000),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(_view, max_size=40))
def test_each_view_gets_what_ended_before_it_and_nothing_later(views):
    got = item_stats_at(
        np.array([v.video_id for v in views], dtype=object),
        np.array([v.start_ts for v in views]),
        np.array([v.duration_s for v in views]),
        np.array([v.watch_s for v in views]),
    )
    assert got.shape == (len(views), len(ITEM_FIELDS))
    for row, view in zip(got, views, strict=True):
        assert row == pytest.approx(_served(views, view.start_ts, view.video_id), abs=1e-9)
        if row[0]:
            ItemStats.from_row(row)  # within the served ranges, so a host could pass it on


def test_a_view_never_counts_itself_even_when_watched_for_no_time():
    got = item_stats_at(np.array(["a", "a"]), np.array([10.0, 10.0]), np.array([5.0, 5.0]), np.array([0.0, 3.0]))
    assert got[:, 0].tolist() == [0.0, 0.0]  # neither ended strictly before 10.0


@pytest.mark.parametrize(
    "bad",
    [
        dict(views=-1),
        dict(views=1.5),
        dict(mean_watch_s=math.inf),
        dict(mean_watch_s=math.nan),
        dict(mean_ratio=RATIO_CAP * 2),
        dict(mean_ratio=-0.1),
        dict(quick_share=1.01),
    ],
)
def test_hostile_figures_are_refused_where_they_enter(bad):
    with pytest.raises(ValueError, match="item stats"):
        ItemStats(**{"views": 3, "mean_watch_s": 4.0, "mean_ratio": 0.5, "quick_share": 0.2, **bad})


def test_figures_cross_the_containment_wire_and_the_dict_codec_unchanged():
    item = ItemStats(7, 12.25, 0.4375, 1 / 3)
    views = [View("u", "a", 1.0, 10.0, 4.0, 100, item), View("u", "b", 2.0, 10.0, 4.0, 100)]
    candidates = [Candidate("c", 20.0, 300, item), Candidate("d", 20.0, 300)]
    fd, page = wire.open_page()
    try:
        wire.write_request(page, 1, wire.Step(False, views, candidates, 5.0))
        got = wire.read_request(page, 0)
    finally:
        page.close()
        os.close(fd)
    assert got is not None
    assert list(got[1].views) == views and list(got[1].candidates) == candidates
    assert [Candidate.from_dict(c.to_dict()) for c in candidates] == candidates
    assert [View.from_dict(v.to_dict()) for v in views] == views


def test_views_csv_carries_the_figures_when_asked():
    item = ItemStats(2, 0.1 + 0.2, 0.25, 0.5)
    views = [View("u", "a", 1.0, 10.0, 4.0, 100, item), View("u", "b", 2.0, 10.0, 4.0, 100)]
    text = io.StringIO()
    write_views_csv(text, ((*_fields(v), v.item) for v in views), with_item=True)
    assert read_views_csv(io.StringIO(text.getvalue())) == views
    plain = io.StringIO()
    write_views_csv(plain, (_fields(v) for v in views))  # an event log: no figures, none read back
    assert [v.item for v in read_views_csv(io.StringIO(plain.getvalue()))] == [None, None]


def _fields(v: View) -> tuple:
    return (v.user_id, v.video_id, v.start_ts, v.duration_s, v.watch_s, v.size_bytes)


def test_the_mean_ratio_counts_only_views_of_known_length():
    """Views of unknown length count in views, watch time and quick share, never in the ratio."""
    views = [
        View("a", "v", 0.0, 10.0, 5.0, 1_000),  # ratio 0.5
        View("b", "v", 1.0, None, 2.0, None),  # no length: no ratio
        View("c", "v", 20.0, 10.0, 1.0, 1_000),
        View("d", "post", 0.0, None, 4.0, None),
        View("e", "post", 30.0, None, 4.0, None),
    ]
    rows = with_item_stats(views)
    assert rows[2].item == ItemStats(views=2, mean_watch_s=3.5, mean_ratio=0.5, quick_share=0.5)
    assert rows[4].item == ItemStats(views=1, mean_watch_s=4.0, mean_ratio=0.0, quick_share=0.0)  # no length ever


def test_unknown_lengths_and_sizes_cross_the_containment_wire_as_none():
    page = mmap.mmap(-1, wire.PAGE_BYTES)
    step = wire.Step(
        False,
        [View("u", "post", 5.0, None, 3.0, None)],
        [Candidate("c", None, None), Candidate("d", 9.5, None)],
        6.0,
        False,
    )
    wire.write_request(page, 1, step)
    _, read = wire.read_request(page, 0)
    assert read.views == step.views and read.candidates == step.candidates
