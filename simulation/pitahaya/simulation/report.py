"""From per-video playback logs to the figures video teams read, with confidence intervals.

Per session: preload, total and wasted bytes, slow starts, start-up wait, stall time and count,
and the MMGC 2022 challenge's QoE and score (QoE = played bitrate x seconds - 1.85 x rebuffer
seconds - bitrate switches, in Mbps; score = QoE - 0.5 x wasted MB). Rebuffering is start-up wait
plus stalls; every file here has one bitrate, so there are no switches.

Confidence intervals are 95% percentile bootstraps over sessions (paired across policies: the
same resampled sessions for both sides of a ratio), seeded.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from pitahaya.simulation.playback import PlaybackLog

#: Per-session figures, in report order.
METRICS: tuple[str, ...] = (
    "views",
    "preload_bytes",
    "total_bytes",
    "wasted_bytes",
    "slow_starts",
    "startup_wait_s",
    "stall_s",
    "stalls",
    "qoe",
    "score",
)
#: The seed's table: change vs the fixed policy of these totals.
TABLE: dict[str, str] = {
    "preload bandwidth": "preload_bytes",
    "total bandwidth": "total_bytes",
    "slow starts": "slow_starts",
    "stall time": "stall_s",
}
REBUFFER_PENALTY, WASTE_PENALTY_PER_MB = 1.85, 0.5
_BOOTSTRAP = 1000


@dataclass(frozen=True, eq=False)
class SessionFigures:
    """One row per session, one column per name in `METRICS`."""

    values: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.values["views"])

    def subset(self, mask: np.ndarray) -> SessionFigures:
        return SessionFigures({k: v[mask] for k, v in self.values.items()})


def session_figures(log: PlaybackLog, n_sessions: int) -> SessionFigures:
    """Sum a playback log per session."""

    def total(x: np.ndarray) -> np.ndarray:
        return np.bincount(log.session, weights=x, minlength=n_sessions)

    rebuffer = log.wait_s + log.stall_s
    wasted = np.maximum(log.downloaded_bytes - log.needed_bytes, 0.0)
    qoe = log.bitrate_bps / 1e6 * log.played_s - REBUFFER_PENALTY * rebuffer
    values = {
        "views": total(np.ones(len(log))),
        "preload_bytes": total(log.preloaded_bytes),
        "total_bytes": total(log.downloaded_bytes),
        "wasted_bytes": total(wasted),
        "slow_starts": total((log.wait_s > 0).astype(np.float64)),
        "startup_wait_s": total(log.wait_s),
        "stall_s": total(log.stall_s),
        "stalls": total(log.stalls.astype(np.float64)),
        "qoe": total(qoe),
        "score": total(qoe - WASTE_PENALTY_PER_MB * wasted / 1e6),
    }
    return SessionFigures(values)


def _resamples(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n, size=(_BOOTSTRAP, n))


def describe(figures: SessionFigures, seed: int = 0) -> dict[str, dict[str, float]]:
    """Total, per-session mean and its 95% CI of every metric."""
    idx = _resamples(len(figures), seed)
    out = {}
    for name in METRICS:
        x = figures.values[name]
        means = x[idx].mean(axis=1)
        lo, hi = np.percentile(means, [2.5, 97.5])
        out[name] = {
            "total": float(x.sum()),
            "mean": float(x.mean()),
            "ci_low": float(lo),
            "ci_high": float(hi),
        }
    views = figures.values["views"].sum()
    out["slow_starts"]["per_view"] = float(figures.values["slow_starts"].sum() / views) if views else 0.0
    return out


def versus(policy: SessionFigures, baseline: SessionFigures, seed: int = 0) -> dict[str, dict[str, float | None]]:
    """The seed's table: relative change of each total vs the baseline, with a paired bootstrap CI.

    A change of -0.25 means 25% less than the baseline. Undefined (baseline total 0) is None.
    """
    idx = _resamples(len(policy), seed)
    out = {}
    for label, name in TABLE.items():
        a, b = policy.values[name], baseline.values[name]
        if b.sum() == 0:
            out[label] = {
                "change": None,
                "ci_low": None,
                "ci_high": None,
                "policy": float(a.sum()),
                "fixed": 0.0,
            }
            continue
        sums_b = b[idx].sum(axis=1)
        ok = sums_b > 0
        ratios = a[idx].sum(axis=1)[ok] / sums_b[ok] - 1.0
        lo, hi = np.percentile(ratios, [2.5, 97.5])
        out[label] = {
            "change": float(a.sum() / b.sum() - 1.0),
            "ci_low": float(lo),
            "ci_high": float(hi),
            "policy": float(a.sum()),
            "fixed": float(b.sum()),
        }
    return out


def frontier_plot(points: Mapping[str, list[tuple[float, float, float]]], path: str) -> None:
    """Total bytes saved vs slow-start change across aggressiveness, one line per policy (PNG, Agg).

    Args:
        points: Policy -> [(margin, total bytes saved vs fixed, slow-start change vs fixed)].
        path: Where to write the PNG.
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for policy, rows in points.items():
        rows = sorted(rows)
        saved = [100 * r[1] for r in rows]
        slow = [100 * r[2] for r in rows]
        ax.plot(saved, slow, marker="o", label=policy)
        for margin, x, y in zip([r[0] for r in rows], saved, slow, strict=True):
            ax.annotate(
                f"x{margin:g}",
                (x, y),
                textcoords="offset points",
                xytext=(4, 4),
                fontsize=8,
            )
    ax.axhline(0.0, color="grey", linewidth=0.8)
    ax.axvline(0.0, color="grey", linewidth=0.8)
    ax.set_xlabel("total bytes saved vs fixed 3 x 800 KB (%)")
    ax.set_ylabel("slow starts vs fixed (%)")
    ax.set_title("preload frontier (labels: margin; < 1 is more aggressive)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def versus_plot(rows: Mapping[str, Mapping[str, Mapping[str, float | None]]], path: str) -> None:
    """The seed's table as bars: change vs fixed of each total per policy, with 95% CI whiskers (PNG, Agg).

    Args:
        rows: Policy -> table label (`TABLE`) -> ``{"change", "ci_low", "ci_high", ...}`` (one
            class, e.g. ``summary["versus_fixed"][policy]["overall"]``); undefined changes are left out.
        path: Where to write the PNG.
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    labels = list(TABLE)
    fig, ax = plt.subplots(figsize=(7.2, 4.4))
    width = 0.8 / max(len(rows), 1)
    for k, (policy, table) in enumerate(rows.items()):
        xs, changes, low, high = [], [], [], []
        for i, label in enumerate(labels):
            row = table.get(label, {})
            change, ci_low, ci_high = row.get("change"), row.get("ci_low"), row.get("ci_high")
            if change is None or ci_low is None or ci_high is None:  # undefined: all three are
                continue
            xs.append(i + (k - (len(rows) - 1) / 2) * width)
            changes.append(100 * change)
            low.append(100 * (change - ci_low))
            high.append(100 * (ci_high - change))
        ax.bar(xs, changes, width, yerr=[low, high], capsize=3, label=policy)
    ax.axhline(0.0, color="grey", linewidth=0.8)
    ax.set_xticks(range(len(labels)), labels)
    ax.set_ylabel("change vs fixed 3 x 800 KB (%)")
    ax.set_title("policies vs fixed, all trace classes (whiskers: 95% CI)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
