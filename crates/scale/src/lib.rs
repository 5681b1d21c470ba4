//! `playground scale`: the chart's autoscaling on one machine. The HPA
//! algorithm with the chart's behavior ([`hpa`], [`behavior`]), a Service as
//! kube-proxy makes one in iptables mode ([`service`]), the autoscaler loop
//! over a real Prometheus ([`autoscale`]) and the plots of a run ([`plot`]).
//! docs/scale.md tells the experiment this is built for.

pub mod behavior;
pub mod hpa;
