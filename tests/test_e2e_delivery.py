"""End to end over real HTTP: registry process on 127.0.0.1, TUF-verified pulls, device runtimes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest
from tuf.ngclient import Urllib3Fetcher

from pitahaya.client_runtime import Candidate, Hooks, PackageUpdater, Runtime, UpdateEvent
from pitahaya.simulation import (
    ModelPolicy,
    SimulationConfig,
    at_bitrate,
    generated_sessions,
    generated_traces,
    simulate,
)

from e2e_support import PATIENT_DEVICE, LiveRegistry, Pipeline

pytestmark = pytest.mark.e2e


class Recorder(Hooks):
    def __init__(self) -> None:
        self.updates: list[UpdateEvent] = []
        self.fallbacks: list[str] = []
        self.inference_reasons: list[str] = []

    def on_update(self, event: UpdateEvent) -> None:
        self.updates.append(event)

    def on_fallback(self, reason: str, error: BaseException | None) -> None:
        self.fallbacks.append(reason)

    def on_inference(self, event) -> None:  # type: ignore[no-untyped-def]
        self.inference_reasons.append(event.reason)


def _publish(registry: LiveRegistry, pipeline: Pipeline) -> bytes:
    client = registry.client()
    client.push(pipeline.built.path.read_bytes())
    client.create_release("watch_time", "1.0.0")
    return client.root_metadata()


def _device(registry: LiveRegistry, cache: Path, root: bytes, hooks: Hooks | None = None) -> Runtime:
    return Runtime(
        registry.url, "watch_time", "device-7", cache_dir=cache, trusted_root=root, hooks=hooks, config=PATIENT_DEVICE
    )


def test_devices_pull_verify_and_play_held_out_sessions(
    live_registry: LiveRegistry, pipeline: Pipeline, tmp_path: Path
) -> None:
    root = _publish(live_registry, pipeline)
    sessions = generated_sessions(pipeline.views, test_from=pipeline.trained.test_from, max_users=3, seed=0)
    outcomes: list[str] = []

    def device(device_id: str) -> Runtime:
        runtime = Runtime(
            live_registry.url,
            "watch_time",
            device_id,
            cache_dir=tmp_path / device_id,
            trusted_root=root,
            config=PATIENT_DEVICE,
        )
        outcomes.append(runtime.refresh().outcome)
        assert runtime.active_version == "1.0.0"
        return runtime

    result = simulate(
        at_bitrate(sessions, 1_000_000),
        {"medium": generated_traces("medium", 3, seed=1)},
        model=ModelPolicy(device),
        config=SimulationConfig(margins=(1.0,)),
    )
    users = {s.user_id for s in sessions}
    assert len(users) >= 2 and outcomes == ["installed"] * len(users)  # one device per user, each pulled via TUF
    runtime = result.summary["runtime"]
    assert runtime["decisions"] > 0
    assert runtime["model_decisions"] == runtime["decisions"], runtime["fallback_reasons"]
    played = result.summary["policies"]["model"]["overall"]
    assert played["views"]["total"] == sum(len(s.views) for s in sessions)
    # The devices' plans cut what the fixed policy downloads past the point users swipe away.
    assert result.summary["versus_fixed"]["model"]["overall"]["total bandwidth"]["change"] < 0


class TamperingMirror(Urllib3Fetcher):
    """A compromised mirror/CDN: serves package archives with one byte flipped in transit."""

    def _fetch(self, url: str) -> Iterator[bytes]:
        chunks = super()._fetch(url)
        if "/tuf/targets/packages/" not in url:
            yield from chunks
            return
        first = bytearray(next(chunks))
        first[len(first) // 2] ^= 0x01
        yield bytes(first)
        yield from chunks


def test_tampered_package_is_refused_and_the_fallback_answers(
    live_registry: LiveRegistry, pipeline: Pipeline, tmp_path: Path
) -> None:
    root = _publish(live_registry, pipeline)
    hooks = Recorder()
    cache = tmp_path / "device"
    updater = PackageUpdater(
        live_registry.url, "watch_time", "device-7", cache, trusted_root=root, fetcher=TamperingMirror()
    )
    runtime = Runtime(
        live_registry.url, "watch_time", "device-7", cache_dir=cache, updater=updater, hooks=hooks, config=PATIENT_DEVICE
    )
    event = runtime.refresh()
    assert (event.outcome, event.reason) == ("failed", "verification_failed")
    assert hooks.updates[-1].reason == "verification_failed"
    decision = runtime.predict([Candidate("v1", 15.0, 2_000_000), Candidate("v2", 40.0, 6_000_000)])
    assert decision.watch_s is None and decision.package_version is None
    assert decision.reason == "verification_failed"
    assert [item.bytes for item in decision.plan.items] == [800_000, 800_000]
    assert hooks.fallbacks == ["verification_failed"]
    assert hooks.inference_reasons == ["verification_failed"]
    assert not list((cache / "packages").glob("*"))  # nothing unverified is cached


def test_package_corrupted_on_the_registry_disk_is_never_served(
    live_registry: LiveRegistry, pipeline: Pipeline, tmp_path: Path
) -> None:
    root = _publish(live_registry, pipeline)
    blob = live_registry.blob_path(pipeline.built.sha256)
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0x01
    blob.write_bytes(bytes(data))
    hooks = Recorder()
    runtime = _device(live_registry, tmp_path / "device", root, hooks)
    assert runtime.refresh().outcome == "failed"  # the registry re-verifies blobs before serving
    decision = runtime.predict([Candidate("v1", 15.0, 2_000_000)])
    assert decision.watch_s is None and hooks.fallbacks == [decision.reason]


def test_registry_down_at_start_uses_the_cached_package(
    live_registry: LiveRegistry, pipeline: Pipeline, tmp_path: Path
) -> None:
    root = _publish(live_registry, pipeline)
    cache = tmp_path / "device"
    assert _device(live_registry, cache, root).refresh().outcome == "installed"
    dead = Runtime("http://127.0.0.1:9", "watch_time", "device-7", cache_dir=cache, trusted_root=root)
    assert dead.refresh().outcome == "failed"
    decision = dead.predict([Candidate("v1", 15.0, 2_000_000)])
    assert decision.reason == "ok" and decision.package_version == "1.0.0"


def test_demo_runs_end_to_end_at_a_small_size(tmp_path: Path) -> None:
    from pitahaya.cli._demo import DemoConfig, run_demo

    summary = run_demo(DemoConfig(views=20_000, devices=3, seed=3, data_dir=tmp_path / "data", as_json=True))
    devices, simulation, offline = summary["devices"], summary["simulation"], summary["offline"]
    assert set(devices["update_outcomes"]) == {"installed"} and 1 <= devices["count"] <= 3
    assert devices["decisions"] > 0 and devices["model_decisions"] == devices["decisions"]
    assert offline["test_mae"] < offline["baseline_user_mean_mae"]
    assert offline["test_xauc"] > offline["baseline_user_mean_xauc"]
    # The summary is the playback simulator's: every policy played every held-out view.
    assert simulation["views"] > 0
    assert {p: row["views"]["total"] for p, row in simulation["policies"].items()} == {
        "fixed": simulation["views"] * 4,  # once per trace class
        "oracle": simulation["views"] * 4,
        "oracle plan": simulation["views"] * 4,
        "model": simulation["views"] * 4,
    }
    assert simulation["versus_fixed"]["oracle"]["total bandwidth"]["change"] < 0
    run = mlflow.MlflowClient(f"sqlite:///{(tmp_path / 'data').resolve()}/mlflow.db").get_run(simulation["run_id"])
    assert run.info.status == "FINISHED" and "model_total_bytes_change" in run.data.metrics
    assert summary["mlflow"]["ui_command"].endswith(f"sqlite:///{(tmp_path / 'data').resolve()}/mlflow.db")
    # The devices reported, and the registry forwarded every decision to the monitoring run.
    monitoring = summary["monitoring"]
    assert monitoring["forwarded_inferences"] == monitoring["device_decisions"] > 0
    store = mlflow.MlflowClient(f"sqlite:///{(tmp_path / 'data').resolve()}/mlflow.db")
    experiment = store.get_experiment_by_name("watch_time-monitoring")
    (monitored,) = store.search_runs([experiment.experiment_id])
    assert monitored.info.run_id == monitoring["run_id"] and monitored.info.run_name == "watch_time-1.0.0"
    assert {"inferences", "success_rate", "latency_us_p99", "mae_s", "uv"} <= set(monitored.data.metrics)
    assert monitored.data.tags["pitahaya.training_run_id"] == summary["mlflow"]["run_id"]
    assert monitored.data.tags["pitahaya.package_sha256"] == summary["package"]["sha256"]
    assert monitored.data.tags["pitahaya.model_name"] == "watch_time"
