import pytest

from pitahaya.client_runtime import (
    Candidate,
    PackageFormatError,
    PolicyKnobs,
    PreloadPlanner,
    fixed_plan,
    model_plan,
)
from pitahaya.client_runtime.policy import package_knobs

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


PACED = {**POLICY, "min_count": 1, "max_count": 5, "horizon_s": 10.0}
FIVE = [Candidate(f"v{i}", 40.0, 10_000_000) for i in range(5)]


def test_count_follows_the_users_pace_within_min_and_max() -> None:
    knobs = PolicyKnobs.from_policy({**PACED, "smoothing": 1})
    planner = PreloadPlanner()
    # A fast swiper (2 s per video) reaches all five within the 10 s horizon; capped at max_count.
    assert len(planner.plan(FIVE, [2.0] * 5, knobs).items) == 5
    # A careful watcher (30 s) needs only the next one.
    assert len(planner.plan(FIVE, [30.0] * 5, knobs).items) == 1
    # In between: 4 + 4 + 4 >= 10 after three videos.
    assert len(planner.plan(FIVE, [4.0] * 5, knobs).items) == 3


def test_count_and_bytes_are_smoothed_over_the_last_two_decisions() -> None:
    knobs = PolicyKnobs.from_policy(PACED)  # smoothing = 2: this decision and the previous one
    planner = PreloadPlanner()
    first = planner.plan(FIVE, [2.0] * 5, knobs)
    assert len(first.items) == 5 and first.items[0].bytes == 500_000  # nothing to smooth with yet
    # The pace jumps to 30 s: raw count 1, smoothed ceil((1 + 5) / 2) = 3; the video planned
    # before at 2 s (500 KB raw) now wants 30 s (capped later): mean of raw bytes then the cap.
    second = planner.plan(FIVE, [30.0, 2.0, 2.0, 2.0, 2.0], knobs)
    assert len(second.items) == 3
    assert second.items[0].bytes == 800_000  # (7.5 MB + 0.5 MB) / 2 -> capped at max_bytes
    assert second.items[1].bytes == 500_000  # 2 s both times
    # Only the last two decisions count: a third decision at 30 s forgets the first one.
    third = planner.plan(FIVE, [30.0] * 5, knobs)
    assert len(third.items) == 2  # ceil((1 + 3) / 2)
    planner.reset()
    assert len(planner.plan(FIVE, [30.0] * 5, knobs).items) == 1


def test_floors_and_caps_apply_after_smoothing() -> None:
    knobs = PolicyKnobs.from_policy(PACED)
    planner = PreloadPlanner()
    planner.plan(FIVE, [0.0] * 5, knobs)
    plan = planner.plan(FIVE, [0.0] * 5, knobs)
    assert all(item.bytes == 250_000 for item in plan.items)  # the 1 s startup floor holds


def test_buffer_ahead_of_the_playing_video_is_its_remaining_watch_with_the_players_guards() -> None:
    knobs = PolicyKnobs.from_policy(
        {**POLICY, "buffer_safety": 1.5, "buffer_floor_s": 4.0, "buffer_max_s": 30.0, "buffer_min_throughput": 2.0}
    )
    planner = PreloadPlanner()
    playing = Candidate("p", 120.0, 30_000_000)  # 2 Mbps
    plan = planner.plan(CANDS, [1.0] * 3, knobs, playing=playing, playing_remaining_s=6.0)
    assert plan.buffer_ahead_s == 9.0  # 6 s x buffer_safety
    assert plan.buffer_floor_s == 4.0  # the player keeps this much whatever the cap
    assert plan.min_throughput_bps == 4_000_000  # the cap holds only on a link twice the bitrate
    assert planner.plan(CANDS, [1.0] * 3, knobs, playing=playing, playing_remaining_s=99.0).buffer_ahead_s == 30.0
    # Outlived (the user watched past the prediction) or never predicted: the player's default.
    assert planner.plan(CANDS, [1.0] * 3, knobs, playing=playing, playing_remaining_s=-3.0).buffer_ahead_s is None
    assert planner.plan(CANDS, [1.0] * 3, knobs).buffer_ahead_s is None
    assert fixed_plan(CANDS).buffer_ahead_s is None
    # The player asks the plan: 9 s cap, 4 s floor, only on a link >= 4 Mbps.
    assert plan.buffer_target_s(0.0, 10_000_000) == 9.0
    assert plan.buffer_target_s(6.0, 10_000_000) == 4.0  # 3 s left under the cap, but the floor holds
    assert plan.buffer_target_s(3.0, 3_000_000) is None  # link below twice the bitrate: the player's own
    assert plan.buffer_target_s(9.0, 10_000_000) is None  # outlived
    assert fixed_plan(CANDS).buffer_target_s(0.0, 10_000_000) is None


