"""pitahaya publisher client: push signed packages to a registry and manage releases, from a CI job.

It installs without the registry's server, database or cloud libraries (httpx, tuf and the
client runtime only), so a publisher's CI can ``pip install ./client_runtime ./publisher``::

    from pitahaya.publisher import RegistryClient, load_private_key

    with RegistryClient(url, token=os.environ["PITAHAYA_REGISTRY_TOKEN"]) as registry:
        registry.push(archive, signers=[load_private_key(Path("publisher.pem"))])
        registry.create_release("watch_time", "1.1.0", gate="standard")

`RegistryClient` (``client``) speaks the registry's HTTP API; ``keys`` creates and loads the
publisher's ed25519 key files; ``wire`` is the signed-push format the registry verifies
(`pitahaya.publisher.wire.PublisherSignatures`); every error derives from `PublisherError`
(``errors``).
"""

from pitahaya.publisher.client import RegistryClient
from pitahaya.publisher.errors import (
    PublisherError,
    RegistryRejected,
    RegistryUnavailable,
    SignatureHeaderError,
    SigningKeyError,
    SigningRefusedError,
)
from pitahaya.publisher.keys import create_key_pair, load_private_key, load_public_key
from pitahaya.publisher.wire import PublisherSignatures

__all__ = [
    "PublisherError",
    "PublisherSignatures",
    "RegistryClient",
    "RegistryRejected",
    "RegistryUnavailable",
    "SignatureHeaderError",
    "SigningKeyError",
    "SigningRefusedError",
    "create_key_pair",
    "load_private_key",
    "load_public_key",
]
