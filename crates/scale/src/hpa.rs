//! The HorizontalPodAutoscaler's replica calculation (autoscaling/v2), as the
//! Kubernetes controller does it for one `Pods` metric with an `AverageValue`
//! target: the usage ratio to the target with its tolerance and the rules for
//! pods without a metric yet, then the `behavior` (stabilisation windows, the
//! scale-up and scale-down policies and `selectPolicy`), then min/max.
//!
//! Written here rather than taken from a crate: no Rust crate carries the
//! controller's algorithm, and it is small. Times are seconds on any
//! monotonic clock, so the tests replay the documented cases exactly.

use crate::behavior::{Behavior, PolicyKind, Rules, SelectPolicy};

/// One HPA: its bounds, target and behavior.
#[derive(Debug, Clone, PartialEq)]
pub struct Spec {
    pub min_replicas: u32,
    pub max_replicas: u32,
    /// The target average value of the pod metric.
    pub target: f64,
    /// Changes within this share of the target are not made (kube-controller-manager's
    /// `--horizontal-pod-autoscaler-tolerance`, 0.1 by default).
    pub tolerance: f64,
    pub behavior: Behavior,
}

/// What the pods report at one sync: the metric of each pod that has one,
/// and how many pods are running but have no metric yet.
#[derive(Debug, Clone, Default)]
pub struct Observation {
    pub values: Vec<f64>,
    pub missing: u32,
}

/// The outcome of one sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// What the metric alone asks for (before the behavior and min/max).
    pub metric_desired: u32,
    /// The replicas to scale to.
    pub desired: u32,
}

/// The replicas the metric asks for (the controller's `calcPlainMetricReplicas`
/// for pod metrics): `ceil(current_ratio * pods with a metric)`, no change within
/// the tolerance; pods without a metric count as at the target when scaling
/// down and as zero when scaling up, and no change is made when that reverses
/// the direction or brings the ratio within the tolerance.
pub fn metric_replicas(current: u32, obs: &Observation, target: f64, tolerance: f64) -> Option<u32> {
    if obs.values.is_empty() || target <= 0.0 {
        return None;
    }
    let ready = obs.values.len() as f64;
    let ratio = obs.values.iter().sum::<f64>() / ready / target;
    if obs.missing == 0 {
        if (1.0 - ratio).abs() <= tolerance {
            return Some(current);
        }
        return Some((ratio * ready).ceil() as u32);
    }
    let fill = if ratio < 1.0 { target } else { 0.0 };
    let pods = ready + f64::from(obs.missing);
    let new_ratio = (obs.values.iter().sum::<f64>() + fill * f64::from(obs.missing)) / pods / target;
    if (1.0 - new_ratio).abs() <= tolerance || (ratio < 1.0 && new_ratio > 1.0) || (ratio > 1.0 && new_ratio < 1.0) {
        return Some(current);
    }
    let replicas = (new_ratio * pods).ceil() as u32;
    if (new_ratio < 1.0 && replicas > current) || (new_ratio > 1.0 && replicas < current) {
        return Some(current);
    }
    Some(replicas)
}

/// A recommendation or a scale event, with its time.
#[derive(Debug, Clone, Copy)]
struct Stamped {
    at: f64,
    replicas: u32,
}

/// The controller's memory of one HPA: past recommendations (for the
/// stabilisation windows) and past scale events (for the policies' periods).
#[derive(Debug, Clone)]
pub struct Hpa {
    pub spec: Spec,
    recommendations: Vec<Stamped>,
    ups: Vec<Stamped>,
    downs: Vec<Stamped>,
}

impl Hpa {
    pub fn new(spec: Spec) -> Hpa {
        Hpa { spec, recommendations: Vec::new(), ups: Vec::new(), downs: Vec::new() }
    }

    /// One sync of the controller at time `now` with `current` replicas.
    /// Returns `None` when no pod has a metric (the controller then keeps the
    /// replicas and reports the metric unavailable). A scale to `desired` is
    /// recorded as an event: the caller is expected to make it.
    pub fn sync(&mut self, now: f64, current: u32, obs: &Observation) -> Option<Decision> {
        let spec = &self.spec;
        let (metric_desired, desired) = if current > spec.max_replicas {
            (spec.max_replicas, spec.max_replicas)
        } else if current < spec.min_replicas {
            (spec.min_replicas, spec.min_replicas)
        } else {
            let metric = metric_replicas(current, obs, spec.target, spec.tolerance)?;
            if self.recommendations.is_empty() {
                // maybeInitScaleDownStabilizationWindow: a new controller
                // starts as if it had recommended the current replicas.
                self.recommendations.push(Stamped { at: now, replicas: current });
            }
            let stabilized = self.stabilize(now, current, metric);
            (metric, self.limit_rate(now, current, stabilized))
        };
        if desired != current {
            self.record_event(now, current, desired);
        }
        Some(Decision { metric_desired, desired })
    }

