"""The public API is exactly these names; growing it is a deliberate change to this test."""

import pitahaya.training


def test_all_is_pinned_and_sorted():
    assert pitahaya.training.__all__ == [
        "Dataset",
        "EventLogError",
        "GeneratorConfig",
        "TimeSplit",
        "TrainConfig",
        "TrainResult",
        "TrainingError",
        "build_matrix",
        "generate_views",
        "mae",
        "read_events",
        "split_by_time",
        "train",
        "write_events",
        "xauc",
    ]
    assert all(hasattr(pitahaya.training, name) for name in pitahaya.training.__all__)
