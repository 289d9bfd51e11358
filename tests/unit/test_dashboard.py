"""The Grafana dashboard in the chart (issue 18.6) queries only metrics the controller registers.

Every PromQL expression of every panel and variable is parsed for the metric names it
selects and the labels it filters or groups by; each name must be one that
``batchdrain.metrics.Metrics`` exposes (a counter as ``_total``, a histogram as
``_bucket``/``_sum``/``_count``) and each label one of that metric's labels (or a
label Prometheus adds when scraping: ``job``, ``instance``, ``le`` for buckets).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.metrics import MetricWrapperBase

from batchdrain.domain import RunCounts
from batchdrain.metrics import Metrics

DASHBOARD = Path(__file__).resolve().parents[2] / "helm" / "batchdrain" / "dashboards" / "batchdrain.json"
SCRAPE_LABELS = {"job", "instance"}
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_MATCHERS = re.compile(r"\{([^{}]*)\}")
_GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")
_RANGE = re.compile(r"\[[^\]]*\]")
_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_CALL = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*\(")
_LABEL_VALUES = re.compile(r"label_values\((.+),\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)")


def exposed() -> dict[str, set[str]]:
    """Every series name the metrics expose, with the labels each may carry."""
    metrics = Metrics(registry=CollectorRegistry())
    names: dict[str, set[str]] = {}
    collectors = [value for value in vars(metrics).values() if isinstance(value, MetricWrapperBase)]
    assert len(collectors) >= 8
    for collector in collectors:
        labels = set(collector._labelnames)  # prometheus_client has no public accessor
        for family in collector.describe():
            if family.type == "counter":
                names[f"{family.name}_total"] = labels
            elif family.type == "histogram":
                names[f"{family.name}_bucket"] = labels | {"le"}
                names[f"{family.name}_sum"] = names[f"{family.name}_count"] = labels
            else:
                names[family.name] = labels
    return names


def expressions(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("expr", "definition") and isinstance(value, str):
                yield value
            elif key == "query" and isinstance(value, dict) and isinstance(value.get("query"), str):
                yield value["query"]
            else:
                yield from expressions(value)
    elif isinstance(node, list):
        for item in node:
            yield from expressions(item)


def parse(expr: str) -> tuple[set[str], set[str]]:
    """(metric names, label names) an expression uses."""
    variable = _LABEL_VALUES.fullmatch(expr.strip())
    if variable:  # a Grafana variable query: label_values(selector, label)
        names, labels = parse(variable.group(1))
        return names, labels | {variable.group(2)}
    text = _STRING.sub('""', expr.replace("$__rate_interval", "5m"))
    labels = {m.split("=")[0].split("!")[0].strip() for group in _MATCHERS.findall(text)
              for m in group.split(",") if m.strip()}
    labels |= {name.strip() for group in _GROUPING.findall(text) for name in group.split(",") if name.strip()}
    rest = _RANGE.sub("", _GROUPING.sub("", _MATCHERS.sub("", text)))
    calls = set(_CALL.findall(rest))
    names = {n for n in _NAME.findall(rest) if n not in calls and not n.isdigit()}
    return names, labels


def test_the_parser_reads_names_matchers_and_groupings():
    assert parse('sum by (run_id) (batchdrain_run_phases{job=~"$job", state="QUEUED"})') == (
        {"batchdrain_run_phases"}, {"run_id", "job", "state"})
    assert parse("histogram_quantile(0.95, sum by (le) (rate(x_bucket[$__rate_interval])))") == ({"x_bucket"}, {"le"})
    assert parse("label_values(batchdrain_attempts_running, job)") == ({"batchdrain_attempts_running"}, {"job"})


def test_every_query_of_the_dashboard_uses_registered_metrics_and_their_labels():
    registered = exposed()
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    queries = list(expressions(dashboard))
    assert len(queries) >= 12
    used: set[str] = set()
    for expr in queries:
        names, labels = parse(expr)
        assert names, f"no metric in {expr!r}"
        for name in names:
            assert name in registered, f"{name} (in {expr!r}) is not a metric batchdrain registers"
            allowed = registered[name] | SCRAPE_LABELS
            assert labels <= allowed | {label for n in names for label in registered[n]}, (expr, labels)
        used |= names
    # what the issue asks the dashboard to show
    for wanted in ("batchdrain_run_phases", "batchdrain_attempts_total", "batchdrain_attempt_duration_seconds_bucket",
                   "batchdrain_attempts_running"):
        assert wanted in used


def test_queue_depth_by_run_exports_runs_with_work_left_only():
    metrics = Metrics(registry=None)
    metrics.set_run_counts({"done": RunCounts(complete=5), "busy": RunCounts(queued=3, failed=1)})
    value = metrics.registry.get_sample_value
    assert value("batchdrain_run_phases", {"run_id": "busy", "state": "QUEUED"}) == 3
    assert value("batchdrain_run_phases", {"run_id": "done", "state": "COMPLETE"}) is None
    assert value("batchdrain_phases", {"state": "COMPLETE"}) == 5
    metrics.set_run_counts({"busy": RunCounts(complete=4)})  # a refresh drops what is finished
    assert value("batchdrain_run_phases", {"run_id": "busy", "state": "QUEUED"}) is None