    /// `stabilizeRecommendationWithBehaviors`: scale up no further than the
    /// lowest recommendation of the scale-up window, down no further than the
    /// highest of the scale-down window; the recommendation is remembered.
    fn stabilize(&mut self, now: f64, current: u32, desired: u32) -> u32 {
        let b = &self.spec.behavior;
        let up_cutoff = now - f64::from(b.scale_up.stabilization_window_seconds);
        let down_cutoff = now - f64::from(b.scale_down.stabilization_window_seconds);
        let (mut up, mut down) = (desired, desired);
        let mut old = None;
        for (i, r) in self.recommendations.iter().enumerate() {
            if r.at > up_cutoff {
                up = up.min(r.replicas);
            }
            if r.at > down_cutoff {
                down = down.max(r.replicas);
            }
            if r.at < up_cutoff && r.at < down_cutoff {
                old = Some(i);
            }
        }
        let fresh = Stamped { at: now, replicas: desired };
        match old {
            Some(i) => self.recommendations[i] = fresh,
            None => self.recommendations.push(fresh),
        }
        current.max(up).min(down)
    }

    /// `convertDesiredReplicasWithBehaviorRate`: the policies bound the
    /// change from the replicas at the start of each policy's period, then
    /// min/max apply.
    fn limit_rate(&self, now: f64, current: u32, desired: u32) -> u32 {
        let spec = &self.spec;
        if desired > current {
            let limit = self.up_limit(now, current, &spec.behavior.scale_up).max(i64::from(current));
            let allowed = i64::from(spec.max_replicas).min(limit);
            (i64::from(desired).min(allowed)) as u32
        } else if desired < current {
            let limit = self.down_limit(now, current, &spec.behavior.scale_down).min(i64::from(current));
            let allowed = i64::from(spec.min_replicas).max(limit);
            (i64::from(desired).max(allowed)) as u32
        } else {
            desired
        }
    }

    /// Replicas at the start of a period: now, less what was added and plus
    /// what was removed within it.
    fn period_start(&self, now: f64, current: u32, period: u32) -> i64 {
        let change = |events: &[Stamped]| -> i64 {
            let cutoff = now - f64::from(period);
            events.iter().filter(|e| e.at > cutoff).map(|e| i64::from(e.replicas)).sum()
        };
        i64::from(current) - change(&self.ups) + change(&self.downs)
    }

    fn up_limit(&self, now: f64, current: u32, rules: &Rules) -> i64 {
        let proposals = rules.policies.iter().map(|p| {
            let start = self.period_start(now, current, p.period_seconds);
            match p.kind {
                PolicyKind::Pods => start + i64::from(p.value),
                PolicyKind::Percent => (start as f64 * (1.0 + f64::from(p.value) / 100.0)).ceil() as i64,
            }
        });
        match rules.select_policy {
            SelectPolicy::Disabled => i64::from(current),
            SelectPolicy::Max => proposals.max().unwrap_or(i64::from(current)),
            SelectPolicy::Min => proposals.min().unwrap_or(i64::from(current)),
        }
    }

    fn down_limit(&self, now: f64, current: u32, rules: &Rules) -> i64 {
        let proposals = rules.policies.iter().map(|p| {
            let start = self.period_start(now, current, p.period_seconds);
            match p.kind {
                PolicyKind::Pods => start - i64::from(p.value),
                // Truncated, as the controller's int32() conversion does.
                PolicyKind::Percent => (start as f64 * (1.0 - f64::from(p.value) / 100.0)) as i64,
            }
        });
        // The largest change allowed is the lowest count (Max), the smallest the highest (Min).
        match rules.select_policy {
            SelectPolicy::Disabled => i64::from(current),
            SelectPolicy::Max => proposals.min().unwrap_or(i64::from(current)),
            SelectPolicy::Min => proposals.max().unwrap_or(i64::from(current)),
        }
    }

    /// `storeScaleEvent`: events older than the longest period of their
    /// direction are no longer needed.
    fn record_event(&mut self, now: f64, current: u32, desired: u32) {
        let b = &self.spec.behavior;
        let (events, rules, change) = if desired > current {
            (&mut self.ups, &b.scale_up, desired - current)
        } else {
            (&mut self.downs, &b.scale_down, current - desired)
        };
        let longest = rules.policies.iter().map(|p| p.period_seconds).max().unwrap_or(0);
        events.retain(|e| e.at > now - f64::from(longest));
        events.push(Stamped { at: now, replicas: change });
    }
}

#[cfg(test)]
#[path = "hpa_tests.rs"]
mod tests;
