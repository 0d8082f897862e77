"""infra/: the deployment files are valid for their tools and agree with the registry they deploy.

Neither Docker nor a Kubernetes cluster is available where these tests run, so the files are
checked offline: the Kubernetes manifests against the API's JSON schemas (kubernetes-validate),
compose.yaml against the compose spec (vendored by check-jsonschema), and all of them against
the registry itself: its settings, its routes, its image.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from limits.storage import storage_from_string
from pydantic import TypeAdapter
from securesystemslib.signer import CryptoSigner

from pitahaya.publisher.keys import SigningKeyError, load_private_key
from pitahaya.registry import Settings, create_app
from pitahaya.registry.settings import ENV_PREFIX
from pitahaya.registry.tuf import OFFLINE_ROLES, ONLINE_ROLES

INFRA = Path(__file__).resolve().parents[1] / "infra"
K8S = INFRA / "k8s"
DOCKERFILE = INFRA / "Dockerfile.registry"
#: The Kubernetes version the manifests must be valid for (strict: no unknown fields).
KUBERNETES_VERSION = "1.33.0"
#: The Secret the manifests read and the README tells operators to create; never committed.
SECRET = "pitahaya-registry"
#: The Secret holding the registry's online TUF keys (``<role>.pem``), created by an admin.
KEYS_SECRET = "pitahaya-tuf-keys"
#: The compose volume of the online keys (written by the one-shot migration, read by replicas).
KEYS_VOLUME = "tuf-keys"
#: Variables the registry's containers may set besides PITAHAYA_* settings: uvicorn's trust of
#: X-Forwarded-For (compose, where nginx is the only client).
NON_SETTING_VARIABLES = {"FORWARDED_ALLOW_IPS"}
#: The only compose service published on every interface: the public entry point.
PUBLIC_SERVICE = "nginx"
SHA256_PIN = re.compile(r"@sha256:[0-9a-f]{64}$")
INTERPOLATION = re.compile(r"\$\{(\w+)(?::\?[^}]*)?\}")
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN")


def _kustomization_documents() -> list[dict[str, Any]]:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    return [doc for name in kustomization["resources"] for doc in yaml.safe_load_all((K8S / name).read_text())]


def _walk(node: Any) -> Iterator[dict[str, Any]]:
    """Every mapping inside a parsed YAML document, depth first."""
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def _containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for mapping in _walk(doc) for c in mapping.get("containers", [])]


def _pod_specs() -> list[tuple[str, dict[str, Any]]]:
    """(kind, pod spec) of every workload of the kustomization."""
    return [(doc["kind"], spec) for doc in _kustomization_documents() for spec in _walk(doc) if "containers" in spec]


def _secret_examples() -> dict[str, dict[str, Any]]:
    """The Secrets of secret.example.yaml, by name."""
    return {doc["metadata"]["name"]: doc for doc in yaml.safe_load_all((K8S / "secret.example.yaml").read_text())}


def _config_map() -> dict[str, str]:
    (data,) = [doc["data"] for doc in _kustomization_documents() if doc["kind"] == "ConfigMap"]
    return data


def _keys_dir(data_dir: Path) -> Path:
    """Where the registry looks for its online keys, given its data dir."""
    return Settings(data_dir=data_dir, registry_token="t" * 32).resolved_tuf_dir / "keys"


def _image_env(name: str) -> str:
    """A variable the registry image sets (ENV in Dockerfile.registry)."""
    match = re.search(rf"\b{name}=(\S+)", DOCKERFILE.read_text())
    assert match, name
    return match.group(1)


def _mounts(service: dict[str, Any]) -> dict[str, tuple[str, bool]]:
    """A compose service's volumes in short syntax: target -> (source, read-only)."""
    mounts = {}
    for volume in service.get("volumes", []):
        source, target, *mode = volume.split(":")
        mounts[target] = (source, mode == ["ro"])
    return mounts


def _compose() -> dict[str, Any]:
    return yaml.safe_load((INFRA / "compose.yaml").read_text())


