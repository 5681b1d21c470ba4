//! The cases of the Kubernetes documentation ("Horizontal Pod Autoscaling",
//! algorithm details and configurable scaling behavior), and the chart's own
//! behavior read from deploy/helm/playground/values.yaml.

use std::path::Path;

use super::*;
use crate::behavior::{Behavior, Policy, PolicyKind, Rules, SelectPolicy, from_values};

fn obs(values: &[f64]) -> Observation {
    Observation { values: values.to_vec(), missing: 0 }
}

fn spec(min: u32, max: u32, target: f64, behavior: Behavior) -> Spec {
    Spec { min_replicas: min, max_replicas: max, target, tolerance: 0.1, behavior }
}

fn behavior(yaml: &str) -> Behavior {
    Behavior::from_yaml(yaml).unwrap()
}

/// A behavior that lets any change through at once, to test the metric alone.
fn free() -> Behavior {
    behavior(
        "scaleUp: {policies: [{type: Percent, value: 1000, periodSeconds: 1}]}\n\
         scaleDown: {stabilizationWindowSeconds: 0, policies: [{type: Percent, value: 100, periodSeconds: 1}]}",
    )
}

/// Pods reporting `per_pod` each at successive syncs `every` seconds apart,
/// the replicas following each decision: the replicas after each sync.
fn replay(hpa: &mut Hpa, start: u32, every: f64, per_pod: &[f64]) -> Vec<u32> {
    let mut current = start;
    let mut out = Vec::new();
    for (i, v) in per_pod.iter().enumerate() {
        let d = hpa.sync(i as f64 * every, current, &obs(&vec![*v; current as usize])).unwrap();
        current = d.desired;
        out.push(current);
    }
    out
}

#[test]
fn ratio_to_target_doubles_and_halves() {
    // "if the current metric value is 200m, and the desired value is 100m,
    // the number of replicas will be doubled ... 50m ... halve".
    assert_eq!(metric_replicas(4, &obs(&[200.0; 4]), 100.0, 0.1), Some(8));
    assert_eq!(metric_replicas(4, &obs(&[50.0; 4]), 100.0, 0.1), Some(2));
    // The average, not each pod: 150 and 50 average 100.
    assert_eq!(metric_replicas(2, &obs(&[150.0, 50.0]), 100.0, 0.1), Some(2));
    // Rounded up: 3 pods at 120 want 3.6.
    assert_eq!(metric_replicas(3, &obs(&[120.0; 3]), 100.0, 0.1), Some(4));
}

#[test]
fn within_the_tolerance_nothing_changes() {
    assert_eq!(metric_replicas(3, &obs(&[109.0; 3]), 100.0, 0.1), Some(3));
    assert_eq!(metric_replicas(3, &obs(&[91.0; 3]), 100.0, 0.1), Some(3));
    assert_eq!(metric_replicas(3, &obs(&[111.0; 3]), 100.0, 0.1), Some(4));
    assert_eq!(metric_replicas(3, &obs(&[89.0; 3]), 100.0, 0.1), Some(3), "ceil(2.67) is 3");
    assert_eq!(metric_replicas(10, &obs(&[89.0; 10]), 100.0, 0.1), Some(9));
}

#[test]
fn pods_without_a_metric_damp_the_change() {
    // Scaling up: they count as 0, and one that brings the ratio back within
    // the tolerance leaves the replicas alone.
    let o = Observation { values: vec![200.0], missing: 1 };
    assert_eq!(metric_replicas(2, &o, 100.0, 0.1), Some(2));
    let o = Observation { values: vec![400.0], missing: 1 };
    assert_eq!(metric_replicas(2, &o, 100.0, 0.1), Some(4));
    // Scaling down: they count as at the target.
    let o = Observation { values: vec![10.0, 10.0, 10.0], missing: 1 };
    assert_eq!(metric_replicas(4, &o, 100.0, 0.1), Some(2));
    // No pod with a metric: no decision.
    assert_eq!(metric_replicas(2, &Observation { values: vec![], missing: 2 }, 100.0, 0.1), None);
}

