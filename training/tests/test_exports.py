"""The public API is exactly these names; growing it is a deliberate change to this test."""

import pitahaya.training


def test_all_is_pinned_and_sorted():
    assert pitahaya.training.__all__ == [
        "BAD_ROW_REASONS",
        "Dataset",
        "EventLogError",
        "FeatureMismatchError",
        "GeneratorConfig",
        "LoadReport",
        "TimeSplit",
        "TrainConfig",
        "TrainResult",
        "TrainingError",
        "ViewTable",
        "build_matrix",
        "build_matrix_batch",
        "generate_table",
        "generate_views",
        "held_out_from",
        "load_events",
        "mae",
        "read_events",
        "split_by_time",
        "train",
        "write_events",
        "xauc",
    ]
    assert all(hasattr(pitahaya.training, name) for name in pitahaya.training.__all__)
