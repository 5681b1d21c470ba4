//! Parsers of `playground load`'s flag values. Each rejects bad input with a
//! message that says what is expected, before any socket is opened.

use std::net::{IpAddr, Ipv4Addr};

use super::args::{Broadcasters, Mix, MixPart, SourceIps};

/// Parses `--mix`: comma-separated `scenario=weight`.
pub fn parse_mix(s: &str) -> Result<Mix, String> {
    let mut parts: Vec<(MixPart, u32)> = Vec::new();
    for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (name, weight) =
            item.split_once('=').ok_or_else(|| format!("`{item}` is not scenario=weight (e.g. echo=70)"))?;
        let part = match name.trim() {
            "echo" => MixPart::Echo,
            "cache" => MixPart::Cache,
            "broadcast" => MixPart::Broadcast,
            "idle" => MixPart::Idle,
            other => return Err(format!("unknown scenario `{other}` (echo, cache, broadcast, idle)")),
        };
        let weight: u32 =
            weight.trim().parse().map_err(|_| format!("weight of `{name}` is not a whole number: `{weight}`"))?;
        if parts.iter().any(|(p, _)| *p == part) {
            return Err(format!("`{name}` is given twice"));
        }
        parts.push((part, weight));
    }
    if parts.iter().map(|(_, w)| u64::from(*w)).sum::<u64>() == 0 {
        return Err("the weights add up to zero (e.g. echo=70,cache=20,broadcast=10)".into());
    }
    Ok(Mix(parts))
}

/// Parses `--broadcasters`: a count (`3`) or a share (`10%`).
pub fn parse_broadcasters(s: &str) -> Result<Broadcasters, String> {
    let s = s.trim();
    if let Some(p) = s.strip_suffix('%') {
        let p: f64 = p.trim().parse().map_err(|_| format!("`{s}` is not a share like 10%"))?;
        if !(0.0..=100.0).contains(&p) {
            return Err(format!("{s} is not between 0% and 100%"));
        }
        return Ok(Broadcasters::Percent(p));
    }
    s.parse().map(Broadcasters::Count).map_err(|_| format!("`{s}` is neither a count (3) nor a share (10%)"))
}

/// Parses `--rate`: messages per second, more than zero.
pub fn parse_rate(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 && r <= 1e9 => Ok(r),
        _ => Err(format!("`{s}` is not a rate in messages per second (e.g. 50000)")),
    }
}

/// Parses `--payload`: one line's worth of text.
pub fn parse_payload(s: &str) -> Result<String, String> {
    if s.is_empty() || s.contains(['\n', '\r']) {
        return Err("the payload must be non-empty text without line breaks".into());
    }
    Ok(s.to_string())
}

/// Most source addresses one range may expand to (a /16).
const MAX_SOURCE_IPS: usize = 65_536;

/// Parses `--source-ips`: comma-separated addresses and IPv4 ranges `a-b`.
pub fn parse_source_ips(s: &str) -> Result<SourceIps, String> {
    let mut ips = Vec::new();
    for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        if let Some((a, b)) = item.split_once('-') {
            let parse = |x: &str| -> Result<Ipv4Addr, String> {
                x.trim().parse().map_err(|_| format!("`{x}` in `{item}` is not an IPv4 address"))
            };
            let (a, b) = (u32::from(parse(a)?), u32::from(parse(b)?));
            if a > b {
                return Err(format!("range `{item}` ends before it starts"));
            }
            if (b - a) as usize >= MAX_SOURCE_IPS || ips.len() + (b - a) as usize >= MAX_SOURCE_IPS {
                return Err(format!("more than {MAX_SOURCE_IPS} source addresses"));
            }
            ips.extend((a..=b).map(|ip| IpAddr::V4(Ipv4Addr::from(ip))));
        } else {
            ips.push(item.parse().map_err(|_| format!("`{item}` is not an IP address or a range a-b"))?);
        }
    }
    if ips.is_empty() {
        return Err("no address given (e.g. 127.0.0.2-127.0.0.50 or 127.0.0.2,127.0.0.3)".into());
    }
    Ok(SourceIps(ips))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_ip_lists_and_ranges() {
        let ips = parse_source_ips("127.0.0.2-127.0.0.3, 127.0.0.9").unwrap().0;
        let want: Vec<IpAddr> = ["127.0.0.2", "127.0.0.3", "127.0.0.9"].iter().map(|s| s.parse().unwrap()).collect();
        assert_eq!(ips, want);
        assert!(parse_source_ips(" , ").is_err());
    }
}
