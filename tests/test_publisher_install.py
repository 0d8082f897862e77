"""A publisher's CI, for real: ``pip install ./client_runtime ./publisher`` into a fresh venv,
then, with that venv's Python, make a publisher key, push a signed package to a real registry
process on 127.0.0.1 and release it. No server, database or cloud library may come with it.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pitahaya.cli.app import app
from pitahaya.client_runtime import target_path

from e2e_support import LiveRegistry, Pipeline
from venvs import pip_install

pytestmark = [pytest.mark.network, pytest.mark.e2e]

REPO = Path(__file__).resolve().parents[1]
SCENE = "watch_time"

#: Distributions the registry needs and a publisher's CI must not get.
SERVER_DISTRIBUTIONS = {"fastapi", "starlette", "sqlalchemy", "uvicorn", "psycopg", "psycopg-binary", "boto3",
                        "mlflow", "mlflow-skinny", "prometheus-client"}  # fmt: skip

#: Run by the venv's Python, from a folder outside the repo: ``keygen DIR`` or ``publish URL TOKEN ARCHIVE KEY``.
PUBLISHER_CI = """
import importlib.util, json, sys
from pathlib import Path

import pitahaya.publisher
from pitahaya.publisher import RegistryClient, create_key_pair, load_private_key

assert "site-packages" in pitahaya.publisher.__file__, pitahaya.publisher.__file__
assert importlib.util.find_spec("pitahaya.registry") is None
if sys.argv[1] == "keygen":
    folder = Path(sys.argv[2])
    signer = create_key_pair(folder / "publisher.pem", folder / "publisher.pub.pem")
    print(json.dumps({"keyid": signer.public_key.keyid}))
else:
    url, token, archive, key = sys.argv[2:6]
    with RegistryClient(url, token=token) as registry:
        pushed = registry.push(Path(archive).read_bytes(), signers=[load_private_key(Path(key))])
        released = registry.create_release(pushed["scene"], pushed["version"], rollout_percent=10)
    print(json.dumps({"pushed": pushed, "released": released}))
"""


def _installed(python: Path) -> set[str]:
    code = "import importlib.metadata as m, json; print(json.dumps([d.metadata['Name'] for d in m.distributions()]))"
    out = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True)
    return {name.lower().replace("_", "-") for name in json.loads(out.stdout)}


def _publisher_ci(python: Path, *args: str, cwd: Path) -> dict:
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    out = subprocess.run(
        [str(python), "-c", PUBLISHER_CI, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout)


def test_a_ci_with_only_the_publisher_installed_pushes_signs_and_releases(
    tmp_path: Path, live_registry: LiveRegistry, pipeline: Pipeline
) -> None:
    python = pip_install(tmp_path, "--quiet", str(REPO / "client_runtime"), str(REPO / "publisher"))
    installed = _installed(python)
    assert {"pitahaya-publisher", "pitahaya-client", "httpx", "tuf", "cryptography"} <= installed
    assert installed & SERVER_DISTRIBUTIONS == set()

    # The publisher makes its key in CI; the registry's admin delegates the scene to its public half.
    ci_home = tmp_path / "ci"
    ci_home.mkdir()
    keyid = _publisher_ci(python, "keygen", str(ci_home), cwd=ci_home)["keyid"]
    tuf_dir = live_registry.data_dir / "registry" / "tuf"
    args = ["--scene", SCENE, "--publisher-key", str(ci_home / "publisher.pub.pem"), "--tuf-dir", str(tuf_dir)]
    delegated = CliRunner().invoke(app, ["keys", "delegate", *args, "--json"])
    assert delegated.exit_code == 0, delegated.output
    assert json.loads(delegated.stdout)["keyids"] == [keyid]

    result = _publisher_ci(
        python,
        "publish",
        live_registry.url,
        live_registry.token,
        str(pipeline.built.path),
        str(ci_home / "publisher.pem"),
        cwd=ci_home,
    )
    assert (result["pushed"]["scene"], result["pushed"]["version"]) == (SCENE, "1.0.0")
    assert (result["released"]["package_version"], result["released"]["rollout_percent"]) == ("1.0.0", 10)

    with live_registry.client() as registry:
        assert [(p["scene"], p["version"]) for p in registry.list_packages()] == [(SCENE, "1.0.0")]
        assert [r["package_version"] for r in registry.list_releases(SCENE)] == ["1.0.0"]
        delegation = registry.get_delegation(SCENE)
    # The package is signed by the CI's key, in the scene's delegated role, not by the registry.
    assert list(delegation["metadata"]["signed"]["targets"]) == [target_path(SCENE, "1.0.0")]
    assert [s["keyid"] for s in delegation["metadata"]["signatures"]] == [keyid]
