"""The push wire format of a delegated scene: what a signed push carries and what it signs.

A scene delegated to publisher keys (``publisher-<scene>``, terminating, ``packages/<scene>/*``)
takes only pushes signed with them. The publisher signs the role's next version, which
`next_delegated_metadata` determines (current version + 1, the current targets plus the new
archive's entry); the push carries only the signatures, in the ``X-Pitahaya-Publisher-Signatures``
header (`PublisherSignatures`). The registry rebuilds the same document with the same function
and checks the signatures against the delegation, so the two sides agree by construction::

    unsigned = next_delegated_metadata(current, target, datetime.now(UTC) + DELEGATED_EXPIRY)
    header = PublisherSignatures.sign(unsigned, signers).to_header()     # publisher
    signed = PublisherSignatures.from_header(header)                      # registry
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, UTC

from securesystemslib.signer import Signature, Signer
from tuf.api.metadata import Metadata, TargetFile, Targets

from pitahaya.publisher.errors import SignatureHeaderError

#: A publisher role's signature: long, because only the publisher can renew it (by pushing).
DELEGATED_EXPIRY = timedelta(days=365)

#: Longest header value `PublisherSignatures.from_header` reads, in characters: a signature
#: takes about 300, so this allows ~200 keys while bounding what a junk header can allocate.
MAX_HEADER_LENGTH = 64 * 1024

_EXPIRES_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def next_delegated_metadata(
    current: Metadata[Targets] | None, target: TargetFile, expires: datetime
) -> Metadata[Targets]:
    """The unsigned next version of a publisher role: ``current`` plus ``target``, version + 1.

    The publisher (signing) and the registry (verifying) both build it with this function,
    so a push carries only signatures: nothing but this exact document verifies under them,
    and it can neither drop nor alter another target.
    """
    targets = dict(current.signed.targets) if current is not None else {}
    targets[target.path] = target
    version = current.signed.version + 1 if current is not None else 1
    return Metadata(Targets(version=version, expires=expires.replace(microsecond=0), targets=targets))


@dataclass(frozen=True)
class PublisherSignatures:
    """A publisher's signatures over its scene role's next version: what a signed push carries.

    The document itself is not sent: `next_delegated_metadata` rebuilds it from the current
    version, the archive and ``expires``, so the payload stays a few hundred bytes however many
    packages the scene has, and fits the ``X-Pitahaya-Publisher-Signatures`` request header.

    Attributes:
        version: The role version signed (current + 1), a positive integer.
        expires: Its expiry: UTC, in whole seconds (as TUF metadata writes it).
        signatures: One per publisher key used, at least one; keyid and signature are text.
    """

    HEADER = "X-Pitahaya-Publisher-Signatures"

    version: int
    expires: datetime
    signatures: tuple[Signature, ...]

    @classmethod
    def sign(cls, unsigned: Metadata[Targets], signers: Sequence[Signer]) -> PublisherSignatures:
        """Sign ``unsigned`` (from `next_delegated_metadata`) with every signer."""
        signatures = tuple(signer.sign(unsigned.signed_bytes) for signer in signers)
        return cls(unsigned.signed.version, unsigned.signed.expires, signatures)

    def to_header(self) -> str:
        """The header value: base64url of JSON ``{version, expires, signatures}``."""
        document = {
            "version": self.version,
            # The year zero-padded: strftime writes year 5 as "5", which strptime's %Y refuses.
            "expires": f"{self.expires.year:04d}-{self.expires:%m-%dT%H:%M:%S}Z",
            "signatures": [signature.to_dict() for signature in self.signatures],
        }
        return base64.urlsafe_b64encode(json.dumps(document).encode()).decode()

    @classmethod
    def from_header(cls, value: str) -> PublisherSignatures:
        """Parse a header value written by `to_header`.

        Raises:
            SignatureHeaderError: longer than `MAX_HEADER_LENGTH`, or not base64url JSON of
                that shape (a positive integer version, an expiry, a non-empty list of
                signatures whose keyid and sig are text).
        """
        if len(value) > MAX_HEADER_LENGTH:
            raise SignatureHeaderError(f"{cls.HEADER} is longer than {MAX_HEADER_LENGTH} characters")
        try:
            document = json.loads(base64.urlsafe_b64decode(value.encode("ascii")))
            version = document["version"]
            expires = datetime.strptime(document["expires"], _EXPIRES_FORMAT).replace(tzinfo=UTC)
            items = document["signatures"]
            if not isinstance(items, list) or not all(_is_signature(item) for item in items):
                raise ValueError("signatures must be a list of {keyid, sig} objects with text values")
            signatures = tuple(Signature.from_dict(dict(item)) for item in items)
            if not isinstance(version, int) or isinstance(version, bool) or version < 1 or not signatures:
                raise ValueError("version must be a positive integer and signatures non-empty")
        except (binascii.Error, UnicodeError, ValueError, KeyError, TypeError, RecursionError) as e:
            # RecursionError: JSON nested deeper than the interpreter's stack (a few KB suffice).
            raise SignatureHeaderError(
                f"{cls.HEADER} must be base64url JSON {{version, expires, signatures}}: {type(e).__name__}: {e}"
            ) from None
        return cls(version, expires, signatures)


def _is_signature(item: object) -> bool:
    return isinstance(item, dict) and isinstance(item.get("keyid"), str) and isinstance(item.get("sig"), str)
