"""The checks of scripts/e2e once the load is stopped: load reports, logs, final stop."""

import json
import signal

from playlib import Failure, exit_code, http, signal_proc, wait_until

from .config import ALIAS, OPENSEARCH, RECONNECT_GRACE, SIGTERM_TIMEOUT, log, short, verdict
from .services import PHRASES, lifecycle_logs


def final_checks(loads, udp_load, udp_flows, n1, tcp, udp, victim, index):
    """Stops the loads (TCP and UDP) and checks what they report, then the logs and the final stop of every instance."""
    # --- the load's own account ---
    log("stopping the load (SIGINT: it reports what ran)")
    for load in [*loads.values(), udp_load]:
        signal_proc(load.proc, signal.SIGINT)
    reports = {}
    for name, load in [*loads.items(), ("udp", udp_load)]:
        try:
            reports[name] = load.finish(30)
        except Failure as e:
            verdict(f"load {name}: report", "exit 0 and a JSON report", e, False)
    udp_report = reports.pop("udp", None)

    reconnects = sum(r["totals"]["reconnects"] for r in reports.values())
    verdict("load: one reconnect per client tcp-1 held", n1, reconnects, reconnects == n1)
    for name, r in reports.items():
        t = r["totals"]
        kinds = ("connect_errors", "resets", "timeouts", "wrong_replies", "publish_errors")
        detail = ", ".join(f"{k} {t[k]}" for k in kinds if t[k]) or "none"
        verdict(f"load {name}: errors other than reconnects", 0,
                f"{r['errors']} ({detail}); {t['received']} replies, {t['reconnects']} reconnects",
                r["errors"] == 0 and t["received"] > 0)
        opened_ok = t["connections_opened"] == r["connections"] + t["reconnects"]
        verdict(f"load {name}: every client reconnected", f"{r['connections'] + t['reconnects']} opened",
                f"{t['connections_opened']} opened", opened_ok)
    if "broadcast" in reports:
        r = reports["broadcast"]
        c, t = r["broadcast"]["check"], r["totals"]
        verdict("broadcast: delivery check (every client, while connected)", "0 missing, 0 extra, 0 duplicates",
                f"{c['expected']} expected, {c['received']} received, {c['missing']} missing, {c['extra']} extra, "
                f"{t['duplicate_deliveries']} duplicates; {t['published']} published, delivery p99 "
                f"{r['broadcast']['delivery_latency_ms']['p99']:.0f} ms, max "
                f"{r['broadcast']['delivery_latency_ms']['max']:.0f} ms",
                c["missing"] == 0 and c["extra"] == 0 and t["duplicate_deliveries"] == 0
                and t["published"] > 0 and c["expected"] > 0)
    if "cache" in reports:
        t = reports["cache"]["totals"]
        verdict("cache: values read back on any instance", "0 wrong replies",
                f"{t['wrong_replies']} wrong of {t['received'] + t['late_replies']} replies", t["wrong_replies"] == 0)

    served = {short(i.pod): int(i.metric("playground_udp_packets_received_total") or 0) for i in udp.values()}
    u = (udp_report or {}).get("totals", {})
    verdict("udp echo through nginx", f"every echo answered (but the {udp_flows} in flight at the stop), "
            "both instances used", f"{u.get('received')} of {u.get('sent')} answered, {u.get('timeouts')} lost, "
            f"{u.get('wrong_replies')} wrong, {u.get('late_replies')} late, {u.get('unanswered')} in flight; "
            + ", ".join(f"{k} {v}" for k, v in served.items()),
            udp_report is not None and udp_report["errors"] == 0 and u["sent"] > 0 and u["late_replies"] == 0
            and u["received"] + u["unanswered"] == u["sent"] and u["unanswered"] <= udp_flows
            and all(served.values()))

    # --- lifecycle logs through the logger ---
    pods = [victim.pod] + [i.pod for i in tcp.values()] + [i.pod for i in udp.values()]

    def logs_of(what, want):
        """Waits up to 60 s for the phrases `want` of each pod: {pod: {phrase: count}}."""
        def complete():
            found = lifecycle_logs(pods)
            return found if all(found[p][w] >= 1 for p, ws in want.items() for w in ws) else None

        try:
            return wait_until(what, 60, complete, 1.0)
        except Failure as e:
            log(str(e))
            return lifecycle_logs(pods)

    found = logs_of("lifecycle logs in OpenSearch", {p: PHRASES if p == victim.pod else ("Listening",) for p in pods})
    alias_ok = index in json.loads(http("GET", f"{OPENSEARCH}/_alias/{ALIAS}")[1] or "{}")
    verdict(f"logs via {ALIAS}: Listening of every instance", f"{len(pods)} pods",
            f"{sum(1 for p in pods if found[p]['Listening'])} pods" + ("" if alias_ok else f"; {index} not in alias"),
            alias_ok and all(found[p]["Listening"] for p in pods))
    verdict(f"logs via {ALIAS}: tcp-1 Shutting down, Shutdown complete", "both",
            ", ".join(f"{w} {found[victim.pod][w]}" for w in PHRASES[1:]),
            all(found[victim.pod][w] for w in PHRASES[1:]))

    # --- every instance stops cleanly and says so ---
    rest = list(tcp.values()) + list(udp.values())
    for i in rest:
        i.proc.send_signal(signal.SIGTERM)
    codes = {short(i.pod): exit_code(i.proc, SIGTERM_TIMEOUT + RECONNECT_GRACE + 15) for i in rest}
    found = logs_of("shutdown logs in OpenSearch", {i.pod: PHRASES[1:] for i in rest})
    logged = [short(i.pod) for i in rest if all(found[i.pod][w] for w in PHRASES[1:])]
    verdict("final stop: every instance exits 0 and logs Shutdown complete", f"{len(rest)} instances",
            f"exit codes {codes}; logged by {len(logged)}",
            all(c == 0 for c in codes.values()) and len(logged) == len(rest))
