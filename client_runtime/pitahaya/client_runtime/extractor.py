"""The feature-extractor contract and the isolated loader for a package's ``features.py``.

A scene's ``features.py`` defines one subclass of `FeatureExtractor` named ``Extractor``.
An extractor holds the streaming state of *one* user: the device calls `update` with each
finished view and `transform` to get the model input for upcoming candidates. Training
builds its matrix by running the very same class over each user's stream in time order, so
what a device computes is what the model was trained on.

``features.py`` is loaded from source with `load_feature_code`, into a fresh module that is
never registered in ``sys.modules``: two package versions can be loaded side by side and a
package cannot monkey-patch another one's code by importing it.
"""

from __future__ import annotations

import abc
import types
from collections.abc import Sequence
from typing import ClassVar

import numpy as np

from pitahaya.client_runtime.errors import FeatureCodeError
from pitahaya.client_runtime.events import Candidate, View

#: Name of the class a scene's feature code must define.
EXTRACTOR_CLASS = "Extractor"


class FeatureExtractor(abc.ABC):
    """Streaming feature state of one user.

    Subclasses set `feature_names` and implement `update` and `transform`. They must be
    deterministic functions of the views seen so far, the candidates and ``now``, and
    compute in float64 before the final float32 store, so that training and device agree.
    """

    #: Names of the model inputs, in column order.
    feature_names: ClassVar[tuple[str, ...]] = ()

    @abc.abstractmethod
    def update(self, view: View) -> None:
        """Fold one finished view (in time order) into the state."""

    @abc.abstractmethod
    def transform(self, candidates: Sequence[Candidate], now: float, out: np.ndarray) -> None:
        """Write one feature row per candidate into ``out``.

        Args:
            candidates: Upcoming videos, in play order.
            now: Decision time, seconds since the Unix epoch.
            out: float32 array of shape ``(len(candidates), len(feature_names))`` to fill.
        """

    def features(self, candidates: Sequence[Candidate], now: float) -> np.ndarray:
        """Allocate and return the feature matrix for ``candidates`` (convenience, not the hot path)."""
        out = np.empty((len(candidates), len(self.feature_names)), dtype=np.float32)
        self.transform(candidates, now, out)
        return out


def load_code(source: str, *, name: str, file: str = "features.py") -> types.ModuleType:
    """Execute Python source in a fresh module that is never registered in ``sys.modules``.

    Args:
        source: Text of the code.
        name: Module name used in tracebacks.
        file: File the source came from, for the error message.

    Raises:
        FeatureCodeError: the code fails to compile or import.
    """
    module = types.ModuleType(name)
    module.__file__ = f"<{name}>"
    try:
        code = compile(source, module.__file__, "exec")
        exec(code, module.__dict__)  # noqa: S102 - verified package code, see the security model
    except Exception as e:  # any error in third-party code is a bad package, not a crash
        raise FeatureCodeError(f"{file} failed to import: {type(e).__name__}: {e}") from e
    return module


def load_feature_module(source: str, *, name: str = "pitahaya_features") -> types.ModuleType:
    """Execute ``features.py`` source in an isolated module (`load_code`) and check its extractor.

    Returns:
        The module; its ``Extractor`` is a valid `FeatureExtractor` subclass.

    Raises:
        FeatureCodeError: the code fails to compile or import, or defines no valid extractor.
    """
    module = load_code(source, name=name)
    cls = getattr(module, EXTRACTOR_CLASS, None)
    if not (isinstance(cls, type) and issubclass(cls, FeatureExtractor)):
        raise FeatureCodeError(f"features.py must define class {EXTRACTOR_CLASS}(FeatureExtractor)")
    if not cls.feature_names or len(set(cls.feature_names)) != len(cls.feature_names):
        raise FeatureCodeError("Extractor.feature_names must be a non-empty tuple of unique names")
    return module


def load_feature_code(source: str, *, name: str = "pitahaya_features") -> type[FeatureExtractor]:
    """Execute ``features.py`` source in an isolated module and return its extractor class.

    Args:
        source: Text of the feature code.
        name: Module name used in tracebacks (not registered in ``sys.modules``).

    Returns:
        The module's ``Extractor`` class, a `FeatureExtractor` subclass.

    Raises:
        FeatureCodeError: the code fails to compile or import, or defines no valid extractor.
    """
    extractor: type[FeatureExtractor] = getattr(load_feature_module(source, name=name), EXTRACTOR_CLASS)
    return extractor
