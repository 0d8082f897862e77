"""Properties of event logs: any views the loader accepts are read back equal, in order, from every format."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from pitahaya.client_runtime import View
from pitahaya.training import read_events, write_events
from pitahaya.training.eventlog import MAX_WATCH_RATIO

FORMATS = ["log.csv", "log.csv.gz", "log.tsv", "log.jsonl", "log.parquet"]

#: Ids the loader keeps (an empty one is a missing field): any text, line ends and a bare
#: carriage return included.
ids = st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=12)


@st.composite
def valid_views(draw: st.DrawFn) -> View:
    """A view the loader keeps: ids not empty, a positive length, at most `MAX_WATCH_RATIO` times it watched."""
    duration_s = draw(st.floats(min_value=1e-3, max_value=1e6))
    return View(
        draw(ids),
        draw(ids),
        draw(st.floats(min_value=-1e12, max_value=1e12)),
        duration_s,
        draw(st.floats(min_value=0.0, max_value=MAX_WATCH_RATIO * duration_s)),
        draw(st.integers(1, 2**53)),  # sizes are read as float64: exact up to 2**53
    )


#: The loader drops a repeated (user, video, start) as a duplicate.
logs = st.lists(valid_views(), max_size=8, unique_by=lambda v: (v.user_id, v.video_id, v.start_ts))


@settings(max_examples=25, deadline=None)
@given(views=logs, name=st.sampled_from(FORMATS))
def test_any_valid_views_read_back_as_written(views: list[View], name: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / name
        write_events(path, views)
        assert read_events(path) == views
