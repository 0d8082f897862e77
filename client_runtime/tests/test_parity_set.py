"""The parity set round-trips through its folder, byte for byte the same for the same content."""

from __future__ import annotations

import gzip
import io

import numpy as np
import pytest

from pitahaya.client_runtime import ItemStats, View
from pitahaya.client_runtime.item_stats import ITEM_FIELDS
from pitahaya.client_runtime.parity_set import FEATURES_ARRAY_FILE, VIEWS_FILE, ParitySet, read_views_csv

VIEWS = [
    View("u1", "a", 1_700_000_000.125, 12.3, 0.1 + 0.2, 80_000),  # a float with a long repr
    View("u1", "b", 1_700_000_013.0, 30.0, 45.5, 1_200_000, ItemStats(12, 9.75, 0.1 + 0.2, 0.25)),  # the feed's figures
    View("u,2", 'quote"d', 5.0, 1e-3, 0.0, 1),  # delimiters and quotes in ids
]


def _parity() -> ParitySet:
    features = np.arange(len(VIEWS) * 4, dtype=np.float32).reshape(len(VIEWS), 4) / 7
    return ParitySet(VIEWS, features, np.array([0.5, 1.25, 3.0], dtype=np.float32))


def test_a_parity_set_reads_back_what_was_written(tmp_path):
    _parity().write(tmp_path)
    again = ParitySet.read(tmp_path)
    assert list(again.views) == VIEWS
    np.testing.assert_array_equal(again.features, _parity().features)
    np.testing.assert_array_equal(again.predictions, _parity().predictions)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([VIEWS_FILE, FEATURES_ARRAY_FILE, "predictions.npy"])


def test_the_same_views_give_the_same_bytes(tmp_path):
    _parity().write(tmp_path / "a")
    _parity().write(tmp_path / "b")
    assert (tmp_path / "a" / VIEWS_FILE).read_bytes() == (tmp_path / "b" / VIEWS_FILE).read_bytes()
    text = gzip.decompress((tmp_path / "a" / VIEWS_FILE).read_bytes()).decode()
    header, first, second = text.splitlines()[:3]
    assert header == "user_id,video_id,start_ts,duration_s,watch_s,size_bytes," + ",".join(ITEM_FIELDS)
    assert first.endswith("80000,,,,") and second.endswith(",12,9.75,0.30000000000000004,0.25")  # none, then some
    assert "0.30000000000000004" in first


def test_arrays_must_have_one_float32_row_per_view():
    with pytest.raises(ValueError, match="features must be float32"):
        ParitySet(VIEWS, np.zeros((2, 4), dtype=np.float32), np.zeros(3, dtype=np.float32))
    with pytest.raises(ValueError, match="predictions must be float32"):
        ParitySet(VIEWS, np.zeros((3, 4), dtype=np.float32), np.zeros(3))


def test_a_malformed_views_file_names_the_line():
    text = "user_id,video_id,start_ts,duration_s,watch_s,size_bytes\nu,v,1.0,10.0,2.0,100\nu,w,2.0,-1.0,2.0,100\n"
    with pytest.raises(ValueError, match=r"views.csv:3: malformed view"):
        read_views_csv(io.StringIO(text), name="views.csv")
    with pytest.raises(ValueError, match="header lacks watch_s"):
        read_views_csv(io.StringIO("user_id,video_id,start_ts,duration_s,size_bytes\n"), name="views.csv")
