"""The verdicts of scripts/scale: the HPA's decisions against the algorithm's
rules and the chart's behavior, the replicas seen, the SIGTERMed instances'
clients, the loads' reports, memory at the peak."""

import json
import math
import os

from .config import NAMESPACE, verdict

UP_PERIOD, DOWN_PERIOD, DOWN_WINDOW = 30, 30, 45  # checked against the chart's values below


def chart_behavior(root):
    import yaml
    with open(os.path.join(root, "deploy", "helm", "playground", "values.yaml")) as f:
        b = yaml.safe_load(f)["tcp"]["autoscaling"]["behavior"]
    up, down = b["scaleUp"], b["scaleDown"]
    return (up["policies"], down["policies"], down["stabilizationWindowSeconds"], up["stabilizationWindowSeconds"])


def decisions(scale_dir):
    with open(os.path.join(scale_dir, "decisions.jsonl")) as f:
        return [json.loads(line) for line in f if line.strip()]


def check_decisions(ds, cfg, root):
    """Each sync's metric replicas from its values (ceil(sum / target) outside
    the tolerance), and each scaling step within the chart's behavior."""
    ups, downs, window, up_window = chart_behavior(root)
    one_pod = (len(ups) == len(downs) == 1 and ups[0]["type"] == downs[0]["type"] == "Pods"
               and ups[0]["value"] == downs[0]["value"] == 1)
    verdict("chart behavior (values.yaml)", "up 1 pod / 30 s at once, down 1 pod / 30 s after 45 s",
            f"up {ups}, window {up_window}; down {downs}, window {window}",
            one_pod and ups[0]["periodSeconds"] == UP_PERIOD and downs[0]["periodSeconds"] == DOWN_PERIOD
            and window == DOWN_WINDOW and up_window == 0)
    wrong_metric, wrong_steps = [], []
    last_up = last_down = -1e9
    for d in ds:
        vals = list(d["values"].values())
        cur, target = d["current"], d["target"]
        if d["missing"] == 0 and vals and cfg["min"] <= cur <= cfg["max"]:
            ratio = sum(vals) / len(vals) / target
            want = cur if abs(1 - ratio) <= 0.1 else math.ceil(sum(vals) / target - 1e-9)
            if want != d["metric_desired"]:
                wrong_metric.append(f"t={d['t']:.0f}s {vals} -> {d['metric_desired']}, not {want}")
        t, new = d["t"], d["desired"]
        if new > cur:
            bound = min(cfg["max"], d["metric_desired"])
            if new != cur + 1 or t - last_up < UP_PERIOD - 0.5 or new > bound:
                wrong_steps.append(f"t={t:.0f}s up {cur}->{new} ({t - last_up:.0f}s after the last)")
            last_up = t
        elif new < cur:
            recent = [e["metric_desired"] for e in ds if t - window < e["t"] <= t]
            if new != cur - 1 or t - last_down < DOWN_PERIOD - 0.5 or max(recent) > new:
                wrong_steps.append(f"t={t:.0f}s down {cur}->{new}, window max {max(recent)}")
            last_down = t
    verdict("HPA: metric replicas = ceil(sum / target), none within 10 %", f"{len(ds)} syncs",
            "; ".join(wrong_metric[:3]) or f"{len(ds)} syncs agree", not wrong_metric)
    verdict("HPA: each step within the behavior (1 pod, 30 s apart; down only after 45 s of lower)",
            "every step", "; ".join(wrong_steps[:3]) or "every step", not wrong_steps)
    path = [ds[0]["current"]] if ds else []
    for d in ds:
        if d["desired"] != path[-1]:
            path.append(d["desired"])
    peak_want = min(cfg["max"], math.ceil(cfg["connections"] / cfg["target"]))
    verdict("replicas: up while connecting, down after the clients leave",
            f"1 -> {peak_want} -> ... -> {cfg['min']}", " -> ".join(map(str, path)),
            bool(path) and max(path) == peak_want and path[-1] == cfg["min"])
    return path


def check_terminations(ds, loads_reports, samples_ok):
    """Every SIGTERMed instance's clients got `reconnect` and came back."""
    terms = {pod: held for d in ds for pod, held in d["terminated"].items()}
    held = sum(terms.values())
    reconnects = sum(r["totals"]["reconnects"] for r in loads_reports.values())
    verdict("SIGTERMed instances: their clients told to reconnect",
            f">= {held:,.0f} reconnects (held at SIGTERM: "
            + ", ".join(f"{p} {h:,.0f}" for p, h in terms.items()) + ")",
            f"{reconnects:,} reconnects", reconnects >= held and terms)
    return terms


def check_loads(reports, rejected, errors):
    """No error but the refusals of full instances: each is one `error: server
    full` line and a closed connection, after which the client connects again
    through the Service. A refusal the client did not read before the close
    (its own request crossed it) is a lost connection instead."""
    wrong, refused, resets, texts = 0, 0, 0, {}
    for name, r in sorted(reports.items()):
        t = r["totals"]
        check = (r.get("broadcast") or {}).get("check") or {}
        missing = check.get("missing", 0)
        wrong, refused, resets = wrong + t["wrong_replies"], refused + t["refused"], resets + t["resets"]
        for text, n in r.get("error_replies", {}).items():
            texts[text] = texts.get(text, 0) + n
        bad = {k: t[k] for k in ("connect_errors", "timeouts", "publish_errors") if t[k]}
        verdict(f"load {name}: no lost broadcast, no timeout, no failed connect",
                "0 missing, 0 errors", f"{t['received']:,} replies, {t['reconnects']:,} reconnects, "
                f"{t['deliveries']:,} broadcasts received ({check.get('published', 0):,} published), "
                f"missing {missing}; errors {bad or 0}", not bad and missing == 0)
    verdict("no wrong reply", "0", f"{wrong:,}" + (f" (server errors {texts})" if texts else ""), wrong == 0)
    verdict("refusals by full instances: read by the clients as `error: server full`, or the connection lost",
            f"{rejected:,} refusals (the servers' count)", f"{refused:,} read, {resets:,} lost connections",
            refused + resets == rejected)
    verdict("commands the servers answered with an error", "none", errors or "none", not errors)


def memory_at_peak(scraper, at, connections):
    """(rss bytes summed, kernel TCP bytes, replicas) at `at` (Unix seconds)."""
    def one(expr):
        data = scraper.api("query", query=expr, time=str(at))
        return float(data["result"][0]["value"][1]) if data["result"] else 0.0
    rss = one(f'sum(playground_scale_rss_bytes{{namespace="{NAMESPACE}"}})')
    kernel = one(f'playground_scale_kernel_tcp_bytes{{namespace="{NAMESPACE}"}}')
    held = one(f'sum(playground_tcp_connections{{namespace="{NAMESPACE}",container="tcp"}})')
    reps = one(f'count(playground_scale_rss_bytes{{namespace="{NAMESPACE}"}})')
    return dict(rss=rss, kernel=kernel, held=held, replicas=reps, connections=connections)


def rejected(scraper):
    data = scraper.query(f'sum(max_over_time(playground_tcp_connections_rejected_total{{namespace="{NAMESPACE}"}}[2h]))')
    return int(data[0][1]) if data else 0


def server_errors(scraper):
    """Commands the servers answered with an error, by command (the
    `outcome="error"` side of playground_commands_total)."""
    data = scraper.query(f'sum by (command) (max_over_time(playground_commands_total'
                         f'{{namespace="{NAMESPACE}",outcome="error"}}[2h])) > 0')
    return {m.get("command", "?"): int(v) for m, v in data}
