"""File modes of what the registry writes (files themselves are written with
`pitahaya.client_runtime.files.write_atomic`; the publish lock is in `pitahaya.registry.locks`).
"""

#: Mode of the files the registry serves (metadata, blobs): public bytes that a proxy or CDN
#: on the host may read; private keys are written with `pitahaya.publisher.keys.KEY_FILE_MODE`.
PUBLIC_FILE_MODE = 0o644
