//! What prometheus-adapter does for the HPA, against a real Prometheus: the
//! chart's adapter rule (the rendered `config.yaml` of its ConfigMap) made
//! into the PromQL the adapter sends for the pods of one namespace, and the
//! per-pod values of the answer. Also range queries, for the plots.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
struct Config {
    rules: Vec<Rule>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Rule {
    series_query: String,
    resources: Resources,
    name: Naming,
    metrics_query: String,
}

#[derive(Debug, Deserialize)]
struct Resources {
    overrides: BTreeMap<String, Resource>,
}

#[derive(Debug, Deserialize)]
struct Resource {
    resource: String,
}

#[derive(Debug, Deserialize)]
struct Naming {
    #[serde(rename = "as")]
    as_: String,
}

/// The adapter rule serving one pod metric.
#[derive(Debug, Clone, PartialEq)]
pub struct AdapterRule {
    pub series: String,
    pub namespace_label: String,
    pub pod_label: String,
    pub metrics_query: String,
}

impl AdapterRule {
    /// The rule whose `name.as` is `metric` in an adapter `config.yaml`.
    pub fn load(path: &Path, metric: &str) -> anyhow::Result<AdapterRule> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let config: Config =
            serde_norway::from_str(&text).with_context(|| format!("{}: not an adapter config", path.display()))?;
        let rule = config
            .rules
            .into_iter()
            .find(|r| r.name.as_ == metric)
            .ok_or_else(|| anyhow!("{}: no rule serves the pod metric {metric}", path.display()))?;
        let label = |kind: &str| {
            rule.resources
                .overrides
                .iter()
                .find(|(_, r)| r.resource == kind)
                .map(|(l, _)| l.clone())
                .ok_or_else(|| anyhow!("{}: the rule of {metric} maps no label to {kind}", path.display()))
        };
        let series = rule.series_query.split('{').next().unwrap_or_default().trim().to_string();
        if series.is_empty() {
            bail!("{}: the seriesQuery of {metric} names no series", path.display());
        }
        Ok(AdapterRule {
            namespace_label: label("namespace")?,
            pod_label: label("pod")?,
            series,
            metrics_query: rule.metrics_query,
        })
    }

    /// The query the adapter sends for `pods` of `namespace`.
    pub fn query(&self, namespace: &str, pods: &[String]) -> anyhow::Result<String> {
        let matchers = format!(r#"{}="{namespace}",{}=~"{}""#, self.namespace_label, self.pod_label, pods.join("|"));
        let q = self
            .metrics_query
            .replace("<<.Series>>", &self.series)
            .replace("<<.LabelMatchers>>", &matchers)
            .replace("<<.GroupBy>>", &self.pod_label);
        if q.contains("<<") {
            bail!("metricsQuery uses template fields this adapter does not know: {q}");
        }
        Ok(q)
    }
}

/// A small client of the Prometheus HTTP API.
#[derive(Debug, Clone)]
pub struct Prometheus {
    pub base: String,
    http: reqwest::Client,
}

#[derive(Debug, Deserialize)]
struct Answer {
    status: String,
    #[serde(default)]
    error: Option<String>,
    data: Option<Data>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Data {
    result: Vec<Series>,
}

/// One series of an answer: its labels and its (time, value) points.
#[derive(Debug, Clone, Deserialize)]
pub struct Series {
    pub metric: BTreeMap<String, String>,
    #[serde(default)]
    value: Option<(f64, String)>,
    #[serde(default)]
    values: Vec<(f64, String)>,
}

impl Series {
    pub fn points(&self) -> Vec<(f64, f64)> {
        self.values.iter().chain(&self.value).filter_map(|(t, v)| v.parse().ok().map(|v| (*t, v))).collect()
    }
}

impl Prometheus {
    pub fn new(base: &str) -> Prometheus {
        Prometheus { base: base.trim_end_matches('/').to_string(), http: reqwest::Client::new() }
    }

    async fn get(&self, path: &str, params: &[(&str, String)]) -> anyhow::Result<Vec<Series>> {
        let url = format!("{}/api/v1/{path}", self.base);
        let url = reqwest::Url::parse_with_params(&url, params).with_context(|| format!("bad URL {url}"))?;
        let r = self.http.get(url).timeout(Duration::from_secs(10)).send().await;
        let body = r.with_context(|| format!("Prometheus at {} unreachable", self.base))?.text().await?;
        let answer: Answer = serde_json::from_str(&body).with_context(|| format!("Prometheus answered {body}"))?;
        if answer.status != "success" {
            bail!("Prometheus {path} {params:?}: {}", answer.error.unwrap_or(body));
        }
        Ok(answer.data.map(|d| d.result).unwrap_or_default())
    }

    /// An instant query: `{label value: value}` of each series, by `label`.
    pub async fn by_label(&self, expr: &str, label: &str) -> anyhow::Result<BTreeMap<String, f64>> {
        let found = self.get("query", &[("query", expr.to_string())]).await?;
        Ok(found
            .iter()
            .filter_map(|s| Some((s.metric.get(label).cloned().unwrap_or_default(), s.points().last()?.1)))
            .collect())
    }

    /// A range query from `start` to `end` (Unix seconds) every `step` seconds.
    pub async fn range(&self, expr: &str, start: f64, end: f64, step: f64) -> anyhow::Result<Vec<Series>> {
        let p = [
            ("query", expr.to_string()),
            ("start", start.to_string()),
            ("end", end.to_string()),
            ("step", step.to_string()),
        ];
        self.get("query_range", &p).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_adapter_query_of_a_rule() {
        let dir = std::env::temp_dir().join(format!("playground-scale-rules-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("config.yaml");
        std::fs::write(
            &file,
            "rules:\n- seriesQuery: 'playground_tcp_connections{namespace!=\"\",pod!=\"\"}'\n  resources:\n    overrides:\n      namespace: {resource: namespace}\n      pod: {resource: pod}\n  name:\n    matches: \"^playground_tcp_connections$\"\n    as: \"playground_tcp_connections\"\n  metricsQuery: 'sum(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)'\n",
        )
        .unwrap();
        let rule = AdapterRule::load(&file, "playground_tcp_connections").unwrap();
        let q = rule.query("ns", &["a".into(), "b".into()]).unwrap();
        assert_eq!(q, r#"sum(playground_tcp_connections{namespace="ns",pod=~"a|b"}) by (pod)"#);
        let e = AdapterRule::load(&file, "other").unwrap_err().to_string();
        assert!(e.contains("no rule serves the pod metric other"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
