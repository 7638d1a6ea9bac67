"""make deploy-check: the Grafana dashboard's queries (deploy/grafana/*.json).

  dashboard.py rules DASHBOARD OUT.yaml
      every query as a recording rule, for `promtool check rules` (Grafana's
      $__rate_interval / $__interval / $__range become 5m);
  dashboard.py names DASHBOARD [--exposition FILE]...
      every metric name the queries use must be one the code registers: by default the
      names read from the code (filter/host/src/metrics.rs: its name constants, a
      `.grant.` / `.reason.` counter exposed under its name before the dot, a histogram
      as _bucket/_sum/_count; ledger/src/metrics.rs: its ledger_* names); with
      --exposition, the names in Prometheus text files scraped from the running parts
      (the e2e suite deploy:: passes Envoy's and the ledger's). Also: the refusal classes
      the dashboard filters on are the alert rules' (deploy/prometheus), reason for reason.

Exits 1 naming what is wrong. Needs PyYAML (the .venv has it with kubernetes-validate).
"""

import json
import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
FILTER_METRICS = ROOT / "filter/host/src/metrics.rs"
LEDGER_METRICS = ROOT / "ledger/src/metrics.rs"
RULES = ROOT / "deploy/prometheus/registry-token.rules.yaml"

GRAFANA_VARS = {"$__rate_interval": "5m", "$__interval": "5m", "$__range": "5m"}
KEYWORDS = {
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left",
    "group_right", "bool", "offset", "inf", "nan", "atan2",
}


def queries(dashboard):
    """(panel title, expr) of every target of every panel, rows' panels included."""
    out = []

    def walk(panels):
        for p in panels:
            for t in p.get("targets", []):
                if t.get("expr"):
                    out.append((p.get("title", "?"), t["expr"]))
            walk(p.get("panels", []))

    walk(dashboard.get("panels", []))
    return out


def substitute(expr):
    for k, v in GRAFANA_VARS.items():
        expr = expr.replace(k, v)
    if "$" in expr:
        raise ValueError(f"an unknown Grafana variable in {expr!r}")
    return expr


def metric_names(expr):
    """The metric names a PromQL expression selects: identifiers that are not functions
    (followed by "("), keywords, label names (inside {...} or the lists of by/without/on/
    ignoring/group_*), strings, durations or numbers."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)
    e = re.sub(r"\{[^}]*\}", " ", e)
    e = re.sub(r"\[[^\]]*\]", " ", e)
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    names = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", e):
        word = m.group(0)
        rest = e[m.end():].lstrip()
        if rest.startswith("(") or word.lower() in KEYWORDS:
            continue
        if m.start() > 0 and (e[m.start() - 1].isdigit() or e[m.start() - 1] == "."):
            continue  # 1e3, 0.5e-3
        names.add(word)
    return names


def registered_from_code():
    text = FILTER_METRICS.read_text()
    consts = dict(re.findall(r'pub const ([A-Z_]+): &str = "([^"]+)";', text))
    if not consts:
        raise ValueError(f"{FILTER_METRICS}: no metric name constants found")
    histograms = set(re.findall(r"MetricKind::Histogram,\s*([A-Z_]+)\)", text))
    if not histograms <= consts.keys():
        raise ValueError(f"{FILTER_METRICS}: histogram constants not found: {histograms}")
    names = set()
    for const, value in consts.items():
        base = value.split(".")[0]
        if const in histograms:
            names |= {f"{base}_bucket", f"{base}_sum", f"{base}_count"}
        else:
            names.add(base)
    ledger = set(re.findall(r"\b(ledger_[a-z0-9_]+)\b", LEDGER_METRICS.read_text()))
    if not ledger:
        raise ValueError(f"{LEDGER_METRICS}: no ledger_* names found")
    return names | ledger


def registered_from_exposition(files):
    names = set()
    for f in files:
        for line in Path(f).read_text().splitlines():
            if line and not line.startswith("#"):
                names.add(re.split(r"[{\s]", line, maxsplit=1)[0])
    return names


def reason_set(expr, op):
    m = re.search(r'reason' + re.escape(op) + r'"([^"]+)"', expr)
    return frozenset(m.group(1).split("|")) if m else None


def check_classes(qs):
    rules = yaml.safe_load(RULES.read_text())
    by_alert = {r["alert"]: r["expr"] for g in rules["groups"] for r in g["rules"] if "alert" in r}
    expected = {
        "alarm": reason_set(by_alert["RegistryTokenAlarm"], "=~"),
        "noise": reason_set(by_alert["RegistryTokenClientNoise"], "=~"),
        "warning": reason_set(by_alert["RegistryTokenRejections"], "!~"),
    }
    found = {}
    for title, expr in qs:
        if title != "Refusals by alert class":
            continue
        if 'reason!~"' in expr:
            found["warning"] = reason_set(expr, "!~")
        elif reason_set(expr, "=~") == expected["alarm"]:
            found["alarm"] = expected["alarm"]
        elif reason_set(expr, "=~") == expected["noise"]:
            found["noise"] = expected["noise"]
        else:
            return [f"Refusals by alert class: {expr!r} matches no class of {RULES.name}"]
    errors = [f"Refusals by alert class: no query for the {c} class" for c in expected if c not in found]
    if found.get("warning") and found["warning"] != expected["warning"]:
        errors.append("Refusals by alert class: the warning class excludes other reasons than RegistryTokenRejections")
    return errors


def main(argv):
    if len(argv) < 3 or argv[1] not in ("rules", "names"):
        print(__doc__, file=sys.stderr)
        return 2
    dashboard = json.loads(Path(argv[2]).read_text())
    qs = queries(dashboard)
    if not qs:
        print(f"{argv[2]}: no queries", file=sys.stderr)
        return 1
    if argv[1] == "rules":
        rules = [{"record": f"dashboard:query_{i}", "expr": substitute(e)} for i, (_, e) in enumerate(qs)]
        Path(argv[3]).write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
        print(f"{argv[2]}: {len(rules)} queries written to {argv[3]}")
        return 0
    expo = [argv[i + 1] for i, a in enumerate(argv) if a == "--exposition"]
    registered = registered_from_exposition(expo) if expo else registered_from_code()
    errors = []
    used = set()
    for title, expr in qs:
        names = metric_names(expr)
        if not names:
            errors.append(f"{title}: {expr!r} selects no metric")
        for n in sorted(names - registered):
            errors.append(f"{title}: {n} is not a metric the code registers")
        used |= names
    errors += check_classes(qs)
    for e in errors:
        print(f"{argv[2]}: {e}", file=sys.stderr)
    source = "exposition " + " ".join(expo) if expo else "the code"
    print(f"{argv[2]}: {len(qs)} queries, {len(used)} metric names, checked against {source} "
          f"({len(registered)} names): {'FAILED' if errors else 'ok'}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
