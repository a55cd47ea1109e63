//! `--idle-timeout` values: seconds, duration strings, or `never`.

use std::time::Duration;

/// How long a runner may stay idle before it shuts down.
///
/// CML semantics: an integer is seconds; a value ≤ 0 or `never` disables the timeout (CML
/// itself throws on `never`, which is a bug we do not copy).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdleTimeout {
    Never,
    After(Duration),
}

impl IdleTimeout {
    /// CML's default: 5 minutes.
    pub const DEFAULT: IdleTimeout = IdleTimeout::After(Duration::from_secs(300));

    pub fn as_duration(&self) -> Option<Duration> {
        match self {
            IdleTimeout::Never => None,
            IdleTimeout::After(d) => Some(*d),
        }
    }
}

impl std::fmt::Display for IdleTimeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IdleTimeout::Never => f.write_str("never"),
            IdleTimeout::After(d) => write!(f, "{}s", d.as_secs()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {input:?}: {reason}\nhint: use seconds (180), a duration (`5 minutes`, `1h30m`, `90s`) or `never`")]
pub struct DurationError {
    pub input: String,
    pub reason: String,
}

/// Parses an idle timeout: `180`, `-1`, `0`, `never`, `5 minutes`, `1h30m`, `1 hour 30 minutes`,
/// `90s`, `2.5m`. Units: s/sec/second(s), m/min/minute(s), h/hr/hour(s), d/day(s), w/week(s).
pub fn parse_idle_timeout(input: &str) -> Result<IdleTimeout, DurationError> {
    let s = input.trim();
    if s.eq_ignore_ascii_case("never") {
        return Ok(IdleTimeout::Never);
    }
    if let Ok(n) = s.parse::<i64>() {
        return Ok(if n <= 0 {
            IdleTimeout::Never
        } else {
            IdleTimeout::After(Duration::from_secs(n as u64))
        });
    }
    let d = parse_duration(s)?;
    Ok(if d.is_zero() {
        IdleTimeout::Never
    } else {
        IdleTimeout::After(d)
    })
}

/// Parses a duration string made of `<number><unit>` groups, optionally separated by spaces
/// or commas (`1h30m`, `1 hour, 30 minutes`). A bare number means seconds.
pub fn parse_duration(input: &str) -> Result<Duration, DurationError> {
    let err = |reason: &str| DurationError {
        input: input.to_string(),
        reason: reason.to_string(),
    };
    let s = input.trim();
    if s.is_empty() {
        return Err(err("empty value"));
    }
    if let Ok(n) = s.parse::<f64>() {
        if n < 0.0 || !n.is_finite() {
            return Err(err("must not be negative"));
        }
        return Ok(Duration::from_secs_f64(n));
    }
    let mut total = 0f64;
    let mut rest = s;
    let mut groups = 0;
    while !rest.is_empty() {
        rest = rest.trim_start_matches(|c: char| c.is_whitespace() || c == ',');
        if rest.is_empty() {
            break;
        }
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_end == 0 {
            return Err(err("expected a number"));
        }
        let number: f64 = rest[..num_end]
            .parse()
            .map_err(|_| err("malformed number"))?;
        rest = rest[num_end..].trim_start();
        let unit_end = rest
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_end];
        let factor = match unit.to_ascii_lowercase().as_str() {
            "ms" | "msec" | "millisecond" | "milliseconds" => 0.001,
            "" | "s" | "sec" | "secs" | "second" | "seconds" => 1.0,
            "m" | "min" | "mins" | "minute" | "minutes" => 60.0,
            "h" | "hr" | "hrs" | "hour" | "hours" => 3600.0,
            "d" | "day" | "days" => 86400.0,
            "w" | "week" | "weeks" => 604800.0,
            _ => return Err(err(&format!("unknown unit {unit:?}"))),
        };
        total += number * factor;
        rest = &rest[unit_end..];
        groups += 1;
    }
    if groups == 0 {
        return Err(err("empty value"));
    }
    Ok(Duration::from_secs_f64(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(n: u64) -> IdleTimeout {
        IdleTimeout::After(Duration::from_secs(n))
    }

    #[test]
    fn accepts_cml_forms() {
        assert_eq!(parse_idle_timeout("180").unwrap(), secs(180));
        assert_eq!(parse_idle_timeout("5 minutes").unwrap(), secs(300));
        assert_eq!(parse_idle_timeout("1h30m").unwrap(), secs(5400));
        assert_eq!(
            parse_idle_timeout("1 hour, 30 minutes").unwrap(),
            secs(5400)
        );
        assert_eq!(parse_idle_timeout("90s").unwrap(), secs(90));
        assert_eq!(parse_idle_timeout("2.5m").unwrap(), secs(150));
        assert_eq!(parse_idle_timeout("never").unwrap(), IdleTimeout::Never);
        assert_eq!(parse_idle_timeout("NEVER").unwrap(), IdleTimeout::Never);
        assert_eq!(parse_idle_timeout("0").unwrap(), IdleTimeout::Never);
        assert_eq!(parse_idle_timeout("-1").unwrap(), IdleTimeout::Never);
    }

    #[test]
    fn rejects_garbage_with_a_hint() {
        let e = parse_idle_timeout("5 fortnights").unwrap_err();
        assert!(e.to_string().contains("unknown unit \"fortnights\""), "{e}");
        assert!(e.to_string().contains("hint:"));
        assert!(parse_idle_timeout("").is_err());
        assert!(parse_idle_timeout("abc").is_err());
        assert!(parse_duration("-5s").is_err());
    }
}