#[test]
fn min_and_max_bound_the_replicas() {
    let mut hpa = Hpa::new(spec(2, 6, 100.0, free()));
    assert_eq!(hpa.sync(0.0, 4, &obs(&[1000.0; 4])).unwrap().desired, 6);
    assert_eq!(hpa.sync(1.0, 6, &obs(&[0.0; 6])).unwrap().desired, 2);
    // Outside the bounds the controller goes to them whatever the metric.
    assert_eq!(hpa.sync(2.0, 9, &obs(&[])).unwrap().desired, 6);
    assert_eq!(hpa.sync(3.0, 1, &obs(&[])).unwrap().desired, 2);
}

#[test]
fn default_scale_up_is_four_pods_or_double_per_15_s() {
    // "scaleUp: ... policies: Percent 100 / 15 s, Pods 4 / 15 s, selectPolicy Max".
    let mut hpa = Hpa::new(spec(1, 100, 100.0, Behavior::default()));
    assert_eq!(hpa.sync(0.0, 1, &obs(&[1000.0])).unwrap().desired, 5);
    let mut hpa = Hpa::new(spec(1, 100, 100.0, Behavior::default()));
    assert_eq!(hpa.sync(0.0, 10, &obs(&[300.0; 10])).unwrap().desired, 20);
    // Within the same 15 s nothing more: the period started at 10.
    assert_eq!(hpa.sync(5.0, 20, &obs(&[300.0; 20])).unwrap().desired, 20);
    assert_eq!(hpa.sync(16.0, 20, &obs(&[300.0; 20])).unwrap().desired, 40);
}

#[test]
fn default_scale_down_waits_300_s_for_the_highest_recommendation() {
    let mut hpa = Hpa::new(spec(1, 10, 100.0, Behavior::default()));
    assert_eq!(hpa.sync(0.0, 5, &obs(&[60.0; 5])).unwrap(), Decision { metric_desired: 3, desired: 5 });
    assert_eq!(hpa.sync(100.0, 5, &obs(&[40.0; 5])).unwrap().desired, 5);
    // The recommendations of t=0 (5 and 3) are out of the window; t=100's 2 is what is left.
    assert_eq!(hpa.sync(301.0, 5, &obs(&[40.0; 5])).unwrap().desired, 2);
}

#[test]
fn scale_up_is_not_held_by_the_scale_down_window() {
    let mut hpa = Hpa::new(spec(1, 20, 100.0, Behavior::default()));
    assert_eq!(hpa.sync(0.0, 5, &obs(&[40.0; 5])).unwrap().desired, 5);
    assert_eq!(hpa.sync(50.0, 5, &obs(&[160.0; 5])).unwrap().desired, 8);
}

#[test]
fn scale_up_window_takes_the_lowest_recommendation() {
    let b = behavior("scaleUp: {stabilizationWindowSeconds: 60}");
    let mut hpa = Hpa::new(spec(1, 20, 100.0, b));
    // The start-up recommendation (2) holds the scale-up for 60 s.
    assert_eq!(hpa.sync(0.0, 2, &obs(&[200.0; 2])).unwrap().desired, 2);
    assert_eq!(hpa.sync(30.0, 2, &obs(&[200.0; 2])).unwrap().desired, 2);
    assert_eq!(hpa.sync(61.0, 2, &obs(&[200.0; 2])).unwrap().desired, 4);
}

#[test]
fn documented_scale_down_policies_pods_4_and_percent_10_per_minute() {
    // "policies: Pods 4 / 60 s, Percent 10 / 60 s ... at 80 replicas ... 8 replicas
    // will be reduced. In the next iteration when the number of replicas is 72,
    // 10% of the pods is 7.2 but the number is rounded up to 8 ... When the
    // number of replicas falls below 40, the first policy (Pods) is applied".
    let b = behavior(
        "scaleDown:\n  stabilizationWindowSeconds: 0\n  policies:\n  \
         - {type: Pods, value: 4, periodSeconds: 60}\n  - {type: Percent, value: 10, periodSeconds: 60}",
    );
    let mut hpa = Hpa::new(spec(1, 100, 100.0, b.clone()));
    assert_eq!(hpa.sync(0.0, 80, &obs(&[10.0; 80])).unwrap().desired, 72);
    // Within the period the 8 removed are counted: nothing more.
    assert_eq!(hpa.sync(30.0, 72, &obs(&[10.0; 72])).unwrap().desired, 72);
    assert_eq!(hpa.sync(61.0, 72, &obs(&[10.0; 72])).unwrap().desired, 64);
    let mut hpa = Hpa::new(spec(1, 100, 100.0, b.clone()));
    assert_eq!(hpa.sync(0.0, 30, &obs(&[10.0; 30])).unwrap().desired, 26);
    // selectPolicy Min: the smaller change wins.
    let mut min = b;
    min.scale_down.select_policy = SelectPolicy::Min;
    let mut hpa = Hpa::new(spec(1, 100, 100.0, min));
    assert_eq!(hpa.sync(0.0, 80, &obs(&[10.0; 80])).unwrap().desired, 76);
}

