//! Duration values of options and variables: seconds, duration strings, or `never`.
//!
//! Every parser here is total: it never panics, whatever the input, and never returns a
//! duration longer than its maximum (at most [`MAX_DURATION`]), so a parsed value can be added
//! to any `Instant` or `SystemTime` of a running system without overflowing.

use std::time::Duration;

/// The longest duration any parser here returns (100 years of 365 days). Options have
/// smaller maxima of their own; this one guarantees that `Instant::now() + d` cannot
/// overflow for any parsed `d`.
pub const MAX_DURATION: Duration = Duration::from_secs(100 * 365 * 86_400);

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

/// A duration value that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// Not a duration at all.
    #[error("invalid duration {input:?}: {reason}\nhint: use seconds (180), a duration (`5 minutes`, `1h30m`, `90s`){}", if *never { " or `never`" } else { "" })]
    Invalid {
        input: String,
        reason: String,
        /// Whether `never` is accepted here (for the hint).
        never: bool,
    },
    /// A duration longer than the maximum of the option it is for.
    #[error("{input:?} is longer than the maximum of {}\nhint: give at most {}{}", human(*max), human(*max), if *never { ", or `never` for no limit" } else { "" })]
    TooLong {
        input: String,
        max: Duration,
        /// Whether `never` is accepted here (for the hint).
        never: bool,
    },
}

/// `d` in the largest whole unit that fits exactly (`365 days`, `24 hours`, `90 seconds`).
pub fn human(d: Duration) -> String {
    let secs = d.as_secs();
    let plural = |n: u64, unit: &str| format!("{n} {unit}{}", if n == 1 { "" } else { "s" });
    if d.subsec_nanos() != 0 {
        return format!("{:.3} seconds", d.as_secs_f64());
    }
    match secs {
        0 => "0 seconds".into(),
        s if s % 86_400 == 0 => plural(s / 86_400, "day"),
        s if s % 3_600 == 0 => plural(s / 3_600, "hour"),
        s if s % 60 == 0 => plural(s / 60, "minute"),
        s => plural(s, "second"),
    }
}

/// Parses an idle timeout: `180`, `-1`, `0`, `never`, `5 minutes`, `1h30m`, `1 hour 30 minutes`,
/// `90s`, `2.5m`. Units: ms, s/sec/second(s), m/min/minute(s), h/hr/hour(s), d/day(s),
/// w/week(s). At most [`MAX_DURATION`].
pub fn parse_idle_timeout(input: &str) -> Result<IdleTimeout, DurationError> {
    parse_idle_timeout_at_most(input, MAX_DURATION)
}

/// [`parse_idle_timeout`] for an option whose longest value is `max` (capped at
/// [`MAX_DURATION`]): longer values are a [`DurationError::TooLong`].
pub fn parse_idle_timeout_at_most(
    input: &str,
    max: Duration,
) -> Result<IdleTimeout, DurationError> {
    let max = max.min(MAX_DURATION);
    let s = input.trim();
    if s.eq_ignore_ascii_case("never") {
        return Ok(IdleTimeout::Never);
    }
    if let Ok(n) = s.parse::<i64>() {
        if n <= 0 {
            return Ok(IdleTimeout::Never);
        }
        let d = Duration::from_secs(n.unsigned_abs());
        if d > max {
            return Err(DurationError::TooLong {
                input: input.to_string(),
                max,
                never: true,
            });
        }
        return Ok(IdleTimeout::After(d));
    }
    let d = parse(input, max, true)?;
    Ok(if d.is_zero() {
        IdleTimeout::Never
    } else {
        IdleTimeout::After(d)
    })
}

/// Parses a duration string made of `<number><unit>` groups, optionally separated by spaces
/// or commas (`1h30m`, `1 hour, 30 minutes`). A bare number means seconds. At most
/// [`MAX_DURATION`].
pub fn parse_duration(input: &str) -> Result<Duration, DurationError> {
    parse(input, MAX_DURATION, false)
}

/// [`parse_duration`] for an option whose longest value is `max` (capped at
/// [`MAX_DURATION`]): longer values are a [`DurationError::TooLong`].
pub fn parse_duration_at_most(input: &str, max: Duration) -> Result<Duration, DurationError> {
    parse(input, max.min(MAX_DURATION), false)
}