def _registry_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The compose services that run the registry image (built from Dockerfile.registry)."""
    return {
        name: service
        for name, service in compose["services"].items()
        if service.get("build", {}).get("dockerfile") == "infra/Dockerfile.registry"
    }


def _stages(dockerfile: str) -> list[list[str]]:
    """The Dockerfile's instructions (continuation lines joined, comments dropped), by stage."""
    instructions = re.sub(r"\\\n\s*", " ", re.sub(r"(?m)^\s*#.*\n", "", dockerfile)).splitlines()
    stages: list[list[str]] = []
    for line in filter(str.strip, instructions):
        if line.startswith("FROM "):
            stages.append([])
        stages[-1].append(line)
    return stages


@pytest.mark.parametrize("doc", _kustomization_documents(), ids=lambda d: f"{d['kind']}-{d['metadata']['name']}")
def test_every_manifest_of_the_kustomization_is_valid_kubernetes(doc: dict[str, Any]) -> None:
    kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_the_secret_examples_are_valid_kubernetes_and_left_out_of_the_kustomization() -> None:
    examples = _secret_examples()
    for example in examples.values():
        kubernetes_validate.validate(example, KUBERNETES_VERSION, strict=True)
    assert set(examples) == {SECRET, KEYS_SECRET}
    # The online keys only: the offline ones never go to the cluster.
    assert set(examples[KEYS_SECRET]["stringData"]) == {f"{role}.pem" for role in ONLINE_ROLES}
    assert not {f"{role}.pem" for role in OFFLINE_ROLES} & set(examples[SECRET]["stringData"])
    assert not [d for d in _kustomization_documents() if d["kind"] == "Secret"], "placeholders would be applied"


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed (CI has none)")
def test_kustomize_renders() -> None:
    rendered = subprocess.run(["kubectl", "kustomize", str(K8S)], capture_output=True, text=True, check=True).stdout
    kinds = {doc["kind"] for doc in yaml.safe_load_all(rendered)}
    assert {"Deployment", "Service", "Job", "CronJob", "HorizontalPodAutoscaler"} <= kinds
    assert "image: registry.example.com/pitahaya-registry:0.1.0" in rendered


def test_config_and_secret_references_resolve() -> None:
    docs = _kustomization_documents()
    config_maps = {d["metadata"]["name"]: d["data"] for d in docs if d["kind"] == "ConfigMap"}
    secrets = {name: example["stringData"] for name, example in _secret_examples().items()}
    secret_keys = secrets[SECRET]
    references = 0
    for mapping in (m for doc in docs for m in _walk(doc)):
        if ref := mapping.get("secretKeyRef"):
            assert ref["name"] == SECRET and ref["key"] in secret_keys, ref
        if (volume := mapping.get("secret")) and "secretName" in volume:
            assert volume["secretName"] in secrets, volume
            assert {item["key"] for item in volume["items"]} == set(secrets[volume["secretName"]]), volume
        if ref := mapping.get("configMapKeyRef"):
            assert ref["key"] in config_maps.get(ref["name"], {}), ref
        if ref := mapping.get("configMapRef"):
            assert ref["name"] in config_maps, ref
        if ref := mapping.get("secretRef"):
            assert ref["name"] == SECRET, ref
        references += any(k in mapping for k in ("secretKeyRef", "configMapKeyRef", "configMapRef", "secretRef"))
    assert references
    readme = (INFRA / "README.md").read_text()
    assert f"secret generic {SECRET}" in readme and f"secret generic {KEYS_SECRET}" in readme


def test_every_variable_the_deployments_set_is_a_registry_setting() -> None:
    settings = {f"{ENV_PREFIX}{name.upper()}" for name in Settings.model_fields}
    docs = _kustomization_documents()
    names = {env["name"] for doc in docs for c in _containers(doc) for env in c.get("env", [])}
    names |= {key for doc in docs if doc["kind"] == "ConfigMap" for key in doc["data"]}
    names |= set(_secret_examples()[SECRET]["stringData"])
    names |= {key for service in _registry_services(_compose()).values() for key in service["environment"]}
    assert names - NON_SETTING_VARIABLES <= settings, sorted(names - NON_SETTING_VARIABLES - settings)


