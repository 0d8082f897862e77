"""The parity set: what a training run leaves for the packager's parity gate, written and read here only.

Training and packaging never import each other; both import this module, so the set's names,
layout and views codec (and where a logged model keeps its quantile heads) are defined once. A training run logs the set as the folder
`PARITY_DIR` of its MLflow artifacts; the packager downloads it, replays every view through
the package loaded as a device loads it, and compares features and predictions.

Layout of the folder:

- ``views.csv.gz``: the full, time-ordered streams of some held-out users (a `VIEW_FIELDS`
  header then the `ITEM_FIELDS` of the figures each view's candidate carried, empty for none;
  floats in their shortest round-trip form, gzip with a zero mtime: the same views give the
  same bytes);
- ``features.npy``: float32, one row per view in file order, as the scene's streaming
  extractor computes it;
- ``predictions.npy``: float32, the trained model's outputs for each of those rows: shape
  ``(rows,)`` for a point prediction only, ``(rows, 1 + k)`` with the point then one column per
  quantile level of the scene (`pitahaya.client_runtime.Scene.quantiles`).

The views codec (`write_views_csv`, `read_views_csv`) is also how event logs are written as
CSV or TSV, so every views CSV pitahaya writes has one format. NumPy and the standard library
only: this is the light leaf.
"""

from __future__ import annotations

import csv
import gzip
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from pitahaya.client_runtime.events import VIEW_FIELDS, View
from pitahaya.client_runtime.files import atomic_output, write_atomic
from pitahaya.client_runtime.item_stats import ITEM_FIELDS

#: The other half of the contract: where a logged model keeps its quantile heads. Each head is
#: a model of the point model's MLflow flavor in ``<model folder>/QUANTILES_DIR/<repr(level)>``,
#: and the levels are listed, increasing, under `QUANTILES_METADATA` in the model's MLmodel
#: metadata (a model without heads has neither).
QUANTILES_DIR = "quantiles"
QUANTILES_METADATA = "pitahaya.quantiles"
#: MLflow artifact folder of a training run that holds the parity set.
PARITY_DIR = "parity"
#: File names inside the folder.
VIEWS_FILE = "views.csv.gz"
FEATURES_ARRAY_FILE = "features.npy"
PREDICTIONS_FILE = "predictions.npy"


@dataclass(frozen=True, eq=False)
class ParitySet:
    """Held-out views with the features and predictions training computed for them.

    Attributes:
        views: Whole user streams, each user's views in time order.
        features: float32, shape ``(len(views), n_features)``.
        predictions: float32, shape ``(len(views),)``, or ``(len(views), 1 + k)``: the point
            prediction then the scene's k quantile levels, in order.

    Raises:
        ValueError: the arrays do not have one float32 row per view.
    """

    views: Sequence[View]
    features: np.ndarray
    predictions: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.views)
        if self.features.dtype != np.float32 or self.features.ndim != 2 or len(self.features) != n:
            raise ValueError(
                f"features must be float32 of shape ({n}, n_features), got {self.features.dtype} {self.features.shape}"
            )
        shape = self.predictions.shape
        if self.predictions.dtype != np.float32 or not (shape == (n,) or (len(shape) == 2 and shape[0] == n)):
            raise ValueError(
                f"predictions must be float32 of shape ({n},) or ({n}, outputs), got {self.predictions.dtype} {shape}"
            )

    def __len__(self) -> int:
        return len(self.views)

    @property
    def outputs(self) -> np.ndarray:
        """The predictions as a ``(rows, outputs)`` matrix (a point-only set has one column)."""
        return self.predictions.reshape(len(self.views), -1)

    def write(self, folder: Path) -> None:
        """Write the three files into ``folder`` (created if missing), each all-or-nothing."""
        text = io.StringIO()
        rows = ((v.user_id, v.video_id, v.start_ts, v.duration_s, v.watch_s, v.size_bytes, v.item) for v in self.views)
        write_views_csv(text, rows, with_item=True)
        write_atomic(folder / VIEWS_FILE, gzip.compress(text.getvalue().encode("utf-8"), mtime=0))
        for name, array in ((FEATURES_ARRAY_FILE, self.features), (PREDICTIONS_FILE, self.predictions)):
            with atomic_output(folder / name) as stream:
                np.save(stream, array)

    @classmethod
    def read(cls, folder: Path) -> ParitySet:
        """Read a parity set written by `write` (a training run's `PARITY_DIR`, downloaded).

        Raises:
            ValueError: a file is malformed (a views error names the line), or the files disagree
                in length or type.
            OSError: a file is missing or cannot be read.
        """
        with gzip.open(folder / VIEWS_FILE, "rt", encoding="utf-8", newline="") as stream:
            views = read_views_csv(stream, name=str(folder / VIEWS_FILE))
        return cls(views, np.load(folder / FEATURES_ARRAY_FILE), np.load(folder / PREDICTIONS_FILE))


def write_views_csv(
    stream: TextIO, rows: Iterable[Sequence[Any]], *, delimiter: str = ",", with_item: bool = False
) -> None:
    """Write a `VIEW_FIELDS` header, then one line per row of view fields (in `VIEW_FIELDS` order).

    ``with_item``: each row ends with its view's `ItemStats` (or None), written as `ITEM_FIELDS`
    columns (empty for None).

    Times and durations are written as the ``repr`` of a float, its shortest round-trip form,
    so reading the file back gives equal views. An unknown duration or size (None, or 0 as
    arrays hold it) is an empty field. Lines end with RFC 4180's ``\r\n``: the writer
    quotes a field holding any character of the line end, so an id with a bare ``\r`` (which a
    reader takes for a line end) is quoted too.
    """
    writer = csv.writer(stream, delimiter=delimiter, lineterminator="\r\n")
    writer.writerow(VIEW_FIELDS + ITEM_FIELDS if with_item else VIEW_FIELDS)
    for user_id, video_id, start_ts, duration_s, watch_s, size_bytes, *rest in rows:
        line = [
            user_id,
            video_id,
            repr(float(start_ts)),
            repr(float(duration_s)) if duration_s else "",
            repr(float(watch_s)),
            int(size_bytes) if size_bytes else "",
        ]
        if with_item:
            item = rest[0]
            line += ("",) * len(ITEM_FIELDS) if item is None else (item.views, *map(repr, item.as_tuple()[1:]))
        writer.writerow(line)


def read_views_csv(stream: TextIO, *, name: str = "<views>") -> list[View]:
    """Read views, in file order, from CSV text with a `VIEW_FIELDS` header (and `ITEM_FIELDS`, if there).

    Columns that are neither are ignored.

    Raises:
        ValueError: the header lacks a column or a row is not a valid view (names ``name``
            and the line).
    """
    reader = csv.DictReader(stream)
    missing = [field for field in VIEW_FIELDS if field not in (reader.fieldnames or [])]
    if missing:
        raise ValueError(f"{name}: header lacks {', '.join(missing)}")
    views = []
    for row in reader:
        try:
            views.append(View.from_dict(row))
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"{name}:{reader.line_num}: malformed view: {e}") from e
    return views