#[test]
fn disabled_direction_never_scales() {
    let b = behavior("scaleDown: {selectPolicy: Disabled}");
    let mut hpa = Hpa::new(spec(1, 10, 100.0, b));
    assert_eq!(hpa.sync(0.0, 5, &obs(&[1.0; 5])).unwrap(), Decision { metric_desired: 1, desired: 5 });
    assert_eq!(hpa.sync(1000.0, 5, &obs(&[1.0; 5])).unwrap().desired, 5);
    assert_eq!(hpa.sync(1001.0, 5, &obs(&[300.0; 5])).unwrap().desired, 10);
}

#[test]
fn the_charts_behavior_one_pod_per_30_s_down_after_45_s() {
    let chart =
        from_values(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/helm/playground/values.yaml"), "tcp")
            .unwrap();
    let rules = |window| Rules {
        stabilization_window_seconds: window,
        select_policy: SelectPolicy::Max,
        policies: vec![Policy { kind: PolicyKind::Pods, value: 1, period_seconds: 30 }],
    };
    assert_eq!(chart.behavior, Behavior { scale_up: rules(0), scale_down: rules(45) });
    assert_eq!((chart.min_replicas, chart.max_replicas, chart.target), (1, 5, Some(5000.0)));

    // 20,000 per pod wanted, 100,000 held: one more pod every 30 s (syncs every 15 s).
    let mut hpa = Hpa::new(spec(1, 6, 20_000.0, chart.behavior));
    let load = [100_000.0, 50_000.0, 50_000.0, 33_000.0, 33_000.0, 25_000.0, 25_000.0, 20_000.0, 20_000.0];
    assert_eq!(replay(&mut hpa, 1, 15.0, &load), [2, 2, 3, 3, 4, 4, 5, 5, 5]);
    // The clients leave: down one pod per 30 s, once 45 s of lower recommendations passed.
    let t0 = 9.0 * 15.0;
    let mut current = 5;
    let mut got = Vec::new();
    for i in 0..12 {
        current = hpa.sync(t0 + f64::from(i) * 15.0, current, &obs(&vec![1000.0; current as usize])).unwrap().desired;
        got.push(current);
    }
    // The last recommendation of 5 was at t=120: 45 s later, at 165, the first pod goes.
    assert_eq!(got, [5, 5, 4, 4, 3, 3, 2, 2, 1, 1, 1, 1]);
}

#[test]
fn values_errors_are_clear() {
    let dir = std::env::temp_dir().join(format!("playground-scale-values-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("values.yaml");
    std::fs::write(&file, "tcp:\n  autoscaling:\n    minReplicas: 1\n").unwrap();
    let e = from_values(&file, "tcp").unwrap_err().to_string();
    assert!(e.contains("tcp.autoscaling.maxReplicas"), "{e}");
    std::fs::write(&file, "tcp:\n  autoscaling:\n    minReplicas: 1\n    maxReplicas: 3\n    behavior:\n      scaleUp: {policies: [{type: Pods, value: 0, periodSeconds: 15}]}\n").unwrap();
    let e = format!("{:#}", from_values(&file, "tcp").unwrap_err());
    assert!(e.contains("value must be > 0"), "{e}");
    std::fs::write(
        &file,
        "tcp:\n  autoscaling:\n    minReplicas: 1\n    maxReplicas: 3\n    behavior:\n      scaleSideways: {}\n",
    )
    .unwrap();
    let e = format!("{:#}", from_values(&file, "tcp").unwrap_err());
    assert!(e.contains("scaleSideways"), "{e}");
    let e = from_values(&dir.join("absent.yaml"), "tcp").unwrap_err().to_string();
    assert!(e.contains("absent.yaml"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}
