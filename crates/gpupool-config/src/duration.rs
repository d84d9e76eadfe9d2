//! Durations as users and simulated-module images write them: `500ns`, `50us`, `20ms`, `1.5s`,
//! `2m`, `1h`.

use thiserror::Error;

/// A duration that could not be parsed.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("invalid duration {input:?}: {why} (examples: 500ns, 50us, 20ms, 1.5s)")]
pub struct DurationError {
    /// The text given.
    pub input: String,
    /// What is wrong with it.
    pub why: &'static str,
}

/// Longest duration accepted: one hour.
pub const MAX_DURATION_NS: u64 = 3_600_000_000_000;

/// Parses a duration into nanoseconds. A unit is required; fractions are allowed.
pub fn parse_duration_ns(input: &str) -> Result<u64, DurationError> {
    let err = |why| DurationError {
        input: input.into(),
        why,
    };
    let t = input.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| err("a unit is required"))?;
    let (number, unit) = t.split_at(split);
    let scale = match unit.trim() {
        "ns" => 1.0,
        "us" | "µs" => 1e3,
        "ms" => 1e6,
        "s" => 1e9,
        "m" => 60e9,
        "h" => 3600e9,
        _ => return Err(err("unknown unit (ns, us, ms, s, m, h)")),
    };
    if number.is_empty() || number.matches('.').count() > 1 {
        return Err(err("not a number"));
    }
    let value: f64 = number.parse().map_err(|_| err("not a number"))?;
    let ns = (value * scale).round();
    if !(0.0..=MAX_DURATION_NS as f64).contains(&ns) {
        return Err(err("longer than one hour"));
    }
    Ok(ns as u64)
}

/// Formats nanoseconds with the largest unit that keeps three significant digits readable.
pub fn format_duration_ns(ns: u64) -> String {
    match ns {
        n if n >= 1_000_000_000 => format!("{:.2}s", n as f64 / 1e9),
        n if n >= 1_000_000 => format!("{:.2}ms", n as f64 / 1e6),
        n if n >= 1_000 => format!("{:.2}us", n as f64 / 1e3),
        n => format!("{n}ns"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_and_fractions() {
        assert_eq!(parse_duration_ns("500ns"), Ok(500));
        assert_eq!(parse_duration_ns("50us"), Ok(50_000));
        assert_eq!(parse_duration_ns("20ms"), Ok(20_000_000));
        assert_eq!(parse_duration_ns("1.5s"), Ok(1_500_000_000));
        assert_eq!(parse_duration_ns(" 2.5 ms"), Ok(2_500_000));
        assert_eq!(parse_duration_ns("0ms"), Ok(0));
    }

    #[test]
    fn bad_durations_name_the_input() {
        for bad in [
            "",
            "20",
            "ms",
            "1.2.3ms",
            "5 parsecs",
            "-1ms",
            "2h",
            "7200s",
        ] {
            let e = parse_duration_ns(bad).unwrap_err();
            assert_eq!(e.input, bad);
            assert!(e.to_string().contains("invalid duration"), "{e}");
        }
    }

    #[test]
    fn formatting_round_trips_within_rounding() {
        for ns in [0, 999, 50_000, 20_000_000, 1_500_000_000] {
            let text = format_duration_ns(ns);
            let back = parse_duration_ns(&text).unwrap();
            assert!(
                back.abs_diff(ns) * 100 <= ns.max(1),
                "{ns} -> {text} -> {back}"
            );
        }
    }
}
