//! The HPA `behavior` (autoscaling/v2 `HorizontalPodAutoscalerBehavior`) and
//! the autoscaling settings of one component, read from the chart's values
//! (`<component>.autoscaling` in deploy/helm/playground/values.yaml) as the
//! chart's hpa.yaml template passes them to Kubernetes. Fields left out get
//! the API server's defaults.

use std::path::Path;

use anyhow::{Context as _, anyhow, bail};
use serde::Deserialize;

/// `selectPolicy`: which policy wins when several apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum SelectPolicy {
    /// The policy allowing the largest change.
    Max,
    /// The policy allowing the smallest change.
    Min,
    /// No scaling in this direction.
    Disabled,
}

/// `type` of a scaling policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum PolicyKind {
    Pods,
    Percent,
}

/// One `HPAScalingPolicy`: at most `value` pods (or percent) per `periodSeconds`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Policy {
    #[serde(rename = "type")]
    pub kind: PolicyKind,
    pub value: u32,
    pub period_seconds: u32,
}

/// `HPAScalingRules` of one direction, defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules {
    pub stabilization_window_seconds: u32,
    pub select_policy: SelectPolicy,
    pub policies: Vec<Policy>,
}

/// The rules as written: any field may be left out.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RulesSpec {
    stabilization_window_seconds: Option<u32>,
    select_policy: Option<SelectPolicy>,
    policies: Option<Vec<Policy>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct BehaviorSpec {
    scale_up: Option<RulesSpec>,
    scale_down: Option<RulesSpec>,
}

/// Both directions, defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Behavior {
    pub scale_up: Rules,
    pub scale_down: Rules,
}

impl Default for Behavior {
    /// The API server's defaults: up at once by 100 % or 4 pods per 15 s,
    /// whichever is more; down by up to 100 % per 15 s after 300 s.
    fn default() -> Behavior {
        BehaviorSpec::default().resolve()
    }
}

impl RulesSpec {
    fn resolve(self, window: u32, policies: Vec<Policy>) -> Rules {
        Rules {
            stabilization_window_seconds: self.stabilization_window_seconds.unwrap_or(window),
            select_policy: self.select_policy.unwrap_or(SelectPolicy::Max),
            policies: self.policies.filter(|p| !p.is_empty()).unwrap_or(policies),
        }
    }
}

impl BehaviorSpec {
    fn resolve(self) -> Behavior {
        let every15 = |kind, value| Policy { kind, value, period_seconds: 15 };
        Behavior {
            scale_up: self
                .scale_up
                .unwrap_or_default()
                .resolve(0, vec![every15(PolicyKind::Percent, 100), every15(PolicyKind::Pods, 4)]),
            scale_down: self.scale_down.unwrap_or_default().resolve(300, vec![every15(PolicyKind::Percent, 100)]),
        }
    }
}

impl Behavior {
    /// Parses a `behavior` object (YAML or JSON).
    pub fn from_yaml(text: &str) -> anyhow::Result<Behavior> {
        let spec: BehaviorSpec = serde_norway::from_str(text).context("not an HPA behavior")?;
        let behavior = spec.resolve();
        for p in behavior.scale_up.policies.iter().chain(&behavior.scale_down.policies) {
            if p.value == 0 || p.period_seconds == 0 || p.period_seconds > 1800 {
                bail!("HPA policy {p:?}: value must be > 0 and periodSeconds within 1..=1800");
            }
        }
        Ok(behavior)
    }
}

/// The autoscaling settings of one component in the chart's values.
#[derive(Debug, Clone, PartialEq)]
pub struct ChartAutoscaling {
    pub min_replicas: u32,
    pub max_replicas: u32,
    /// The pod metric's target average value, when the component has one.
    pub target: Option<f64>,
    pub behavior: Behavior,
}

/// Reads `<component>.autoscaling` from a values file.
pub fn from_values(path: &Path, component: &str) -> anyhow::Result<ChartAutoscaling> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let values: serde_norway::Value =
        serde_norway::from_str(&text).with_context(|| format!("{} is not YAML", path.display()))?;
    let a = values
        .get(component)
        .and_then(|c| c.get("autoscaling"))
        .ok_or_else(|| anyhow!("{}: no {component}.autoscaling", path.display()))?;
    let replicas = |key: &str| -> anyhow::Result<u32> {
        a.get(key)
            .and_then(serde_norway::Value::as_u64)
            .and_then(|v| u32::try_from(v).ok())
            .ok_or_else(|| anyhow!("{}: {component}.autoscaling.{key} is not a replica count", path.display()))
    };
    // The first enabled pod metric with a target average value
    // (`connections` for tcp, `packetsPerSecond` for udp).
    let target = a.as_mapping().into_iter().flatten().find_map(|(_, m)| {
        let enabled = m.get("enabled").and_then(serde_norway::Value::as_bool).unwrap_or(false);
        let value = m.get("targetAverageValue")?;
        let parsed = value.as_str().and_then(|s| s.parse::<f64>().ok()).or_else(|| value.as_f64());
        enabled.then_some(parsed).flatten()
    });
    let behavior = match a.get("behavior") {
        Some(b) => Behavior::from_yaml(&serde_norway::to_string(b)?)
            .with_context(|| format!("{}: {component}.autoscaling.behavior", path.display()))?,
        None => Behavior::default(),
    };
    Ok(ChartAutoscaling {
        min_replicas: replicas("minReplicas")?,
        max_replicas: replicas("maxReplicas")?,
        target,
        behavior,
    })
}
