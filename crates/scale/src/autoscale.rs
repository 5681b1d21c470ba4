//! `playground scale run`: the Service, the replicas and the HPA's loop.
//!
//! Every probe interval each instance's `/readyz` is read and the Service's
//! endpoints follow (the endpoints controller); exited instances are reaped,
//! and Prometheus's targets file is rewritten. Every sync period the chart's
//! adapter query gives each pod's metric, the HPA decides, and instances are
//! started or SIGTERMed (the newest first). Each sync is one JSON line of
//! `<workdir>/decisions.jsonl`; this process's own `/metrics` shows the
//! replicas, the desired replicas and each instance's memory, for Prometheus.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use axum::Router;
use axum::routing::get;
use serde_json::json;
use tracing::{info, warn};

use crate::args::RunArgs;
use crate::behavior::from_values;
use crate::hpa::{Hpa, Observation, Spec};
use crate::instances::{Instance, Launcher, kernel_tcp_bytes, rss_bytes};
use crate::prom::{AdapterRule, Prometheus};
use crate::service::Service;

/// What `/metrics` shows, rewritten after each probe and sync.
type Exposition = Arc<Mutex<String>>;

fn unix_now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

/// The run's state.
struct Run {
    args: RunArgs,
    service: Service,
    launcher: Launcher,
    hpa: Hpa,
    rule: AdapterRule,
    prom: Prometheus,
    http: reqwest::Client,
    instances: Vec<Instance>,
    endpoints: Vec<std::net::SocketAddrV4>,
    started: Instant,
    desired: u32,
    metric_desired: u32,
    decisions: std::fs::File,
    exposition: Exposition,
}

pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    let chart = from_values(&args.values, &args.component)?;
    let target = args.target.or(chart.target).context("no target: give --target or a values file with one")?;
    let spec = Spec {
        min_replicas: args.min.unwrap_or(chart.min_replicas),
        max_replicas: args.max.unwrap_or(chart.max_replicas),
        target,
        tolerance: args.tolerance,
        behavior: chart.behavior,
    };
    if spec.min_replicas == 0 || spec.min_replicas > spec.max_replicas || target <= 0.0 {
        bail!("need 1 <= min replicas <= max replicas and a target > 0, not {spec:?}");
    }
    let rule = AdapterRule::load(&args.adapter_rules, &args.metric)?;
    std::fs::create_dir_all(&args.workdir)?;
    let service = Service::plan(&args.netns, args.subnet, args.client_ips, args.vip)?;
    let bin = match &args.server_bin {
        Some(b) => b.clone(),
        None => std::env::current_exe()?,
    };
    let launcher = Launcher {
        bin,
        host_ip: service.host_ip,
        logdir: args.workdir.clone(),
        pod_prefix: args.pod_prefix.clone(),
        started: 0,
    };
    let exposition: Exposition = Arc::default();
    serve_metrics(args.admin_port, exposition.clone()).await?;
    service.create().with_context(|| format!("creating the Service's network namespace {}", args.netns))?;
    info!(netns = %args.netns, vip = %args.vip, host = %service.host_ip, ?spec, "Service created");
    let decisions = std::fs::File::create(args.workdir.join("decisions.jsonl"))?;
    let mut run = Run {
        prom: Prometheus::new(&args.prometheus),
        hpa: Hpa::new(spec),
        args,
        service,
        launcher,
        rule,
        http: reqwest::Client::new(),
        instances: Vec::new(),
        endpoints: Vec::new(),
        started: Instant::now(),
        desired: 0,
        metric_desired: 0,
        decisions,
        exposition,
    };
    let result = run.main_loop().await;
    run.shut_down().await;
    result
}

/// This process's `/metrics`.
async fn serve_metrics(port: u16, exposition: Exposition) -> anyhow::Result<()> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("cannot bind {addr}"))?;
    let app =
        Router::new().route("/metrics", get(move || async move { exposition.lock().expect("not poisoned").clone() }));
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(())
}

