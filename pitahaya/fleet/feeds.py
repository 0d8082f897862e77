"""What each simulated device watches: one generated user's views per device.

`device_feeds` generates a log with one user per device (`pitahaya.training.generate_views`)
and cuts it with the preload simulator's own `generated_sessions`: a user's views before the
cut are the device's history (recorded before its first decision), the views after it are the
sittings it plays. A device that outlives its sittings plays them again, shifted in time past
the last one (`endless_sessions`), so feature state keeps seeing views in time order.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterator, Sequence

from pitahaya.client_runtime import View
from pitahaya.simulation import Session

#: Views generated per device; about half become history, half the sittings it plays.
VIEWS_PER_DEVICE = 80
#: Share of the generated period that is history.
HISTORY_SHARE = 0.5


def device_id(index: int) -> str:
    return f"fleet-{index:05d}"


def device_feeds(devices: int, *, seed: int, views_per_device: int = VIEWS_PER_DEVICE) -> list[list[Session]]:
    """The sittings (with history) each of ``devices`` devices plays, one generated user each.

    Users without a sitting after the cut are skipped; when fewer users than devices remain,
    devices share users in turn (each still has its own runtime and state).
    """
    from pitahaya.training import GeneratorConfig, generate_views
    from pitahaya.simulation import generated_sessions

    config = GeneratorConfig(n_views=max(devices, 1) * views_per_device, n_users=max(devices, 1), seed=seed)
    views = generate_views(config)
    cut = config.start_ts + HISTORY_SHARE * config.days * 86_400.0
    sessions = generated_sessions(views, test_from=cut, max_users=None, min_views=1, seed=seed)
    by_user: dict[str, list[Session]] = {}
    for session in sessions:
        by_user.setdefault(session.user_id, []).append(session)
    users = sorted(by_user)
    return [by_user[users[i % len(users)]] for i in range(devices)]


def endless_sessions(sessions: Sequence[Session]) -> Iterator[list[Session]]:
    """``sessions`` (with their history), then copies shifted past the previous round, forever."""
    first = min(v.start_ts for s in sessions for v in (*s.history, *s.views))
    last = max(v.end_ts for s in sessions for v in s.views)
    span = last - first + 3600.0
    yield list(sessions)
    for k in itertools.count(1):
        shift = k * span
        yield [Session(s.user_id, tuple(_shifted(v, shift) for v in s.views)) for s in sessions]


def _shifted(view: View, shift_s: float) -> View:
    return dataclasses.replace(view, start_ts=view.start_ts + shift_s)
