"""Read the training run's parity views and walk them the way a device sees them.

A device holds one extractor per user and, for every decision, first asks for features and
only later folds the finished view in. `replay` is that loop, shared by the golden self-test
cases and the parity gate so both exercise the exact on-device order of calls.
"""

from __future__ import annotations

import csv
import gzip
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from pitahaya.client_runtime import VIEW_FIELDS, FeatureExtractor, View

from pitahaya.packaging.errors import PackagingError


def read_views_csv(path: Path) -> list[View]:
    """Read a (optionally gzipped) CSV of views with a `VIEW_FIELDS` header, in file order.

    Raises:
        PackagingError: the header lacks a column or a row is malformed (names the line).
        OSError: the file cannot be read.
    """
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8", newline="") as stream:
        reader = csv.DictReader(stream)
        missing = [name for name in VIEW_FIELDS if name not in (reader.fieldnames or [])]
        if missing:
            raise PackagingError(f"{path}: header lacks {', '.join(missing)}")
        views = []
        for row in reader:
            try:
                views.append(View.from_dict(row))
            except (KeyError, TypeError, ValueError) as e:
                raise PackagingError(f"{path}:{reader.line_num}: malformed view: {e}") from e
    return views


def streams_by_user(views: Sequence[View]) -> dict[str, list[int]]:
    """Row indices of each user's views, in file (= time) order, users in first-seen order."""
    streams: dict[str, list[int]] = {}
    for i, view in enumerate(views):
        streams.setdefault(view.user_id, []).append(i)
    return streams


def replay(views: Sequence[View], new_extractor: Callable[[], FeatureExtractor]) -> Iterator[tuple[int, FeatureExtractor]]:
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
