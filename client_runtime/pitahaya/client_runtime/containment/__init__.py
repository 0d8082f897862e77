"""The compute container: publisher code runs under a deadline, outside the host's reach.

A package's ``features.py`` is code the device did not write. `ContainedPackage` loads a
verified package behind an isolation mode (`Isolation`: a sandboxed worker process by
default) within `Limits`, judges its self-test outside it, and answers calls within a
deadline; `preflight` is the same load for the registry at push. See ``docs/SECURITY.md``
for what each mode guarantees and what it does not.
"""

from pitahaya.client_runtime.containment.contained import ContainedPackage, preflight
from pitahaya.client_runtime.containment.limits import CALL_TIMEOUT_KEY, ISOLATION_MODES, Isolation, Limits
from pitahaya.client_runtime.containment.wire import RequestTooLarge

__all__ = [
    "CALL_TIMEOUT_KEY",
    "ContainedPackage",
    "ISOLATION_MODES",
    "Isolation",
    "Limits",
    "RequestTooLarge",
    "preflight",
]
