//! Property tests of the duration parsers: whatever the input, they return a value within
//! the maximum or an error, and never panic.

use cml_core::duration::{
    parse_duration, parse_duration_at_most, parse_idle_timeout, parse_idle_timeout_at_most,
    DurationError, IdleTimeout, MAX_DURATION,
};
use proptest::prelude::*;
use std::time::{Duration, Instant};

/// Inputs that look like durations: numbers (also huge, fractional, exponent, signed) and
/// units, separated as the parser allows.
fn duration_like() -> impl Strategy<Value = String> {
    let number = prop_oneof![
        any::<u64>().prop_map(|n| n.to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|f| f.to_string()),
        (0u32..400).prop_map(|e| format!("1e{e}")),
        "[0-9]{1,40}(\\.[0-9]{0,10})?",
    ];
    let unit = prop_oneof![
        Just(""),
        Just("ms"),
        Just("s"),
        Just("m"),
        Just("min"),
        Just("h"),
        Just("hours"),
        Just("d"),
        Just("w"),
        Just("weeks"),
        Just("fortnights"),
    ];
    let sep = prop_oneof![Just(""), Just(" "), Just(", ")];
    prop::collection::vec((number, sep.clone(), unit, sep), 1..4).prop_map(|groups| {
        groups
            .into_iter()
            .map(|(n, s1, u, s2)| format!("{n}{s1}{u}{s2}"))
            .collect()
    })
}

/// A maximum between a second and the global maximum (and sometimes far beyond it).
fn a_maximum() -> impl Strategy<Value = Duration> {
    prop_oneof![
        (1u64..=MAX_DURATION.as_secs()).prop_map(Duration::from_secs),
        Just(Duration::MAX),
    ]
}

/// Checks what every accepted duration must satisfy.
fn within(d: Duration, max: Duration) -> Result<(), TestCaseError> {
    prop_assert!(d <= max.min(MAX_DURATION), "{d:?} > {max:?}");
    // The reason for the bound: a parsed duration can be added to the clock.
    prop_assert!(Instant::now().checked_add(d).is_some());
    Ok(())
}

fn too_long_names_the_maximum(e: &DurationError, max: Duration) -> Result<(), TestCaseError> {
    if let DurationError::TooLong { max: m, .. } = e {
        prop_assert_eq!(*m, max.min(MAX_DURATION));
        prop_assert!(e.to_string().contains("hint: give at most"));
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn any_string_parses_or_errs_without_panicking(input in any::<String>(), max in a_maximum()) {
        if let Ok(d) = parse_duration(&input) {
            within(d, MAX_DURATION)?;
        }
        match parse_duration_at_most(&input, max) {
            Ok(d) => within(d, max)?,
            Err(e) => too_long_names_the_maximum(&e, max)?,
        }
        match parse_idle_timeout_at_most(&input, max) {
            Ok(IdleTimeout::After(d)) => within(d, max)?,
            Ok(IdleTimeout::Never) => {}
            Err(e) => too_long_names_the_maximum(&e, max)?,
        }
        let _ = parse_idle_timeout(&input);
    }

    #[test]
    fn duration_like_strings_parse_or_err_without_panicking(input in duration_like(), max in a_maximum()) {
        match parse_duration_at_most(&input, max) {
            Ok(d) => within(d, max)?,
            Err(e) => too_long_names_the_maximum(&e, max)?,
        }
        match parse_idle_timeout_at_most(&input, max) {
            Ok(IdleTimeout::After(d)) => within(d, max)?,
            Ok(IdleTimeout::Never) => {}
            Err(e) => too_long_names_the_maximum(&e, max)?,
        }
    }

    #[test]
    fn whole_seconds_are_exact_up_to_the_maximum_and_refused_beyond(secs in any::<u64>(), max in a_maximum()) {
        let cap = max.min(MAX_DURATION);
        let input = secs.to_string();
        match parse_duration_at_most(&input, max) {
            Ok(d) => {
                prop_assert!(Duration::from_secs(secs) <= cap);
                prop_assert_eq!(d, Duration::from_secs(secs));
            }
            Err(DurationError::TooLong { .. }) => prop_assert!(Duration::from_secs(secs) > cap),
            Err(e) => prop_assert!(false, "{input}: {e}"),
        }
        match parse_idle_timeout_at_most(&input, max) {
            Ok(IdleTimeout::After(d)) => prop_assert_eq!(d, Duration::from_secs(secs)),
            Ok(IdleTimeout::Never) => prop_assert_eq!(secs, 0),
            Err(DurationError::TooLong { never, .. }) => {
                prop_assert!(never);
                prop_assert!(Duration::from_secs(secs) > cap);
            }
            Err(e) => prop_assert!(false, "{input}: {e}"),
        }
    }

    #[test]
    fn hours_minutes_seconds_add_up(h in 0u64..10_000, m in 0u64..60, s in 0u64..60) {
        let expected = Duration::from_secs(h * 3600 + m * 60 + s);
        prop_assert_eq!(parse_duration(&format!("{h}h{m}m{s}s")).unwrap(), expected);
        prop_assert_eq!(parse_duration(&format!("{h} hours, {m} minutes, {s} seconds")).unwrap(), expected);
    }
}
