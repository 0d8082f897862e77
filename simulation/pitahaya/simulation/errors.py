"""Errors of the preload simulator, named by what the caller does next.

::

    SimulationError                 root: nothing was simulated
    ├── SessionSourceError          the session data is missing or malformed: fix the path or the file
    └── NetworkSourceError          the bandwidth traces are missing or malformed: fix the path or the class

Caller bugs (negative time step, empty policy list) stay `ValueError`.
"""

from __future__ import annotations


class SimulationError(Exception):
    """Root of the simulator's errors."""


class SessionSourceError(SimulationError):
    """Sessions could not be read (missing folder, unreadable file, no usable views)."""


class NetworkSourceError(SimulationError):
    """Bandwidth traces could not be read (missing folder, unknown class, malformed sample)."""