fn parse(input: &str, max: Duration, never: bool) -> Result<Duration, DurationError> {
    let err = |reason: &str| DurationError::Invalid {
        input: input.to_string(),
        reason: reason.to_string(),
        never,
    };
    let too_long = || DurationError::TooLong {
        input: input.to_string(),
        max,
        never,
    };
    let s = input.trim();
    if s.is_empty() {
        return Err(err("empty value"));
    }
    // The total in seconds; f64 covers every accepted value (at most 100 years) to well
    // under a microsecond, and every overflow ends as infinity, which is refused below.
    let total = if let Ok(n) = s.parse::<f64>() {
        // `inf`, `infinity` and `NaN` parse as numbers too.
        if !s.bytes().any(|b| b.is_ascii_digit()) {
            return Err(err("not a number"));
        }
        if n < 0.0 {
            return Err(err("must not be negative"));
        }
        n
    } else {
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
        total
    };
    if !total.is_finite() || total > max.as_secs_f64() {
        return Err(too_long());
    }
    if total == 0.0 {
        // Also `-0`, which is not negative.
        return Ok(Duration::ZERO);
    }
    // Finite, positive and at most `max`: the conversion cannot fail, and rounding can only
    // reach `max` itself.
    Duration::try_from_secs_f64(total)
        .map(|d| d.min(max))
        .map_err(|_| too_long())
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

    #[test]
    fn oversized_values_are_errors_not_panics() {
        // Each of these used to panic (`Duration::from_secs_f64`) or to give a duration that
        // overflows `Instant::now() + d` later.
        for input in [
            "1e30",
            "1e400",
            "9223372036854775807",
            "18446744073709551616",
            "99999999999999999999999w",
        ] {
            match parse_duration(input) {
                Err(DurationError::TooLong { max, .. }) => assert_eq!(max, MAX_DURATION),
                other => panic!("{input}: {other:?}"),
            }
        }
        let e = parse_idle_timeout("9223372036854775807").unwrap_err();
        assert!(
            matches!(e, DurationError::TooLong { never: true, .. }),
            "{e:?}"
        );
        assert!(e.to_string().contains("maximum of 36500 days"), "{e}");
        assert!(e.to_string().contains("or `never`"), "{e}");
        for input in ["inf", "infinity", "NaN", "-inf"] {
            let e = parse_duration(input).unwrap_err();
            assert!(matches!(e, DurationError::Invalid { .. }), "{input}: {e:?}");
        }
        assert_eq!(parse_duration("-0").unwrap(), Duration::ZERO);
        assert_eq!(
            parse_duration(&MAX_DURATION.as_secs().to_string()).unwrap(),
            MAX_DURATION
        );
    }

    #[test]
    fn each_option_s_maximum_is_enforced_and_named() {
        let day = Duration::from_secs(86_400);
        assert_eq!(parse_duration_at_most("24h", day).unwrap(), day);
        assert_eq!(parse_duration_at_most("86400", day).unwrap(), day);
        let e = parse_duration_at_most("86401", day).unwrap_err();
        assert_eq!(
            e.to_string(),
            "\"86401\" is longer than the maximum of 1 day\nhint: give at most 1 day"
        );
        let e = parse_idle_timeout_at_most("2w", day).unwrap_err();
        assert!(
            e.to_string()
                .ends_with("give at most 1 day, or `never` for no limit"),
            "{e}"
        );
        assert_eq!(
            parse_idle_timeout_at_most("never", day).unwrap(),
            IdleTimeout::Never
        );
        assert_eq!(
            parse_idle_timeout_at_most("-5", day).unwrap(),
            IdleTimeout::Never
        );
        // A maximum above the global one is the global one.
        assert!(parse_duration_at_most("1e12", Duration::MAX).is_err());
    }

    #[test]
    fn durations_are_shown_in_their_largest_whole_unit() {
        assert_eq!(human(Duration::from_secs(365 * 86_400)), "365 days");
        assert_eq!(human(Duration::from_secs(86_400)), "1 day");
        assert_eq!(human(Duration::from_secs(7_200)), "2 hours");
        assert_eq!(human(Duration::from_secs(600)), "10 minutes");
        assert_eq!(human(Duration::from_secs(90)), "90 seconds");
        assert_eq!(human(Duration::from_millis(1500)), "1.500 seconds");
    }
}