def test_every_literal_value_the_deployments_set_has_its_setting_s_type() -> None:
    fields = {f"{ENV_PREFIX}{name.upper()}": field for name, field in Settings.model_fields.items()}
    values = list(_config_map().items()) + [
        (key, value)
        for service in _registry_services(_compose()).values()
        for key, value in service["environment"].items()
        if not INTERPOLATION.search(str(value))
    ]
    checked = 0
    for key, value in values:
        if key in fields:
            TypeAdapter(fields[key].annotation).validate_python(value)
            checked += 1
    assert checked >= 10


def test_tuf_metadata_is_kept_in_the_database_everywhere() -> None:
    assert _config_map()["PITAHAYA_TUF_STORAGE"] == "database"
    for name, service in _registry_services(_compose()).items():
        assert service["environment"]["PITAHAYA_TUF_STORAGE"] == "database", name
        assert service["environment"]["PITAHAYA_DATABASE_URL"].startswith("postgresql+psycopg://"), name


def test_probe_and_healthcheck_paths_are_registry_routes(tmp_path: Path) -> None:
    app = create_app(Settings(data_dir=tmp_path, registry_token="t" * 32, mlflow_forwarding=False))
    routes = set(app.openapi()["paths"])
    probes = {
        probe["httpGet"]["path"]
        for doc in _kustomization_documents()
        for c in _containers(doc)
        for probe in (c.get(k) for k in ("startupProbe", "livenessProbe", "readinessProbe"))
        if probe
    }
    healthcheck = re.findall(r"http://127\.0\.0\.1:8000(/\w+)", DOCKERFILE.read_text())
    assert {"/healthz", "/readyz"} <= probes
    assert healthcheck == ["/readyz"]
    assert probes | set(healthcheck) <= routes


def test_the_image_is_pinned_and_its_final_stage_runs_only_the_cli_as_non_root() -> None:
    stages = _stages(DOCKERFILE.read_text())
    bases = {stage[0].split()[1] for stage in stages}
    assert len(stages) >= 2 and len(bases) == 1, "build and final stage share one base (the venv's interpreter)"
    assert all(SHA256_PIN.search(base) for base in bases), bases
    final = stages[-1]
    assert not [line for line in final if re.search(r"\buv\b", line)], "uv stays in the build stage"
    assert not [line for line in final if line.startswith("COPY") and "--from=" not in line], "no sources"
    user = [line.split()[1] for line in final if line.startswith("USER ")]
    assert user and user[-1].split(":")[0] not in {"root", "0"}
    assert [json.loads(line.removeprefix("ENTRYPOINT ")) for line in final if line.startswith("ENTRYPOINT")] == [
        ["pitahaya"]
    ]
    assert any(line.startswith("HEALTHCHECK") for line in final)


def test_compose_follows_the_compose_spec() -> None:
    schema = json.loads(
        resources.files("check_jsonschema").joinpath("builtin_schemas/vendor/compose-spec.json").read_text()
    )
    jsonschema.validators.validator_for(schema)(schema).validate(_compose())


def test_compose_images_are_pinned_and_secrets_come_from_the_env_file() -> None:
    compose = _compose()
    documented = set(re.findall(r"(?m)^(\w+)=", (INFRA / ".env.example").read_text()))
    for name, service in compose["services"].items():
        if "build" not in service:
            image = service["image"]
            assert re.search(r":[\w.-]+(@sha256:[0-9a-f]{64})?$", image) and ":latest" not in image, (name, image)
        for key, value in service.get("environment", {}).items():
            assert set(INTERPOLATION.findall(str(value))) <= documented, (name, key, value)
            if SECRET_NAME.search(key):
                assert INTERPOLATION.fullmatch(value), f"{name}: {key} is a literal"
        if url := service.get("environment", {}).get("PITAHAYA_DATABASE_URL"):
            password = re.match(r"[\w+]+://[^:]+:([^@]*)@", url)
            assert password and INTERPOLATION.fullmatch(password.group(1)), f"{name}: a literal database password"


