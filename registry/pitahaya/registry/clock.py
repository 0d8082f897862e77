"""The registry's one clock: timezone-aware UTC now, and the type of a clock tests replace.

Row timestamps (`models`), signature expiry (`tuf`), the quality gates and the UV windows all
read the time through `utcnow`, or through a `Clock` argument that defaults to it, so a test
can move time for one part without patching the others.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

#: Returns the current time, timezone-aware; tests pass a fake one to exercise expiry and windows.
Clock = Callable[[], datetime]


def utcnow() -> datetime:
    """The current time in UTC, timezone-aware."""
    return datetime.now(UTC)
