"""The scenario of scripts/e2e in order: start, load, scale out, scale in, checks."""

import os
import signal
import time

from playlib import Failure, Load, exit_code, poll, service, signal_proc, wait_until

from . import config
from .checks import final_checks
from .config import (ALIAS, KAFKA, KAFKA_PASSWORD, KAFKA_USER, MEMCACHED_PORT, NAMESPACE, OPENSEARCH,
                     RECONNECT_GRACE, SETTLE, SIGTERM_TIMEOUT, fmt, log, short, verdict)
from .instances import Instance, Scraper, established, open_probes
from .nginx import Nginx
from .services import ensure_tools


def scenario(cfg, work, run_id):
    logdir = os.path.join(work, "logs")
    os.makedirs(logdir)

    installed = ensure_tools()
    verdict("tools: nginx + stream module, prometheus", "installed",
            f"apt-get install {' '.join(installed)}" if installed else "already installed", True)

    bcast_topic, log_topic = f"{run_id}-broadcasts", f"{run_id}-logs"
    index = f"{run_id}-logs"
    # Topics with the usual three partitions, before any instance looks for them.
    rc, out = service("kafka", "topics", bcast_topic, log_topic)
    if rc:
        raise Failure(f"creating the run's topics failed:\n{out[-800:]}")

    base = {k: v for k, v in os.environ.items()
            if not k.startswith(("MEMCACHED_", "KAFKA_", "ELASTICSEARCH_", "PLAYGROUND_", "RUST_LOG"))}
    shared = dict(base,
                  MEMCACHED_SERVICE="127.0.0.1", MEMCACHED_PORT=str(MEMCACHED_PORT),
                  KAFKA_BROKERS=KAFKA, KAFKA_SASL_USER=KAFKA_USER, KAFKA_SASL_PASSWORD=KAFKA_PASSWORD,
                  KAFKA_BCAST_TOPIC=bcast_topic, KAFKA_LOGGING_TOPIC=log_topic,
                  BIND_ADDRESS="127.0.0.1", ADMIN_BIND_ADDRESS="127.0.0.1",
                  SIGTERM_TIMEOUT=str(SIGTERM_TIMEOUT), RECONNECT_GRACE=f"{RECONNECT_GRACE}s",
                  LOG_LEVEL="info")

    logger = Instance("logger", f"{run_id}-logger", dict(
        shared, KAFKA_CONSUMER_GROUP=f"{run_id}-logger", ELASTICSEARCH_ENDPOINT=OPENSEARCH,
        ELASTICSEARCH_LOGGING_INDEX=index, ELASTICSEARCH_ALIAS=ALIAS, ELASTICSEARCH_REPLICAS="0",
        ELASTICSEARCH_USERNAME="", SHUTDOWN_TIMEOUT="10s"), logdir)

    tcp = {n: Instance("tcp", f"{run_id}-tcp-{n}", shared, logdir) for n in (1, 2)}
    udp = {n: Instance("udp", f"{run_id}-udp-{n}", shared, logdir) for n in (1, 2)}
    servers = list(tcp.values()) + list(udp.values())
    for i in servers:
        wait_until(f"{i.pod} ready", 30, i.ready)

    wait_until("logger ready (Kafka and OpenSearch reachable)", 60, logger.ready)
    verdict("instances ready (/readyz 200)", "2 tcp, 2 udp, 1 logger", "2 tcp, 2 udp, 1 logger", True)

    nginx = Nginx(work, logdir)
    nginx.write([i.port for i in tcp.values()], [i.port for i in udp.values()])
    nginx.start(base)

    prom = Scraper(work, logdir)
    scraped = servers + [logger]  # the logger is scraped too
    prom.set_targets(scraped)
    prom.start(60)
    up = wait_until("Prometheus scraping every instance", 30, lambda: prom.up() == prom.targets and prom.up())
    verdict("Prometheus scrapes every instance (1 s)", f"{len(scraped)} targets up", f"{len(up)} up", True)

    # --- load through the balancer ---
    clients = cfg["broadcast_clients"] + cfg["cache_clients"]
    limit = int(cfg["timeout"])
    # A reply later than --read-timeout counts as an error: 10 s, so that only
    # a reply that is really missing does (latency is the benchmarks' job).
    common = ["--conn-interval", cfg["conn_interval"], "--msg-interval", "250ms", "--alive", "3600",
              "--duration", str(limit), "--read-timeout", "10s", "--reconnect-delay", "1s", "--settle", SETTLE,
              "--threads", "1", "--progress-interval", "5s"]
    loads = {name: Load(["tcp", str(n), "127.0.0.1", str(nginx.tcp_port), *extra, *common], config.BIN, base, logdir,
                        f"load-{name}", "plain")
             for name, n, extra in (("broadcast", cfg["broadcast_clients"],
                                     ["--scenario", "broadcast", "--broadcasters", str(cfg["broadcasters"])]),
                                    ("cache", cfg["cache_clients"], ["--scenario", "cache"]))}
    udp_load = Load(["udp", str(cfg["udp_flows"]), "127.0.0.1", str(nginx.udp_port), "--conn-interval", "10ms",
                     "--msg-interval", f"{cfg['udp_interval'] * 1000:.0f}ms", "--alive", "3600", "--duration", str(limit),
                     "--read-timeout", "10s"], config.BIN, base, logdir, "load-udp")

    def reload_nginx():
        """nginx loses the replies of the UDP sessions its old worker still
        has when it reloads (the old worker closes the listening socket those
        replies go out through): the UDP load is held (SIGSTOP) from before
        the reload, once the replies in flight are back, to after it. A
        Kubernetes Service or Envoy changes endpoints without that loss."""
        signal_proc(udp_load.proc, signal.SIGSTOP)
        time.sleep(0.5)
        try:
            nginx.reload([i.port for i in tcp.values()], [i.port for i in udp.values()])
        finally:
            signal_proc(udp_load.proc, signal.SIGCONT)

    def all_connected():
        for name, load in loads.items():
            if load.proc.poll() is not None:
                raise Failure(f"load {name} exited with {load.proc.returncode}")
        held = {i.pod: i.connections() for i in tcp.values()}
        return held if sum(held.values()) == clients else None

    held = wait_until("every load client connected through nginx", 60 + clients * 0.02, all_connected)
    verdict("load clients spread by nginx over tcp-1, tcp-2",
            f"{clients} connections, both instances used", ", ".join(f"{short(k)} {v}" for k, v in held.items()),
            all(held.values()))
    log(f"load running: {cfg['broadcast_clients']} broadcast clients ({cfg['broadcasters']} sending), "
        f"{cfg['cache_clients']} cache clients, {cfg['udp_flows']} UDP flows; holding {cfg['warm']}s")
    time.sleep(cfg["warm"])  # traffic before the scale-out; nothing is checked on it

    # --- scale out ---
    log("scale out: starting tcp-3")
    tcp[3] = Instance("tcp", f"{run_id}-tcp-3", shared, logdir)
    wait_until(f"{tcp[3].pod} ready", 30, tcp[3].ready)
    scraped.append(tcp[3])
    prom.set_targets(scraped)
    reload_nginx()
    log(f"tcp-3 in nginx; opening {cfg['probes']} probe connections through nginx")
    probes = open_probes(nginx.tcp_port, cfg["probes"], run_id)
    probe_addrs = {f"127.0.0.1:{s.getsockname()[1]}" for s in probes}

    def agreed():
        own = tcp[3].connections()
        kernel = established(tcp[3].port)
        prom_v = prom.by_pod(f'playground_tcp_connections{{namespace="{NAMESPACE}",pod="{tcp[3].pod}"}}')
        seen = prom_v.get(tcp[3].pod)
        return (own, kernel, seen) if own > 0 and own == kernel == seen else None

    try:
        own, kernel, seen = wait_until("tcp-3: Prometheus, /metrics and the kernel agree", 20, agreed)
    except Failure as e:
        own = kernel = seen = None
        log(str(e))
    verdict("scale out: tcp-3 connections in Prometheus", f"> 0 of {cfg['probes']} probes, = its /metrics = kernel",
            f"Prometheus {fmt(seen)}, /metrics {fmt(own)}, kernel {fmt(kernel)}", bool(own) and own == kernel == seen)

    # Which probes nginx sent to tcp-3: it logs each session when it ends.
    for s in probes:
        s.close()

    def probe_sessions():
        mine = [(c, u) for proto, c, u in nginx.sessions() if proto == "TCP" and c in probe_addrs]
        return mine if len(mine) == len(probe_addrs) else None

    mine = wait_until("nginx access log lines of every probe", 15, probe_sessions)
    via3 = sum(1 for _, u in mine if u == f"127.0.0.1:{tcp[3].port}")
    verdict("scale out: Prometheus value = probes nginx sent to tcp-3", fmt(seen),
            f"{via3} of {len(mine)} probes (nginx access log)", seen is not None and via3 == seen)

    # The probes are gone: tcp-3 is back to what the load holds on it (none).
    time.sleep(cfg["hold_scaled_out"])  # the load runs on three instances; checked at the end

    # --- scale in ---
    victim = tcp[1]
    n1 = wait_until("tcp-1's connection count settled", 10,
                    lambda: (lambda c: (c,) if c == established(victim.port) else None)(victim.connections()))[0]
    log(f"scale in: SIGTERM to tcp-1, which holds {n1} load clients")
    victim.proc.send_signal(signal.SIGTERM)
    # That /readyz turns 503 at once while the server still answers old and
    # new clients, then sends reconnect and exits 0, is tcp_server.rs
    # sigterm_drains_then_sends_reconnect_and_exits_zero.
    wait_until("tcp-1 /readyz 503", SIGTERM_TIMEOUT, lambda: victim.get("/readyz")[0] == 503, 0.02)

    # Kubernetes takes a pod that is not ready out of the endpoints.
    del tcp[1]
    reload_nginx()
    log("tcp-1 out of nginx; waiting for it to send reconnect and exit")
    exit_code(victim.proc, SIGTERM_TIMEOUT + RECONNECT_GRACE + 15)
    scraped.remove(victim)
    prom.set_targets(scraped)

    back = poll(30, lambda: {i.pod: i.connections() for i in tcp.values()}, lambda h: sum(h.values()) == clients)
    verdict("scale in: tcp-1's clients came back to tcp-2, tcp-3", f"{clients} connections on them",
            ", ".join(f"{short(k)} {v}" for k, v in back.items()), sum(back.values()) == clients)

    total = poll(20, lambda: prom.by_pod(f'sum(playground_tcp_connections{{namespace="{NAMESPACE}"}})').get(""),
                 lambda t: t == clients)
    verdict("scale in: Prometheus sum(playground_tcp_connections)", clients, fmt(total), total == clients)

    time.sleep(cfg["hold_scaled_in"])  # the load runs on the two left; checked below

    final_checks(loads, udp_load, cfg["udp_flows"], n1, tcp, udp)
