"""Walk the training run's parity views the way a device sees them.

A device holds one extractor per user and, for every decision, first asks for features and
only later folds the finished view in. `replay` is that loop, shared by the golden self-test
cases and the parity gate so both exercise the exact on-device order of calls.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

from pitahaya.client_runtime import FeatureExtractor, View


def streams_by_user(views: Sequence[View]) -> dict[str, list[int]]:
    """Row indices of each user's views, in file (= time) order, users in first-seen order."""
    streams: dict[str, list[int]] = {}
    for i, view in enumerate(views):
        streams.setdefault(view.user_id, []).append(i)
    return streams


def replay(
    views: Sequence[View], new_extractor: Callable[[], FeatureExtractor]
) -> Iterator[tuple[int, FeatureExtractor]]:
    """Yield ``(row, extractor)`` for every view, BEFORE the view is folded into its user's state.

    The caller asks the extractor for features of ``views[row]`` at its ``start_ts``; when
    control returns here the view is applied with ``update``, as a device does once it ends.
    """
    extractors: dict[str, FeatureExtractor] = {}
    for row, view in enumerate(views):
        extractor = extractors.get(view.user_id)
        if extractor is None:
            extractor = extractors[view.user_id] = new_extractor()
        yield row, extractor
        extractor.update(view)
