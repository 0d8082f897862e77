"""build_matrix equals replaying each stream by hand; split_by_time cuts at time quantiles."""

from __future__ import annotations

import random

import numpy as np
import pytest
from pitahaya.client_runtime import Scene
from pitahaya.training import GeneratorConfig, build_matrix, generate_views, held_out_from, split_by_time
from pitahaya.training.baselines import global_median, user_running_mean

SCENE = Scene.load(__file__.rsplit("/training/", 1)[0] + "/scenes/watch_time")
VIEWS = generate_views(GeneratorConfig(n_views=3_000, n_users=15, n_videos=400, seed=11))


@pytest.fixture(scope="module")
def dataset():
    shuffled = VIEWS.copy()
    random.Random(0).shuffle(shuffled)
    return shuffled, build_matrix(shuffled, SCENE.extractor_class())


def test_build_matrix_equals_streaming_each_user(dataset):
    shuffled, data = dataset
    extractor_cls = SCENE.extractor_class()
    expected_rows, labels = [], []
    for user in sorted({v.user_id for v in VIEWS}):
        extractor = extractor_cls()
        for view in sorted((v for v in VIEWS if v.user_id == user), key=lambda v: v.start_ts):
            expected_rows.append(extractor.features([view.as_candidate()], view.start_ts)[0])
            labels.append(view.watch_s)
            extractor.update(view)
    assert data.X.dtype == np.float32 and data.X.shape == (len(VIEWS), len(extractor_cls.feature_names))
    np.testing.assert_array_equal(data.X, np.array(expected_rows))
    np.testing.assert_array_equal(data.y, labels)
    assert data.feature_names == extractor_cls.feature_names
    assert [shuffled[i].watch_s for i in data.index] == labels  # index maps rows back to the input


def test_split_by_time(dataset):
    _, data = dataset
    split = split_by_time(data, valid_frac=0.1, test_frac=0.2)
    assert np.all(split.train.astype(int) + split.valid.astype(int) + split.test.astype(int) == 1)
    assert data.start_ts[split.train].max() < split.valid_from <= data.start_ts[split.valid].min()
    assert data.start_ts[split.valid].max() < split.test_from <= data.start_ts[split.test].min()
    assert split.test.mean() == pytest.approx(0.2, abs=0.01)
    assert split.valid.mean() == pytest.approx(0.1, abs=0.01)
    with pytest.raises(ValueError):
        split_by_time(data, valid_frac=0.5, test_frac=0.5)


def test_held_out_from_is_where_the_training_split_starts_its_test_period(dataset):
    shuffled, data = dataset  # the simulator replays exactly the period a model trained on these views never saw
    assert held_out_from(shuffled) == split_by_time(data).test_from
    assert held_out_from(shuffled, test_frac=0.5) == split_by_time(data, valid_frac=0.1, test_frac=0.5).test_from


def test_baselines_only_look_back(dataset):
    _, data = dataset
    predictions = user_running_mean(data, fallback=-1.0)
    users = data.user_ids
    first = np.r_[True, users[1:] != users[:-1]]
    assert np.all(predictions[first] == -1.0)
    row = int(np.flatnonzero(~first)[5])
    start = int(np.flatnonzero(first & (np.arange(len(users)) <= row))[-1])
    assert predictions[row] == pytest.approx(data.y[start:row].mean())
    np.testing.assert_array_equal(global_median(np.array([1.0, 5.0, 2.0]), 2), [2.0, 2.0])
