from pitahaya.client_runtime import Candidate, fixed_plan, model_plan

# 2 Mbps videos: 250,000 bytes per second.
CANDS = [Candidate("a", 40.0, 10_000_000), Candidate("b", 40.0, 10_000_000), Candidate("c", 2.0, 500_000)]
POLICY = {"count": 3, "min_bytes": 200_000, "startup_s": 1.0, "max_bytes": 800_000, "safety": 1.0}


def test_fixed_plan_is_three_times_800_kb_capped_at_the_video_size() -> None:
    assert [i.bytes for i in fixed_plan(CANDS).items] == [800_000, 800_000, 500_000]


def test_model_plan_sizes_by_predicted_watch_within_floor_and_cap() -> None:
    plan = model_plan(CANDS, [2.0, 0.1, 30.0], POLICY)
    # 2 s -> 500 KB; 0.1 s -> floored at 1 s of video (250 KB); 30 s -> capped by the 500 KB file.
    assert [i.bytes for i in plan.items] == [500_000, 250_000, 500_000]
    long_watch = model_plan(CANDS[:1], [60.0], POLICY)
    assert long_watch.items[0].bytes == 800_000


def test_model_plan_keeps_only_count_videos_and_ignores_negative_predictions() -> None:
    plan = model_plan(CANDS, [-5.0, 1.0, 1.0], {**POLICY, "count": 2})
    assert [i.bytes for i in plan.items] == [250_000, 250_000]
