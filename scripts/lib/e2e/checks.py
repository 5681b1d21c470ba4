"""The checks of scripts/e2e once the load is stopped: load reports, final stop."""

import signal

from playlib import Failure, exit_code, signal_proc

from .config import RECONNECT_GRACE, SIGTERM_TIMEOUT, log, short, verdict


def final_checks(loads, udp_load, udp_flows, n1, tcp, udp):
    """Stops the loads (TCP and UDP) and checks what they report, then the final stop of every instance."""
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
    # A cache value read back wrong through another instance is a wrong reply: an error.
    for name, r in reports.items():
        t = r["totals"]
        kinds = ("connect_errors", "resets", "timeouts", "wrong_replies", "publish_errors")
        detail = ", ".join(f"{k} {t[k]}" for k in kinds if t[k]) or "none"
        verdict(f"load {name}: errors other than reconnects", 0,
                f"{r['errors']} ({detail}); {t['received']} replies, {t['reconnects']} reconnects",
                r["errors"] == 0 and t["received"] > 0)
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

    served = {short(i.pod): int(i.metric("playground_udp_packets_received_total") or 0) for i in udp.values()}
    u = (udp_report or {}).get("totals", {})
    verdict("udp echo through nginx", f"every echo answered (but the {udp_flows} in flight at the stop), "
            "both instances used", f"{u.get('received')} of {u.get('sent')} answered, {u.get('timeouts')} lost, "
            f"{u.get('wrong_replies')} wrong, {u.get('late_replies')} late, {u.get('unanswered')} in flight; "
            + ", ".join(f"{k} {v}" for k, v in served.items()),
            udp_report is not None and udp_report["errors"] == 0 and u["sent"] > 0 and u["late_replies"] == 0
            and u["received"] + u["unanswered"] == u["sent"] and u["unanswered"] <= udp_flows
            and all(served.values()))

    # --- every instance stops cleanly ---
    # Their logs reaching Kafka (Listening, Shutdown complete) and, through
    # the logger, OpenSearch are integration tests against the same services:
    # backends.rs both_instances_ship_their_logs_with_their_pod_name and
    # tests/logger/main.rs ten_thousand_events_from_two_running_servers_are_indexed_exactly.
    rest = list(tcp.values()) + list(udp.values())
    for i in rest:
        i.proc.send_signal(signal.SIGTERM)
    codes = {short(i.pod): exit_code(i.proc, SIGTERM_TIMEOUT + RECONNECT_GRACE + 15) for i in rest}
    verdict("final stop: every instance exits 0", f"{len(rest)} instances", f"exit codes {codes}",
            all(c == 0 for c in codes.values()))
