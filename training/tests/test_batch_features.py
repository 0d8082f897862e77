"""The scene's batch feature module equals its streaming extractor; training refuses when it does not."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import numpy as np
import pytest
from pitahaya.client_runtime import Scene, View
from pitahaya.training import (
    FeatureMismatchError,
    GeneratorConfig,
    TrainConfig,
    ViewTable,
    build_matrix,
    build_matrix_batch,
    generate_views,
    train,
)
from pitahaya.training.batch_features import _in_stream_order, _user_starts
from pitahaya.training.dataset import stream_order

SCENE_DIR = Path(__file__).parents[2] / "scenes" / "watch_time"
SCENE = Scene.load(SCENE_DIR)
EXTRACTOR = SCENE.extractor_class()
VIEWS = generate_views(GeneratorConfig(n_views=6_000, n_users=40, n_videos=500, seed=21))


def _edge_cases() -> list[View]:
    """Single-view users, ties in time, zero watch, quick swipes, session breaks, replays past the cap."""
    return [
        View("solo", "a", 100.0, 10.0, 0.0, 1_000),
        View("tie", "a", 50.0, 10.0, 2.0, 1_000),
        View("tie", "b", 50.0, 10.0, 9.0, 2_000),
        View("tie", "c", 50.0, 5.0, 80.0, 3_000),
        View("gaps", "a", 0.0, 30.0, 1.0, 5_000),
        View("gaps", "b", 1.5, 30.0, 30.0, 5_000),
        View("gaps", "c", 5_000.0, 12.0, 2.9, 5_000),
        View("gaps", "d", 5_020.0, 12.0, 3.0, 5_000),
        View("gaps", "e", 200_000.0, 12.0, 0.5, 5_000),
        # unknown lengths (image posts) and sizes: first, interleaved, last; a user with no length at all
        View("posts", "p1", 10.0, None, 4.0, None),
        View("posts", "p2", 15.0, None, 1.0, None),
        View("posts", "a", 17.0, 10.0, 6.0, 1_000),
        View("posts", "p1", 30.0, None, 12.0, None),
        View("posts", "b", 45.0, 20.0, 2.0, None),
        View("posts", "c", 50.0, 8.0, 8.0, 4_000),
        View("posts", "p3", 60.0, None, 0.5, None),
        View("only-posts", "p1", 5.0, None, 3.0, None),
        View("only-posts", "p2", 9.0, None, 30.0, None),
    ]


def _with_unknown_lengths(views: list[View], share: float, seed: int) -> list[View]:
    """``views`` with about ``share`` of them made image posts (no length, no size)."""
    rng = random.Random(seed)
    return [
        View(v.user_id, v.video_id, v.start_ts, None, v.watch_s, None) if rng.random() < share else v for v in views
    ]


def assert_same_features(table: ViewTable) -> None:
    streamed = build_matrix(table, EXTRACTOR)
    batch = build_matrix_batch(table, SCENE)
    np.testing.assert_array_equal(batch.index, streamed.index)
    np.testing.assert_array_equal(batch.y, streamed.y)
    for j, name in enumerate(EXTRACTOR.feature_names):  # every feature, every row, float32 tolerance
        np.testing.assert_allclose(batch.X[:, j], streamed.X[:, j], rtol=1e-6, atol=1e-6, err_msg=name)


def test_batch_equals_streaming_on_a_shuffled_generated_log():
    shuffled = VIEWS.copy()
    random.Random(3).shuffle(shuffled)
    table = ViewTable.from_views(shuffled).with_item_stats()
    assert table.item is not None and (table.item[:, 0] > 0).mean() > 0.5  # most candidates carry figures
    assert_same_features(table)
    assert_same_features(ViewTable.from_views(shuffled))  # and none at all


def test_batch_equals_streaming_with_unknown_lengths():
    """A fifth of the log has no length (KuaiRand's share): the ratio figures skip those views alike."""
    mixed = _with_unknown_lengths(VIEWS, 0.2, seed=5)
    random.Random(4).shuffle(mixed)
    table = ViewTable.from_views(mixed).with_item_stats()
    assert (table.duration_s == 0).mean() > 0.15
    assert_same_features(table)


def test_batch_equals_streaming_on_edge_cases():
    views = _edge_cases()
    assert_same_features(ViewTable.from_views(views[::-1]).with_item_stats())


def test_batch_equals_streaming_on_logs_already_in_user_time_order():
    """The sort is skipped only for a log truly in (user, time) order; near misses are sorted first."""
    in_order = sorted(VIEWS[:2_000] + _edge_cases(), key=lambda v: (v.user_id, v.start_ts))  # stable: ties keep order
    assert _user_starts(ViewTable.from_views(in_order)) is not None
    assert_same_features(ViewTable.from_views(in_order))
    users_descending = sorted(in_order, key=lambda v: v.user_id, reverse=True)  # each user still contiguous
    time_backwards = [*in_order[:5], in_order[6], in_order[5], *in_order[7:]]
    split_user = [in_order[-1], *in_order[:-1]]  # the last user's last view comes first
    for near_miss in (users_descending, time_backwards, split_user):
        assert _user_starts(ViewTable.from_views(near_miss)) is None
        assert_same_features(ViewTable.from_views(near_miss))


@pytest.mark.parametrize("n_users", [300, 400_000])  # 16-bit user codes, and more users than that
def test_batch_sort_is_stream_order(n_users):
    rng = np.random.default_rng(n_users)
    n = 150_000
    table = ViewTable(
        user_id=np.array([f"u{u}" for u in rng.integers(0, n_users, n)], dtype=object),
        video_id=np.full(n, "v", dtype=object),
        start_ts=rng.integers(0, 500, n).astype(np.float64),  # many ties in time
        duration_s=np.full(n, 10.0),
        watch_s=np.full(n, 5.0),
        size_bytes=np.full(n, 1_000, dtype=np.int64),
    )
    assert (len(set(table.user_id)) > 1 << 16) == (n_users > 1 << 16)
    order, views = _in_stream_order(table)
    np.testing.assert_array_equal(order, stream_order(table))
    users = table.user_id[order]
    np.testing.assert_array_equal(views.first, np.r_[True, users[1:] != users[:-1]])
    np.testing.assert_array_equal(views.start_ts, table.start_ts[order])


def test_batch_of_an_empty_table_is_empty():
    data = build_matrix_batch(ViewTable.from_views([]), SCENE)
    assert data.X.shape == (0, len(EXTRACTOR.feature_names))


def _scene_copy(tmp_path: Path, edit: tuple[str, str], file: str = "features.py") -> Path:
    folder = tmp_path / "scene"
    shutil.copytree(SCENE_DIR, folder)
    source = (folder / file).read_text()
    assert edit[0] in source
    (folder / file).write_text(source.replace(*edit))
    return folder


def test_scene_constants_flow_into_the_batch_path(tmp_path):
    retuned = Scene.load(_scene_copy(tmp_path, ("QUICK_SWIPE_S = 3.0", "QUICK_SWIPE_S = 6.0")))
    table = ViewTable.from_views(VIEWS[:1_500])
    batch = build_matrix_batch(table, retuned).X
    np.testing.assert_allclose(batch, build_matrix(table, retuned.extractor_class()).X, rtol=1e-6)
    assert not np.allclose(batch, build_matrix_batch(table, SCENE).X)


def test_feature_order_comes_from_the_feature_module(tmp_path):
    """Columns follow features.py's names, not an order the batch module keeps."""
    names = EXTRACTOR.feature_names
    swapped = f'"{names[0]}",\n        "{names[1]}",', f'"{names[1]}",\n        "{names[0]}",'
    reordered = Scene.load(_scene_copy(tmp_path, swapped))
    batch = build_matrix_batch(ViewTable.from_views(VIEWS[:500]), reordered)
    assert batch.feature_names == (names[1], names[0], *names[2:])
    np.testing.assert_array_equal(
        batch.X[:, [1, 0]], build_matrix_batch(ViewTable.from_views(VIEWS[:500]), SCENE).X[:, :2]
    )


def test_training_refuses_when_the_scene_formula_changed(tmp_path):
    folder = _scene_copy(tmp_path, ("hour = (now % 86400.0) / 3600.0", "hour = (now % 86400.0) / 60.0"))
    config = TrainConfig(
        scene=folder,
        tracking_uri=f"sqlite:///{tmp_path}/mlflow.db",
        artifact_location=tmp_path / "artifacts",
        generator=GeneratorConfig(n_views=3_000, n_users=20, n_videos=300, seed=2),
        features="batch",
        parity_min_test_rows=200,
    )
    with pytest.raises(FeatureMismatchError, match="hour_of_day") as info:
        train(config)
    assert info.value.feature == "hour_of_day"


def test_a_feature_the_batch_module_does_not_compute_is_refused(tmp_path):
    renamed = Scene.load(_scene_copy(tmp_path, ('"hour_of_day",', '"hour_of_day_renamed",')))
    with pytest.raises(ValueError, match="hour_of_day_renamed"):
        build_matrix_batch(ViewTable.from_views(VIEWS[:10]), renamed)


def test_a_scene_without_a_batch_module_has_no_batch_path(tmp_path):
    """Such a scene trains through its extractor (see test_trainer_options); asking for batch is refused."""
    folder = _scene_copy(tmp_path, ('batch_features = "batch_features.py"\n', ""), file="scene.toml")
    scene = Scene.load(folder)
    assert scene.batch_feature_source is None and scene.batch_module() is None
    with pytest.raises(ValueError, match="no batch_features module"):
        build_matrix_batch(ViewTable.from_views(VIEWS[:10]), scene)
    config = TrainConfig(
        scene=folder,
        tracking_uri=f"sqlite:///{tmp_path}/mlflow.db",
        artifact_location=tmp_path / "artifacts",
        generator=GeneratorConfig(n_views=3_000, n_users=20, n_videos=300, seed=2),
        features="batch",
    )
    with pytest.raises(ValueError, match="no batch_features module"):
        train(config)