def test_compose_wiring() -> None:
    compose = _compose()
    services = compose["services"]
    registry = _registry_services(compose)
    replicas = {name for name, s in registry.items() if s.get("deploy", {}).get("replicas", 1) >= 2}
    assert replicas, "the registry runs as replicas"
    for name in replicas:
        assert any(
            registry.get(dependency) is not None and condition == {"condition": "service_completed_successfully"}
            for dependency, condition in services[name]["depends_on"].items()
        ), f"{name} starts after the one-shot migration"
    for name, service in services.items():
        for dependency, condition in service.get("depends_on", {}).items():
            if condition["condition"] == "service_healthy":
                assert "healthcheck" in services[dependency] or dependency in registry, (name, dependency)
        for port in service.get("ports", []):
            assert name == PUBLIC_SERVICE or port.startswith("127.0.0.1:"), (name, port)


def test_nginx_proxies_to_the_registry_replicas() -> None:
    conf = (INFRA / "nginx" / "nginx.conf").read_text()
    upstreams = dict(re.findall(r"upstream\s+(\w+)\s*\{([^}]*)\}", conf))
    servers = {server for body in upstreams.values() for server in re.findall(r"server\s+([\w.-]+:\d+)", body)}
    serving = {name for name, service in _registry_services(_compose()).items() if service.get("restart") != "no"}
    assert servers == {f"{name}:8000" for name in serving}
    proxied = set(re.findall(r"proxy_pass\s+http://(\w+);", conf))
    assert proxied and proxied <= set(upstreams)
    assert re.search(r"location /tuf/targets/ \{[^}]*proxy_cache \w+;", conf)
    assert not re.search(r"location [^{]*metadata[^{]*\{[^}]*proxy_cache \w+;", conf)


def test_no_registry_pod_keeps_state_on_a_volume() -> None:
    """Rows and TUF metadata are in PostgreSQL, blobs in S3: a pod's volumes are scratch or Secrets."""
    docs = _kustomization_documents()
    assert not [d for d in docs if d["kind"] in {"PersistentVolumeClaim", "PersistentVolume"}]
    pods = _pod_specs()
    assert {"Deployment", "Job", "CronJob"} <= {kind for kind, _ in pods}
    for kind, spec in pods:
        for volume in spec.get("volumes", []):
            assert set(volume) - {"name"} <= {"emptyDir", "secret"}, (kind, volume)


