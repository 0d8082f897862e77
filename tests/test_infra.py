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

from pitahaya.registry import Settings, create_app
from pitahaya.registry.settings import ENV_PREFIX

INFRA = Path(__file__).resolve().parents[1] / "infra"
K8S = INFRA / "k8s"
DOCKERFILE = INFRA / "Dockerfile.registry"
#: The Kubernetes version the manifests must be valid for (strict: no unknown fields).
KUBERNETES_VERSION = "1.33.0"
#: The Secret the manifests read and the README tells operators to create; never committed.
SECRET = "pitahaya-registry"
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


def test_the_secret_example_is_valid_kubernetes_and_left_out_of_the_kustomization() -> None:
    example = yaml.safe_load((K8S / "secret.example.yaml").read_text())
    kubernetes_validate.validate(example, KUBERNETES_VERSION, strict=True)
    assert example["metadata"]["name"] == SECRET
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
    secret_keys = yaml.safe_load((K8S / "secret.example.yaml").read_text())["stringData"]
    references = 0
    for mapping in (m for doc in docs for m in _walk(doc)):
        if ref := mapping.get("secretKeyRef"):
            assert ref["name"] == SECRET and ref["key"] in secret_keys, ref
        if ref := mapping.get("configMapKeyRef"):
            assert ref["key"] in config_maps.get(ref["name"], {}), ref
        if ref := mapping.get("configMapRef"):
            assert ref["name"] in config_maps, ref
        if ref := mapping.get("secretRef"):
            assert ref["name"] == SECRET, ref
        references += any(k in mapping for k in ("secretKeyRef", "configMapKeyRef", "configMapRef", "secretRef"))
    assert references
    assert f"secret generic {SECRET}" in (INFRA / "README.md").read_text()


def test_every_variable_the_deployments_set_is_a_registry_setting() -> None:
    settings = {f"{ENV_PREFIX}{name.upper()}" for name in Settings.model_fields}
    docs = _kustomization_documents()
    names = {env["name"] for doc in docs for c in _containers(doc) for env in c.get("env", [])}
    names |= {key for doc in docs if doc["kind"] == "ConfigMap" for key in doc["data"]}
    names |= set(yaml.safe_load((K8S / "secret.example.yaml").read_text())["stringData"])
    names |= {key for service in _registry_services(_compose()).values() for key in service["environment"]}
    assert names - NON_SETTING_VARIABLES <= settings, sorted(names - NON_SETTING_VARIABLES - settings)


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
