"""Errors of the publisher client, grouped by what the caller should do next.

::

    PublisherError                root: everything `pitahaya.publisher` raises on bad input or failed I/O
    ├── SigningKeyError           a key file is missing, readable by others, not a key, untrusted or
    │                             already there: fix the file (the registry's own key files raise it too)
    ├── SignatureHeaderError      a publisher-signatures header is not base64url JSON of its shape
    │                             (`PublisherSignatures.from_header`; the registry answers 422)
    ├── SigningRefusedError       nothing was signed or sent: the archive is not a package, the
    │                             registry's delegation does not list the key, or its current role
    │                             version does not verify under the delegation
    ├── RegistryUnavailable       no answer, or a 5xx: retry later with backoff
    └── RegistryRejected          the registry refused the request (4xx): fix it, don't retry

`RegistryClient` translates httpx's failures and the registry's error statuses at one
boundary into the last two; the registry's ``{"detail": ...}`` becomes
`RegistryRejected.message`. Misuse of the API (wrong types, calling a closed client) stays
``ValueError``/``RuntimeError`` outside this tree, so ``except PublisherError`` never hides a bug.
"""

from __future__ import annotations


class PublisherError(Exception):
    """Root of every error `pitahaya.publisher` raises on bad input or failed I/O."""


class SigningKeyError(PublisherError):
    """A signing key file is missing, readable by others, not a key, not trusted for the role
    it would sign (the registry checks its own keys so), or, when creating one, already there;
    nothing was changed. Restore, ``chmod 600`` or choose another file."""


class SignatureHeaderError(PublisherError):
    """A publisher-signatures header is not base64url JSON ``{version, expires, signatures}``
    of the documented shape and size."""


class SigningRefusedError(PublisherError):
    """The push was refused before anything was signed or sent: the archive is not a valid
    package, the registry does not delegate the scene to the given key, or the scene role's
    current version does not verify under the delegation (after a re-delegation to new keys,
    check its targets and pass ``trust_current=True``)."""


class RegistryUnavailable(PublisherError):
    """The registry could not be reached or failed (5xx); retry later with backoff.

    Attributes:
        status_code: The HTTP status when the server answered, else None.
    """

    def __init__(self, message: str, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


class RegistryRejected(PublisherError):
    """The registry refused the request (4xx); fix the request rather than retry.

    Attributes:
        status_code: The HTTP status (401, 403, 404, 409, 413, 422, 429, ...).
        message: The server's explanation, meant to be shown to the user.
    """

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(f"registry rejected the request ({status_code}): {message}")
        self.status_code = status_code
        self.message = message
