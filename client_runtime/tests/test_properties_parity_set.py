"""Properties of the views codec and the parity set: any views written are read back equal, in order."""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import example, given, settings
from hypothesis import strategies as st

from pitahaya.client_runtime import ParitySet, View
from pitahaya.client_runtime.parity_set import read_views_csv, write_views_csv

#: Ids of any text: delimiters, quotes, line ends, a bare carriage return.
ids = st.text(st.characters(exclude_categories=("Cs",)))
#: Any view `View` accepts with such ids, at any finite times.
views = st.builds(
    View,
    ids,
    ids,
    st.floats(allow_nan=False, allow_infinity=False),
    st.floats(min_value=0.0, exclude_min=True, allow_infinity=False),
    st.floats(min_value=0.0, allow_infinity=False),
    st.integers(1, 2**63 - 1),
)


def _rows(written: list[View]) -> list[tuple[object, ...]]:
    return [(v.user_id, v.video_id, v.start_ts, v.duration_s, v.watch_s, v.size_bytes) for v in written]


@settings(max_examples=150, deadline=None)
@given(written=st.lists(views, max_size=8))
@example(written=[View("u\r1", "v\r\n2", 1.0, 2.0, 1.0, 10), View("u,3", 'v"4', 1.0, 2.0, 1.0, 10)])  # a bare \r once broke it
def test_any_views_read_back_from_csv_as_written(written: list[View]) -> None:
    text = io.StringIO(newline="")
    write_views_csv(text, _rows(written))
    text.seek(0)
    assert read_views_csv(text) == written


@settings(max_examples=25, deadline=None)
@given(written=st.lists(views, max_size=6), n_features=st.integers(0, 3), data=st.data())
def test_any_parity_set_reads_back_as_written(written: list[View], n_features: int, data: st.DataObject) -> None:
    floats = st.floats(width=32)
    shape = (len(written), n_features)
    features = np.array(data.draw(st.lists(floats, min_size=shape[0] * n_features, max_size=shape[0] * n_features)))
    predictions = np.array(data.draw(st.lists(floats, min_size=shape[0], max_size=shape[0])), dtype=np.float32)
    parity = ParitySet(written, features.astype(np.float32).reshape(shape), predictions)
    with tempfile.TemporaryDirectory() as folder:
        parity.write(Path(folder))
        again = ParitySet.read(Path(folder))

    assert list(again.views) == written
    np.testing.assert_array_equal(again.features, parity.features)  # NaN equals NaN here
    np.testing.assert_array_equal(again.predictions, parity.predictions)
