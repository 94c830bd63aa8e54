"""The alert rules and the Grafana board: ``promtool check rules`` and ``promtool test rules``
pass (promtool from Debian's prometheus package; ``make test`` fetches it when missing), and
every PromQL expression in either names only metrics that ``GET /metrics`` really exports
(read from a real scrape of the collector on the real Redis)."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from prometheus_client import generate_latest

from worker.metrics import make_registry

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "alerts.test.yml"
BOARD = ROOT / "deploy" / "grafana" / "mjflow.json"
INSTALL = ROOT / "tests" / "support" / "install_tools.sh"
ALERTS = {"MjflowDispatchPaused", "MjflowOldestInFlightStepTooOld", "MjflowStepsStuck",
          "MjflowDeliveriesFailing", "MjflowCallbackRejectionsSpike", "MjflowStorageFailing",
          "MjflowDispatchWindowAtFloor"}
KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left",
            "group_right", "offset", "bool", "le", "inf", "nan"}


def promtool() -> str | None:
    venv_tool = Path(sys.executable).parent / "promtool"
    found = shutil.which("promtool") or (str(venv_tool) if venv_tool.exists() else None)
    if found is None:                       # try once to fetch it (as `make test` does)
        subprocess.run(["sh", str(INSTALL), str(venv_tool.parent)], check=False,
                       capture_output=True, timeout=300)
        found = shutil.which("promtool") or (str(venv_tool) if venv_tool.exists() else None)
    return found


@pytest.fixture(scope="module")
def tool() -> str:
    found = promtool()
    if found is None:
        pytest.skip("promtool could not be installed (apt-get install prometheus)")
    return found


def test_promtool_checks_the_rules(tool):
    proc = subprocess.run([tool, "check", "rules", str(RULES)], capture_output=True,
                          text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


def test_promtool_unit_tests_pass(tool):
    proc = subprocess.run([tool, "test", "rules", str(RULE_TESTS)], capture_output=True,
                          text=True, check=False, cwd=RULE_TESTS.parent)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_issue_s_alerts_exist_and_each_is_unit_tested():
    names = {r["alert"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]}
    assert names >= ALERTS
    tested = {case["alertname"] for t in yaml.safe_load(RULE_TESTS.read_text())["tests"]
              for case in t.get("alert_rule_test", ())}
    assert tested == names


# -- every expression names exported metrics only --------------------------------------------
@pytest.fixture(scope="module")
def exported(rds_module) -> set[str]:
    """Sample names a scrape can show: gauges as is, counters ``_total``, histograms with
    ``_bucket``/``_sum``/``_count`` (from the ``# TYPE`` lines of a real scrape)."""
    names: set[str] = set()
    for line in generate_latest(make_registry(rds_module)).decode().splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            names.add(name)
            if kind == "histogram":
                names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
    return names


@pytest.fixture(scope="module")
def rds_module():
    import redis

    from tests.conftest import REDIS_URL
    from worker.flow.engine import Engine, Inline
    from worker.keys import Keys
    from worker.settings import load_settings

    settings = load_settings(redis_url=REDIS_URL, key_prefix="mjflow-test-alerts")
    return Engine(settings, redis.Redis.from_url(REDIS_URL, decode_responses=True),
                  Keys(settings.key_prefix), Inline())


def metric_names(expr: str) -> set[str]:
    """The metric names in a PromQL expression (functions, keywords, labels, strings,
    ranges, numbers and Grafana variables taken out)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)                 # strings
    text = re.sub(r"\{[^}]*\}", "", text)                          # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)                         # ranges
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\$\w+", "", text)                              # Grafana variables
    text = re.sub(r"(?<![\w:])\d+(?:\.\d+)?(?:ms|[smhdwy])?", " ", text)  # numbers, durations
    names = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        token = m.group(0)
        rest = text[m.end():].lstrip()
        if rest.startswith("(") or token.lower() in KEYWORDS:
            continue
        names.add(token)
    return names


def rule_exprs() -> list[str]:
    return [r["expr"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]


def board_exprs() -> list[str]:
    board = json.loads(BOARD.read_text())
    out = [t["expr"] for p in board["panels"] for t in p.get("targets", ())]
    for var in board["templating"]["list"]:             # label_values(<metric>, <label>)
        if isinstance(var.get("query"), dict):
            m = re.fullmatch(r"label_values\((\w+),\s*\w+\)", var["query"]["query"])
            assert m, var["query"]
            out.append(m.group(1))
    return out


def test_the_parser_finds_metric_names():
    expr = ('max by (job) (sum without (state) (rate(mjflow_a_total{x="y"}[5m]))) > 0.1 '
            '* histogram_quantile(0.9, max by (le) (mjflow_b_bucket)) and on() up offset 5m')
    assert metric_names(expr) == {"mjflow_a_total", "mjflow_b_bucket", "up"}


@pytest.mark.parametrize("source", ["alerts", "board"])
def test_expressions_name_only_exported_metrics(exported, source):
    exprs = rule_exprs() if source == "alerts" else board_exprs()
    assert exprs
    used = set().union(*(metric_names(e) for e in exprs))
    assert used, "no metric found"
    assert used <= exported, f"not exported: {sorted(used - exported)}"


def test_the_board_is_grafana_json_with_a_datasource_variable():
    board = json.loads(BOARD.read_text())
    assert board["uid"] == "mjflow" and board["schemaVersion"] >= 36
    assert any(v["type"] == "datasource" for v in board["templating"]["list"])
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    for p in board["panels"]:
        if p["type"] != "row":
            assert p["targets"] and p["datasource"]["uid"] == "${datasource}"