def test_pods_that_sign_copy_the_online_keys_from_the_secret_with_mode_0600(tmp_path: Path) -> None:
    """Run each initContainer's copy against a Secret volume laid out as the kubelet does (files
    0440 behind ``..data`` symlinks), then load the copies as the registry does."""
    data_dir = _config_map()["PITAHAYA_DATA_DIR"]
    signers = {role: CryptoSigner.generate_ed25519() for role in ONLINE_ROLES}
    copying = set()
    for kind, spec in _pod_specs():
        keys = [v["name"] for v in spec["volumes"] if v.get("secret", {}).get("secretName") == KEYS_SECRET]
        if not keys:
            continue
        (main,) = spec["containers"]
        data = {m["name"] for m in main["volumeMounts"] if m["mountPath"] == data_dir}
        assert data, f"{kind}: the data dir is a volume the copy can write to"
        assert not [m for m in main["volumeMounts"] if m["name"] in keys], f"{kind}: 0440 files would be refused"
        (init,) = [c for c in spec.get("initContainers", []) if {m["name"] for m in c["volumeMounts"]} & set(keys)]
        assert init["image"] == main["image"] and init["securityContext"] == main["securityContext"], kind
        mounts = {m["name"]: m["mountPath"] for m in init["volumeMounts"]}
        assert init["command"][:2] == ["sh", "-c"], f"{kind}: the image's ENTRYPOINT is pitahaya"
        script = init["command"][2]

        secret = tmp_path / kind / "secret"
        (secret / "..2025_01_01").mkdir(parents=True)
        (secret / "..data").symlink_to("..2025_01_01")
        for role, signer in signers.items():
            (secret / "..2025_01_01" / f"{role}.pem").write_bytes(signer.private_bytes)
            (secret / "..2025_01_01" / f"{role}.pem").chmod(0o440)
            (secret / f"{role}.pem").symlink_to(f"..data/{role}.pem")
        with pytest.raises(SigningKeyError):
            load_private_key(secret / f"{ONLINE_ROLES[0]}.pem")  # why the copy is needed
        pod_data_dir = tmp_path / kind / "data"
        pod_data_dir.mkdir()
        for name, path in ((keys[0], secret), (data.pop(), pod_data_dir)):
            assert mounts[name] in script, (kind, name)
            script = script.replace(mounts[name], str(path))
        subprocess.run(["sh", "-c", script], check=True, capture_output=True)

        copied = sorted(_keys_dir(pod_data_dir).iterdir())
        assert [path.name for path in copied] == sorted(f"{role}.pem" for role in ONLINE_ROLES), kind
        for path in copied:
            assert path.stat().st_mode & 0o777 == 0o600 and not path.is_symlink(), (kind, path)
            assert load_private_key(path).public_key.keyid == signers[path.stem].public_key.keyid
        copying.add(kind)
    # The replicas sign; the migration opens the repository and refreshes what is due.
    assert copying == {"Deployment", "Job"}


def test_compose_replicas_share_only_the_read_only_online_keys() -> None:
    compose = _compose()
    registry = _registry_services(compose)
    keys_dir = _keys_dir(Path(_image_env("PITAHAYA_DATA_DIR")))
    offline_dir = keys_dir.parent / "offline"
    writers = {name for name, s in registry.items() if any(not ro for _, ro in _mounts(s).values())}
    assert writers == {name for name, s in registry.items() if s.get("restart") == "no"}, "only the one-shot migration"
    for name, service in registry.items():
        mounts = _mounts(service)
        if name in writers:
            assert mounts == {str(keys_dir): (KEYS_VOLUME, False), str(offline_dir): ("tuf-offline", False)}, name
        else:
            assert mounts == {str(keys_dir): (KEYS_VOLUME, True)}, name
    assert set(compose["volumes"]) >= {KEYS_VOLUME, "tuf-offline"}
    # Both are mount points the image's user owns (mode 0700), so the volumes start owned by it.
    uid = re.search(r"(?m)^USER (\d+)", DOCKERFILE.read_text())
    assert uid
    created = [line for stage in _stages(DOCKERFILE.read_text())[-1:] for line in stage if "install -d -m 0700" in line]
    assert created and re.search(
        rf"install -d -m 0700 -o {uid.group(1)} -g \d+ {keys_dir} {offline_dir}(\s|$)", created[0]
    ), created


def test_compose_replicas_share_rate_limits_through_redis() -> None:
    compose = _compose()
    services = compose["services"]
    for name, service in _registry_services(compose).items():
        uri = service["environment"]["PITAHAYA_RATE_LIMIT_STORAGE_URI"]
        storage_from_string(uri)  # a scheme limits knows, with its client installed
        match = re.fullmatch(r"redis://([\w-]+):(\d+)", uri)
        assert match, (name, uri)
        redis = services[match.group(1)]
        assert redis["image"].startswith("redis:"), redis["image"]
        assert "ping" in redis["healthcheck"]["test"] and "redis-cli" in redis["healthcheck"]["test"]
        if service.get("restart") != "no":
            assert service["depends_on"][match.group(1)] == {"condition": "service_healthy"}, name
