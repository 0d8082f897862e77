"""infra/grafana: every PromQL query of the dashboard names metrics and labels a real registry exposes.

A registry process receives telemetry from the client runtime's own reporter, then its
``/metrics`` is scraped; each panel's and variable's query is parsed for metric names (what
is left once strings, label matchers, ranges, grouping clauses, functions and Grafana
variables are taken out) and label names, which must all be in that scrape.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from e2e_support import LiveRegistry
from fleet_feed import client_token, feed_fleet
from package_factory import make_archive

INFRA = Path(__file__).resolve().parents[1] / "infra"
DASHBOARD = INFRA / "grafana" / "dashboards" / "pitahaya-registry.json"

_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless", "offset"}
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")


def queries(dashboard: dict[str, Any]) -> list[str]:
    """Every PromQL expression: panel targets (rows included) and query variables."""
    out = []
    panels = list(dashboard["panels"])
    while panels:
        panel = panels.pop()
        panels.extend(panel.get("panels", []))
        out.extend(target["expr"] for target in panel.get("targets", []))
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]["query"] if isinstance(variable["query"], dict) else variable["query"]
            match = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", query)
            assert match, query
            out.append(f"group by ({match[2]}) ({match[1]})")
    return out


def metric_and_label_names(expr: str) -> tuple[set[str], set[str]]:
    """The metric names and label names a PromQL expression uses."""
    labels: set[str] = set()
    rest = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    for block in re.findall(r"\{([^}]*)\}", rest):
        labels |= {m[1] for m in re.finditer(r"([A-Za-z_]\w*)\s*(=~|!~|!=|=)", block)}
    rest = re.sub(r"\{[^}]*\}", " ", rest)
    rest = re.sub(r"\[[^\]]*\]", " ", rest)
    for clause in _GROUPING.finditer(rest):
        labels |= {name.strip() for name in clause[2].split(",") if name.strip()}
    rest = _GROUPING.sub(" ", rest)
    rest = re.sub(r"\$\{?\w+\}?", " ", rest)
    rest = re.sub(r"\b[A-Za-z_]\w*\s*\(", "(", rest)  # function calls
    names = {m[0] for m in _IDENT.finditer(rest)} - _KEYWORDS
    return names, labels


def test_the_parser_finds_metrics_and_labels() -> None:
    names, labels = metric_and_label_names(
        'histogram_quantile(0.99, max by (package_version, le) (rate(a_bucket{scene=~"$scene", x="y{z}"}[5m])))'
        " / on (package_version) group_left max by (package_version) (rate(b_total[$__rate_interval]))"
    )
    assert names == {"a_bucket", "b_total"} and labels == {"package_version", "le", "scene", "x"}


@pytest.mark.e2e
def test_every_dashboard_query_uses_metrics_and_labels_the_registry_exposes(live_registry: LiveRegistry) -> None:
    url = live_registry.url
    with live_registry.client() as registry:  # a gated rollout, so the rollout gauges have samples
        for version in ("1.0.0", "1.1.0"):
            registry.push(make_archive(version=version))
        registry.create_release("watch_time", "1.0.0")
        registry.create_release("watch_time", "1.1.0", gate="fast")
    token = client_token(url, live_registry.token)
    assert feed_fleet(url, token, versions=("1.0.0", "1.1.0"), devices=2, minutes=2) == 4
    httpx.get(f"{url}/tuf/metadata/timestamp.json").raise_for_status()

    scrape = httpx.get(f"{url}/metrics").text
    exposed: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(scrape):
        for sample in family.samples:
            exposed.setdefault(sample.name, set()).update(sample.labels)
    dashboard = json.loads(DASHBOARD.read_text())
    expressions = queries(dashboard)

    used: set[str] = set()
    for expr in expressions:
        names, labels = metric_and_label_names(expr)
        assert names, expr
        assert names <= exposed.keys(), f"{sorted(names - exposed.keys())} not on /metrics: {expr}"
        known = set().union(*(exposed[n] for n in names))
        assert labels <= known, f"labels {sorted(labels - known)} not on {sorted(names)}: {expr}"
        used |= names
    # What an operator needs from the brief's list, each on some panel.
    assert {
        "pitahaya_registry_requests_total",
        "pitahaya_registry_request_duration_seconds_bucket",
        "pitahaya_device_inferences_total",
        "pitahaya_device_successes_total",
        "pitahaya_device_fallbacks_total",
        "pitahaya_device_inference_latency_us_bucket",
        "pitahaya_device_views_total",
        "pitahaya_device_uv",
        "pitahaya_device_abs_error_sum_s_total",
        "pitahaya_device_outcomes_total",
        "pitahaya_device_dropped_events_total",
        "pitahaya_device_errors_total",
        "pitahaya_rollout_percent",
        "pitahaya_rollout_gate_state",
        "pitahaya_device_reports_total",
    } <= used
    assert any('status="429"' in e for e in expressions) and any('reason="timeout"' in e for e in expressions)
    for expr in expressions:
        if "histogram_quantile" in expr:
            assert all(n.endswith("_bucket") for n in metric_and_label_names(expr)[0]), expr
    # The scrape really carries the figures the queries read (the feed reached the registry).
    assert 'reason="timeout"' in scrape and 'window="1h"' in scrape
    assert re.search(r'pitahaya_device_dropped_events_total\{[^}]*\} [1-9]', scrape)


def test_dashboard_panels_and_provisioning_are_consistent() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    for panel in panels:
        if panel["type"] != "row":
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
            assert panel["targets"] and panel["description"], panel["title"]
    provisioning = INFRA / "grafana" / "provisioning"
    datasource = yaml.safe_load((provisioning / "datasources" / "prometheus.yaml").read_text())["datasources"][0]
    assert datasource["type"] == "prometheus" and datasource["isDefault"]
    provider = yaml.safe_load((provisioning / "dashboards" / "pitahaya.yaml").read_text())["providers"][0]
    compose = yaml.safe_load((INFRA / "compose.yaml").read_text())["services"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in compose["grafana"]["volumes"] if v.startswith("./")}
    assert (INFRA / mounts[provider["options"]["path"]] / DASHBOARD.name).is_file()
    assert (INFRA / mounts["/etc/grafana/provisioning"]).resolve() == provisioning
    scrape = yaml.safe_load((INFRA / "prometheus" / "prometheus.yml").read_text())["scrape_configs"][0]
    # Every replica is a target (compose's DNS answers the service name with one address each);
    # the device series are SQL totals each replica repeats, hence `max`, never `sum`, above.
    (discovery,) = scrape["dns_sd_configs"]
    assert discovery["names"] == ["registry"] and discovery["port"] == 8000 and scrape["metrics_path"] == "/metrics"
    assert "registry" in compose and compose["registry"]["deploy"]["replicas"] >= 2
    for expr in queries(json.loads(DASHBOARD.read_text())):
        if re.search(r"pitahaya_(device|rollout)_", expr):
            assert not re.search(r"\bsum\b", expr), f"a per-replica copy summed: {expr}"
