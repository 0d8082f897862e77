"""The device's recent views, numbered, so each loaded package can catch up on exactly what it missed."""

from __future__ import annotations

import threading
from collections import deque

from pitahaya.client_runtime.events import View


class RecentViews:
    """The last ``capacity`` views recorded on this device, each numbered from 1 in recording order.

    A loaded package remembers how many views it has folded into its feature state; before a
    call it asks `since` for the rest. When the views it still needs were already dropped (or
    it lost track after a failed call), it starts from a fresh state fed every view kept, as a
    newly installed package does. Thread-safe.
    """

    def __init__(self, capacity: int) -> None:
        self._views: deque[View] = deque(maxlen=capacity)
        self._count = 0
        self._lock = threading.Lock()

    def append(self, view: View) -> None:
        with self._lock:
            self._views.append(view)
            self._count += 1

    def since(self, applied: int | None) -> tuple[bool, tuple[View, ...], int]:
        """What a package that folded in the first ``applied`` views must do next.

        Args:
            applied: Views already folded in, or None when its state is unknown.

        Returns:
            ``(reset, views, count)``: start from a fresh state first if ``reset``, fold in
            ``views``, and remember ``count`` once that succeeded.
        """
        with self._lock:
            count, views = self._count, self._views
            if applied is None or not count - len(views) <= applied <= count:
                return True, tuple(views), count
            # the missed views are the newest ones: index from the end (O(1) each in a deque)
            return False, tuple(views[i] for i in range(applied - count, 0)), count
