"""Session and network sources: real data when ../shared/data is there (else skipped), clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pitahaya.simulation import (
    NetworkSourceError,
    SessionSourceError,
    dashlet_sessions,
    kuairand_sessions,
    mmgc_traces,
)

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


def _need(folder: str) -> Path:
    path = DATA / folder
    if not path.is_dir():
        pytest.skip(f"{path} is absent (third-party data lives outside the repo)")
    return path


def test_mmgc_traces_read_per_class() -> None:
    root = _need("mmgc-network-traces")
    low, high = mmgc_traces(root, "low"), mmgc_traces(root, "high")
    assert len(low) == 20 and low[0].step_s == 0.5 and len(low[0].bandwidth_bps) == 5880
    assert 1.0 < np.mean([t.mean_mbps for t in low]) < 1.4 < np.mean([t.mean_mbps for t in high])


def test_kuairand_sessions_hold_real_watch_times_and_history() -> None:
    root = _need("kuairand-27k-likehate-subset")
    sessions = kuairand_sessions(root, max_users=20, bitrate_bps=1_000_000)
    assert sessions and all(5 <= len(s.views) <= 20 for s in sessions)
    for s in sessions:
        assert all(v.size_bytes == max(1, round(v.duration_s * 125_000)) for v in s.views)
        assert all(h.start_ts <= s.views[0].start_ts for h in s.history)


def test_dashlet_sessions_draw_watch_times_within_each_video() -> None:
    root = _need("dashlet-swipe-curves")
    sessions = dashlet_sessions(root, sessions=5, session_views=10, seed=1)
    views = [v for s in sessions for v in s.views]
    assert len(views) == 50 and all(0 <= v.watch_s <= v.duration_s for v in views)
    assert dashlet_sessions(root, sessions=5, session_views=10, seed=1)[0].views == sessions[0].views


def test_missing_or_malformed_data_gives_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(NetworkSourceError, match="unknown trace class"):
        mmgc_traces(tmp_path, "fast")
    with pytest.raises(NetworkSourceError, match="no MMGC traces"):
        mmgc_traces(tmp_path, "low")
    (tmp_path / "low").mkdir()
    (tmp_path / "low" / "0").write_text("0 1.0\n0.5 oops\n")
    with pytest.raises(NetworkSourceError):
        mmgc_traces(tmp_path, "low")
    with pytest.raises(SessionSourceError, match="cannot read KuaiRand"):
        kuairand_sessions(tmp_path)
    with pytest.raises(SessionSourceError, match="no Dashlet"):
        dashlet_sessions(tmp_path / "nope")
