"""docs/scale.md and the BENCHMARKS.md section, from a run's verdicts,
decisions and memory at the peak."""

import os
import time

from playlib import ROOT, machine, write_section

from .config import table_markdown

DOC = os.path.join(ROOT, "docs", "scale.md")


def mib(b):
    return f"{b / 1048576:,.1f} MiB"


def decisions_table(ds):
    rows = ["| t (s) | replicas | per-pod values | metric wants | desired | SIGTERMed (connections held) |",
            "|---:|---:|---|---:|---:|---|"]
    prev = None
    for d in ds:
        key = (d["current"], d["desired"], d["metric_desired"])
        if key == prev and not d["terminated"]:
            continue
        prev = key
        vals = ", ".join(f"{v:,.0f}" for _, v in sorted(d["values"].items()))
        gone = ", ".join(f"{p} ({h:,.0f})" for p, h in d["terminated"].items())
        rows.append(f"| {d['t']:.0f} | {d['current']} | {vals} | {d['metric_desired']} | {d['desired']} | {gone} |")
    return "\n".join(rows)


def memory_rows(m, baseline_kernel):
    n = m["held"] or 1
    per_rss = m["rss"] / n
    kernel = max(0.0, m["kernel"] - baseline_kernel)
    return (
        "| measure | value |\n|---|---:|\n"
        f"| connections held (Prometheus sum at the peak) | {m['held']:,.0f} |\n"
        f"| instances | {m['replicas']:.0f} |\n"
        f"| server RSS summed over the instances | {mib(m['rss'])} |\n"
        f"| server RSS per connection | {per_rss:,.0f} bytes |\n"
        f"| kernel TCP memory (sockstat `mem`, both ends, less before the load) | {mib(kernel)} |\n"
        f"| kernel TCP memory per connection (both ends) | {kernel / n:,.0f} bytes |\n"
        f"| kernel slab growth since before the load (machine-wide, both ends: socket structures) | "
        f"{mib(m['slab'])} |\n"
        f"| slab growth per connection (both ends) | {m['slab'] / n:,.0f} bytes |\n"
        f"| RSS + slab growth per connection | {(m['rss'] + m['slab']) / n:,.0f} bytes |\n\n"
        "sockstat's `mem` counts only the pages of socket buffers in use, which idle connections have "
        "few of; their socket structures are in the kernel's slab, measured as its growth over the run "
        "(other work on the machine moves it too).\n")


def write(cfg, ds, path, mem, baseline_kernel, cmd, rejected, started, elapsed):
    text = f"""# Autoscaling at {cfg['connections']:,} connections on one machine

The chart's HorizontalPodAutoscaler, run for real on one machine with the parts
Kubernetes would use: a Service made the way kube-proxy makes one, the
chart's adapter rule evaluated by a real Prometheus, the HPA algorithm with
the chart's `behavior`, and `playground tcp` instances started and SIGTERMed
as a ReplicaSet would. Regenerate this page (a full run, about
{elapsed / 60:.0f} minutes, needs root):

    {cmd}

The short form (5,000 connections, target 2,000, HPA syncs every 5 s) runs in
`scripts/test` as `scripts/scale --short`.

## What runs

- **Service** (`playground scale run`, crates/scale/src/service.rs): a network
  namespace with the clients, a VIP `10.96.0.10:40000` that no socket holds,
  and the namespace's `nat` table: `OUTPUT -d VIP -j PG-SVC`, and in PG-SVC
  one DNAT rule per ready endpoint with `-m statistic --mode random
  --probability 1/(n-i)`, rewritten in one `iptables-restore --noflush`
  transaction when the endpoints change. Endpoints follow each instance's
  `/readyz` (probed every second); conntrack keeps established connections
  where they are when an endpoint is removed.
- **HPA** (crates/scale/src/hpa.rs, unit tests against the cases of the
  Kubernetes documentation): the per-pod metric from the chart's adapter rule
  (`helm template`, `autoscaling.metricsSource=servers`) through Prometheus,
  ratio to the target with the 0.1 tolerance, min/max replicas, and the
  chart's `tcp.autoscaling.behavior` read from values.yaml: up 1 pod per 30 s
  at once, down 1 pod per 30 s once 45 s of lower recommendations passed.
  Every {cfg['period']} a sync; a scale-down SIGTERMs the newest instance.
- **Load**: {len(cfg['loads'])} `playground load` processes inside the namespace open
  {cfg['connections']:,} connections to the VIP over {cfg['ramp']} s (mix `{cfg['mix']}`, one
  message per client every {cfg['msg_interval']}), then close in two steps: at
  {cfg['ramp'] + cfg['hold']} s the processes holding {sum(n for _, n, s, _ in cfg['loads'] if s == 1):,}
  connections, later the rest.
- **Limits**: one process may hold at most 20,000 open files here (the hard
  limit, which root cannot raise without CAP_SYS_RESOURCE). Target
  {cfg['target']:,} connections per instance, min {cfg['min']}, max {cfg['max']}; each instance refuses
  beyond MAX_CONNECTIONS={cfg['max_connections']:,}. The Service spreads new connections at random
  and never moves old ones, so the first instances hold more than the
  average: with a target of 20,000 (the ceiling) five instances could not
  hold 100,000, hence {cfg['target']:,} (6 x {cfg['target']:,} > {cfg['connections']:,}).

## Verdict

Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(started))} on {machine()}. Connections refused by a full instance (and retried
by their client through the Service): {rejected:,}.

{table_markdown()}

Replicas: {' -> '.join(map(str, path))}.

## Plots

Connections per instance (`playground_tcp_connections`, by pod):

![connections per instance](scale/connections.png)

Replicas, the HPA's desired replicas and the ready endpoints:

![replicas](scale/replicas.png)

Commands per second and p99 command latency in the servers:

![commands per second](scale/messages.png)

![p99 latency](scale/latency.png)

Resident memory per instance and the kernel's TCP memory:

![memory](scale/memory.png)

## Memory at the peak

{memory_rows(mem, baseline_kernel)}
## The HPA's syncs (changes only)

{decisions_table(ds)}
"""
    with open(DOC, "w") as f:
        f.write(text)


def bench_section(cfg, mem, baseline_kernel, cmd):
    n = mem["held"] or 1
    kernel = max(0.0, mem["kernel"] - baseline_kernel)
    write_section("scale-100k", f"""## Memory per connection at 100,000 connections (measured, several instances)

{cfg['connections']:,} connections held at once through the kube-proxy-style Service of
`scripts/scale` (docs/scale.md), over {mem['replicas']:.0f} `playground tcp` instances (one process
holds at most 20,000 open files here), clients on the same machine. This
measured figure replaces the extrapolation to 100,000 of the one-instance run.

| measure | result | reference (same run) | command |
|---|---|---|---|
| connections held | {mem['held']:,.0f} | {cfg['connections']:,} opened | {cmd} |
| server RSS summed over the instances | {mib(mem['rss'])} | - | {cmd} |
| server RSS per connection | {mem['rss'] / n:,.0f} bytes | - | {cmd} |
| kernel TCP memory per connection (sockstat, both ends) | {kernel / n:,.0f} bytes | {mib(baseline_kernel)} before the load | {cmd} |
| kernel slab growth per connection (socket structures, both ends, machine-wide) | {mem['slab'] / n:,.0f} bytes \
| {mib(mem['slab'])} in all | {cmd} |
| RSS + slab growth per connection | {(mem['rss'] + mem['slab']) / n:,.0f} bytes | - | {cmd} |
""")