def test_the_buffer_floor_follows_the_throughput() -> None:
    """A floor of buffer_floor_rate_s x bitrate / throughput: thin on a fast link, thick on a slow one."""
    knobs = PolicyKnobs.from_policy(
        {**POLICY, "buffer_safety": 1.0, "buffer_floor_s": 0.0, "buffer_floor_rate_s": 6.0, "buffer_min_throughput": 0}
    )
    plan = PreloadPlanner().plan(
        CANDS, [1.0] * 3, knobs, playing=Candidate("p", 120.0, 30_000_000), playing_remaining_s=20.0
    )
    assert plan.bitrate_bps == 2_000_000
    assert plan.buffer_target_s(0.0, 20_000_000) == 20.0  # the cap
    assert plan.buffer_target_s(19.5, 20_000_000) == pytest.approx(0.6)  # 6 x 2/20 Mbps
    assert plan.buffer_target_s(19.5, 2_000_000) == 6.0  # a link just as fast as the video: 6 s
    assert plan.buffer_target_s(19.5, 0.0) == float("inf")  # a dead link: all the player will buffer
    assert plan.buffer_target_s(19.5, float("nan")) == float("inf")  # ... and so does a broken meter
    assert plan.buffer_target_s(20.0, 20_000_000) is None  # outlived
    with pytest.raises(ValueError, match="buffer_floor_rate_s"):
        PolicyKnobs.from_policy({"buffer_floor_rate_s": -1.0})


def test_invalid_policies_are_refused() -> None:
    with pytest.raises(ValueError, match="min_count"):
        PolicyKnobs.from_policy({"min_count": 4, "max_count": 2})
    with pytest.raises(ValueError, match="floors exceed"):
        PolicyKnobs.from_policy({"min_bytes": 900_000, "max_bytes": 800_000})
    with pytest.raises(ValueError, match="buffer_safety"):
        PolicyKnobs.from_policy({"buffer_safety": 0})


@pytest.mark.parametrize("smoothing", [0, 33, 10**9])
def test_a_smoothing_window_out_of_bounds_is_refused(smoothing: int) -> None:
    with pytest.raises(ValueError, match="smoothing"):
        PolicyKnobs.from_policy({"smoothing": smoothing})


def test_the_quantile_knobs_pick_output_columns_of_the_models_levels() -> None:
    levels = (0.2, 0.5, 0.8)
    knobs = PolicyKnobs.from_policy({"preload_quantile": 0.2, "buffer_quantile": 0.8}, levels)
    assert (knobs.preload_output, knobs.buffer_output) == (1, 3)
    point = PolicyKnobs.from_policy({}, levels)
    assert (point.preload_output, point.buffer_output) == (0, 0)  # left out: the point prediction


@pytest.mark.parametrize("level", [0.3, True, "0.2", float("nan"), [0.2]])
@pytest.mark.parametrize("knob", ["preload_quantile", "buffer_quantile"])
def test_a_quantile_knob_naming_a_level_the_model_lacks_makes_the_package_invalid(knob: str, level: object) -> None:
    with pytest.raises(PackageFormatError, match=f"{knob} .* is not one of the model's quantile levels"):
        package_knobs({knob: level}, (0.2, 0.8))
    with pytest.raises(PackageFormatError, match="quantile levels \\[\\]"):
        package_knobs({knob: 0.2})  # a point-only model has no levels at all


def test_a_cap_the_user_outlives_gives_way_to_the_next_then_to_the_player() -> None:
    """Caps at increasing quantiles: the first holds until the playhead passes it, then the next
    (kept only if above the one before, within buffer_max_s), then None (the player's own)."""
    knobs = PolicyKnobs.from_policy({"buffer_safety": 1.0, "buffer_floor_s": 0.0, "buffer_max_s": 40.0})
    playing = Candidate("p", 100.0, 12_500_000)  # 1 Mbps
    plan = PreloadPlanner().plan(
        [], [], knobs, playing=playing, playing_remaining_s=5.0, playing_then_s=(5.0, 20.0, 90.0)
    )
    assert plan.buffer_ahead_s == 5.0 and plan.buffer_then_s == (20.0, 40.0)  # 5.0 repeats; 90 capped at 40
    fast = 10e6  # a link 10x the bitrate: the throughput guard holds
    assert plan.buffer_target_s(1.0, fast) == 4.0
    assert plan.buffer_target_s(5.0, fast) == 15.0  # outlived the first cap: the next one up
    assert plan.buffer_target_s(39.0, fast) == 1.0
    assert plan.buffer_target_s(40.0, fast) is None  # outlived every cap
