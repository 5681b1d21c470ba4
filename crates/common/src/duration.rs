//! Durations on the command line and in the environment: plain seconds, as
//! the original's variables were (`SIGTERM_TIMEOUT=20`), or with a unit.

use std::time::Duration;

/// Parses a duration: plain seconds (`20`, `0.5`) or with a unit (`250ms`, `10m`, `1h 5s`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<f64>() {
        return Duration::try_from_secs_f64(secs).map_err(|e| format!("{e}"));
    }
    humantime::parse_duration(s).map_err(|e| format!("{e} (expected seconds or a duration like 250ms, 30s, 10m)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("20"), Ok(Duration::from_secs(20)));
        assert_eq!(parse_duration("0.25"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("15ms"), Ok(Duration::from_millis(15)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert!(parse_duration("-1").is_err());
        assert!(parse_duration("soon").is_err());
    }
}