impl Run {
    fn now(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// Pods that count as replicas: started and not terminating.
    fn live(&self) -> impl Iterator<Item = &Instance> {
        self.instances.iter().filter(|i| i.terminating.is_none())
    }

    async fn main_loop(&mut self) -> anyhow::Result<()> {
        self.scale_to(self.hpa.spec.min_replicas).await?;
        self.desired = self.hpa.spec.min_replicas;
        let mut probe = tokio::time::interval(self.args.probe_interval);
        let mut sync = tokio::time::interval(self.args.period);
        sync.tick().await; // the first sync one period after the start, as a new HPA's
        let mut announced = false;
        // One future for the whole run: a signal that comes while a probe or
        // a sync is running is not missed.
        let stop = playground_common::lifecycle::wait_for_signal();
        tokio::pin!(stop);
        loop {
            tokio::select! {
                s = &mut stop => {
                    info!(signal = s, "Stopping");
                    return Ok(());
                }
                _ = probe.tick() => {
                    self.probe().await?;
                    if !announced && !self.endpoints.is_empty() {
                        std::fs::write(self.args.workdir.join("ready"), format!("{}\n", self.service.host_ip))?;
                        announced = true;
                    }
                }
                _ = sync.tick() => self.sync().await?,
            }
        }
    }

    /// Readiness of every instance, the endpoints, reaping, targets, gauges.
    async fn probe(&mut self) -> anyhow::Result<()> {
        let mut gone = Vec::new();
        for (n, i) in self.instances.iter_mut().enumerate() {
            if let Some(status) = i.exited() {
                if i.terminating.is_none() {
                    warn!(pod = %i.pod, %status, "Instance exited on its own");
                }
                gone.push(n);
                continue;
            }
            i.ready = i.admin_get(&self.http, "/readyz").await.0 == 200;
        }
        for n in gone.into_iter().rev() {
            let i = self.instances.remove(n);
            info!(pod = %i.pod, "Instance exited");
        }
        let ready: Vec<_> = self.instances.iter().filter(|i| i.ready).map(|i| i.endpoint).collect();
        if ready != self.endpoints {
            self.service.set_endpoints(&ready)?;
            info!(endpoints = ?ready, "Endpoints changed");
            self.endpoints = ready;
        }
        // A targets file that cannot be written now (a full disk) is
        // written at the next probe: the replicas keep running meanwhile.
        if let Err(e) = self.write_targets() {
            warn!(error = %e, "Prometheus targets not updated");
        }
        self.expose();
        Ok(())
    }

    /// One HPA sync: the adapter's per-pod values, the decision, the scaling.
    async fn sync(&mut self) -> anyhow::Result<()> {
        let pods: Vec<String> = self.live().map(|i| i.pod.clone()).collect();
        let query = self.rule.query(&self.args.namespace, &pods)?;
        let values = match self.prom.by_label(&query, &self.rule.pod_label).await {
            Ok(v) => v,
            Err(e) => {
                warn!(error = %e, "metric unavailable: no scaling this sync");
                return Ok(());
            }
        };
        let observation = Observation {
            values: pods.iter().filter_map(|p| values.get(p).copied()).collect(),
            missing: pods.iter().filter(|p| !values.contains_key(*p)).count() as u32,
        };
        let current = pods.len() as u32;
        let now = self.now();
        let Some(decision) = self.hpa.sync(now, current, &observation) else {
            warn!("no pod has the metric yet: no scaling this sync");
            return Ok(());
        };
        self.desired = decision.desired;
        self.metric_desired = decision.metric_desired;
        let terminated = self.scale_to(decision.desired).await?;
        let line = json!({
            "t": now, "unix": unix_now(), "current": current, "values": values, "missing": observation.missing,
            "metric_desired": decision.metric_desired, "desired": decision.desired,
            "target": self.hpa.spec.target, "terminated": terminated,
        });
        if let Err(e) = writeln!(self.decisions, "{line}") {
            warn!(error = %e, "decision not logged");
        }
        info!(current, desired = decision.desired, metric_desired = decision.metric_desired, ?values, "HPA sync");
        self.expose();
        Ok(())
    }

    /// Starts or SIGTERMs instances to reach `desired` live ones; the
    /// SIGTERMed ones with the connections each held.
    async fn scale_to(&mut self, desired: u32) -> anyhow::Result<BTreeMap<String, f64>> {
        let mut terminated = BTreeMap::new();
        while (self.live().count() as u32) < desired {
            let i = self.launcher.start()?;
            info!(pod = %i.pod, endpoint = %i.endpoint, admin = i.admin, "Instance started");
            self.instances.push(i);
        }
        while (self.live().count() as u32) > desired {
            let now = self.now();
            let newest = self.instances.iter_mut().rev().find(|i| i.terminating.is_none()).expect("counted");
            let held = newest.connections(&self.http).await;
            newest.terminate(now);
            info!(pod = %newest.pod, connections = held, "Instance SIGTERMed");
            terminated.insert(newest.pod.clone(), held);
        }
        if let Err(e) = self.write_targets() {
            warn!(error = %e, "Prometheus targets not updated");
        }
        Ok(terminated)
    }

    /// Prometheus file_sd targets: every instance (draining ones too) and
    /// this process, with the labels of a Kubernetes pod of the chart.
    fn write_targets(&self) -> anyhow::Result<()> {
        let target = |port: u16, pod: &str, container: &str| {
            json!({"targets": [format!("127.0.0.1:{port}")], "labels": {
                "__meta_kubernetes_namespace": self.args.namespace,
                "__meta_kubernetes_pod_name": pod,
                "__meta_kubernetes_pod_container_name": container,
                "__meta_kubernetes_service_name": format!("playground-{container}"),
                "__meta_kubernetes_service_label_app_kubernetes_io_component": container}})
        };
        let mut groups: Vec<_> = self.instances.iter().map(|i| target(i.admin, &i.pod, "tcp")).collect();
        groups.push(target(self.args.admin_port, "hpa", "hpa"));
        write_atomically(&self.args.targets_file, &serde_json::to_vec_pretty(&groups)?)
    }

    fn expose(&self) {
        let mut out = String::new();
        let live = self.live().count();
        let _ = writeln!(out, "# TYPE playground_scale_replicas gauge\nplayground_scale_replicas {live}");
        let _ = writeln!(
            out,
            "# TYPE playground_scale_desired_replicas gauge\nplayground_scale_desired_replicas {}",
            self.desired
        );
        let _ = writeln!(
            out,
            "# TYPE playground_scale_metric_desired_replicas gauge\nplayground_scale_metric_desired_replicas {}",
            self.metric_desired
        );
        let _ = writeln!(
            out,
            "# TYPE playground_scale_endpoints gauge\nplayground_scale_endpoints {}",
            self.endpoints.len()
        );
        let _ = writeln!(out, "# TYPE playground_scale_rss_bytes gauge");
        for i in &self.instances {
            if let Some(rss) = rss_bytes(i.pid) {
                let _ = writeln!(out, "playground_scale_rss_bytes{{replica=\"{}\"}} {rss}", i.pod);
            }
        }
        if let Some(bytes) = kernel_tcp_bytes(Path::new("/proc/net/sockstat")) {
            let _ = writeln!(
                out,
                "# TYPE playground_scale_kernel_tcp_bytes gauge\nplayground_scale_kernel_tcp_bytes {bytes}"
            );
        }
        *self.exposition.lock().expect("not poisoned") = out;
    }

    /// SIGTERMs every instance, waits for them, removes the namespace.
    async fn shut_down(&mut self) {
        let now = self.now();
        for i in self.instances.iter_mut().filter(|i| i.terminating.is_none()) {
            i.terminate(now);
        }
        for i in &mut self.instances {
            i.wait(self.args.stop_timeout).await;
        }
        if let Err(e) = self.service.delete() {
            warn!(error = %e, "removing the network namespace failed");
        }
        info!("Stopped");
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}
