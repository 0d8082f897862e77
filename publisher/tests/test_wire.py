"""The signed-push header: every valid value survives the round trip, and junk is refused as junk.

The registry parses this header from whoever sends it, so `PublisherSignatures.from_header`
must answer any string with a value or `SignatureHeaderError` (the registry's 422), never with
another exception (a 500) or an allocation the string's length does not bound.
"""

from __future__ import annotations

import base64
import json
from datetime import datetime, UTC

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from securesystemslib.signer import CryptoSigner, Signature
from tuf.api.metadata import TargetFile

from pitahaya.publisher import PublisherSignatures, SignatureHeaderError
from pitahaya.publisher.wire import MAX_HEADER_LENGTH, next_delegated_metadata

#: Expiries TUF can write: UTC, whole seconds, years 1 to 9999.
expiries = st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59)).map(
    lambda moment: moment.replace(microsecond=0, tzinfo=UTC)
)
signatures = st.builds(Signature, keyid=st.text(min_size=1, max_size=64), sig=st.text(max_size=64))
values = st.builds(
    PublisherSignatures,
    version=st.integers(min_value=1, max_value=2**63),
    expires=expiries,
    signatures=st.lists(signatures, min_size=1, max_size=8).map(tuple),
)


def _header(document: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(document).encode()).decode()


@settings(max_examples=300, deadline=None)
@given(values)
@example(PublisherSignatures(1, datetime(5, 1, 1, tzinfo=UTC), (Signature("k", "s"),)))  # strftime writes year 5 as "5"
def test_every_valid_value_round_trips(value: PublisherSignatures) -> None:
    assert PublisherSignatures.from_header(value.to_header()) == value


def test_a_real_signature_round_trips_and_still_verifies() -> None:
    signer = CryptoSigner.generate_ed25519()
    target = TargetFile(length=3, hashes={"sha256": "ab" * 32}, path="packages/s/s-1.0.0.tar.xz")
    unsigned = next_delegated_metadata(None, target, datetime(2030, 1, 2, 3, 4, 5, 678, tzinfo=UTC))
    parsed = PublisherSignatures.from_header(PublisherSignatures.sign(unsigned, [signer]).to_header())
    assert (parsed.version, parsed.expires) == (1, datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC))
    signer.public_key.verify_signature(parsed.signatures[0], unsigned.signed_bytes)


#: Strings a client might send: arbitrary text, base64 of arbitrary bytes, base64 of arbitrary
#: JSON (the right shape with wrong types, wrong shapes), and deeply nested JSON.
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)
shaped = st.fixed_dictionaries(
    {"version": json_values, "expires": json_values, "signatures": json_values | st.lists(json_values, max_size=3)}
)
junk = st.one_of(
    st.text(),
    st.binary().map(lambda data: base64.urlsafe_b64encode(data).decode()),
    json_values.map(_header),
    shaped.map(_header),
    st.integers(min_value=1, max_value=20_000).map(
        lambda depth: base64.urlsafe_b64encode(b"[" * depth + b"]" * depth).decode()
    ),
)


@settings(max_examples=500, deadline=None)
@given(junk)
@example(base64.urlsafe_b64encode(b"[" * 10_000).decode())  # deeper than the interpreter's stack, 13 KB
@example(_header({"version": True, "expires": "2030-01-01T00:00:00Z", "signatures": [{"keyid": "k", "sig": "s"}]}))
@example(_header({"version": 1, "expires": "2030-01-01T00:00:00Z", "signatures": [{"keyid": ["k"], "sig": "s"}]}))
@example(_header({"version": 1, "expires": "2030-01-01T00:00:00Z", "signatures": []}))
@example("x" * (MAX_HEADER_LENGTH + 1))
def test_junk_raises_the_documented_error_and_nothing_else(value: str) -> None:
    try:
        parsed = PublisherSignatures.from_header(value)
    except SignatureHeaderError:
        return
    # Some junk is a valid header by chance; then it is a well-formed value.
    assert isinstance(parsed.version, int) and parsed.version >= 1 and parsed.signatures
    assert all(isinstance(s.keyid, str) and isinstance(s.signature, str) for s in parsed.signatures)


def test_an_oversized_header_is_refused_before_it_is_decoded() -> None:
    with pytest.raises(SignatureHeaderError, match="longer than"):
        PublisherSignatures.from_header("A" * (MAX_HEADER_LENGTH + 1))
