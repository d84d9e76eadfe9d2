//! Memory sizes: `512MiB`, `4GiB`, `4G`, `1.5GiB`, `1073741824`.
//!
//! Units: `K`/`M`/`G`/`T` (and `Ki`/`KiB`…) are binary, as in HAMi-core's
//! `CUDA_DEVICE_MEMORY_LIMIT`; `KB`/`MB`/`GB`/`TB` are decimal. Case-insensitive. A bare number is
//! bytes.

use thiserror::Error;

/// Why a size string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SizeError {
    /// The string was empty.
    #[error("empty size")]
    Empty,
    /// The number part is missing or malformed.
    #[error("size {0:?}: expected a number followed by an optional unit (e.g. 512MiB, 4GiB, 4G)")]
    BadNumber(String),
    /// The unit is not one we know.
    #[error("size {0:?}: unknown unit {1:?} (use B, K/KiB, M/MiB, G/GiB, T/TiB, KB, MB, GB, TB)")]
    BadUnit(String, String),
    /// The value does not fit in 64 bits.
    #[error("size {0:?} is too large")]
    Overflow(String),
}

fn unit_multiplier(unit: &str) -> Option<u64> {
    const KI: u64 = 1 << 10;
    let m = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "ki" | "kib" => KI,
        "m" | "mi" | "mib" => KI * KI,
        "g" | "gi" | "gib" => KI * KI * KI,
        "t" | "ti" | "tib" => KI * KI * KI * KI,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        _ => return None,
    };
    Some(m)
}

/// Parses a memory size into bytes.
pub fn parse_size(input: &str) -> Result<u64, SizeError> {
    let s = input.trim();
    if s.is_empty() {
        return Err(SizeError::Empty);
    }
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let unit = unit.trim();
    if num.is_empty() {
        return Err(SizeError::BadNumber(input.to_string()));
    }
    let mult = unit_multiplier(unit)
        .ok_or_else(|| SizeError::BadUnit(input.to_string(), unit.to_string()))?;
    let bad = || SizeError::BadNumber(input.to_string());
    let overflow = || SizeError::Overflow(input.to_string());
    let (int_part, frac_part) = match num.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (num, None),
    };
    if int_part.is_empty() || frac_part.is_some_and(|f| f.is_empty() || f.contains('.')) {
        return Err(bad());
    }
    let int: u64 = int_part.parse().map_err(|_| overflow())?;
    let mut bytes = int.checked_mul(mult).ok_or_else(overflow)?;
    if let Some(frac) = frac_part {
        if mult == 1 {
            return Err(bad());
        }
        // Exact fixed-point: frac digits / 10^len * mult, rounded down.
        let digits = &frac[..frac.len().min(18)];
        let f: u128 = digits.parse().map_err(|_| bad())?;
        let scale = 10u128.pow(digits.len() as u32);
        let extra = (f * mult as u128) / scale;
        bytes = bytes.checked_add(extra as u64).ok_or_else(overflow)?;
    }
    Ok(bytes)
}

/// Formats bytes with the largest binary unit that keeps two decimals meaningful: `4.00 GiB`.
pub fn format_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.2} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_documented_forms() {
        assert_eq!(parse_size("512MiB"), Ok(512 << 20));
        assert_eq!(parse_size("4GiB"), Ok(4 << 30));
        assert_eq!(parse_size("4G"), Ok(4 << 30));
        assert_eq!(parse_size("4g"), Ok(4 << 30));
        assert_eq!(parse_size("4Gi"), Ok(4 << 30));
        assert_eq!(parse_size("1073741824"), Ok(1 << 30));
        assert_eq!(parse_size("1.5GiB"), Ok(3 << 29));
        assert_eq!(parse_size("2GB"), Ok(2_000_000_000));
        assert_eq!(parse_size(" 8 MiB "), Ok(8 << 20));
        assert_eq!(parse_size("0"), Ok(0));
    }

    #[test]
    fn rejects_bad_input_with_named_error() {
        assert_eq!(parse_size(""), Err(SizeError::Empty));
        assert!(matches!(parse_size("GiB"), Err(SizeError::BadNumber(_))));
        assert!(matches!(parse_size("-1G"), Err(SizeError::BadNumber(_))));
        assert!(matches!(parse_size("4XB"), Err(SizeError::BadUnit(_, _))));
        assert!(matches!(parse_size("1.5"), Err(SizeError::BadNumber(_))));
        assert!(matches!(parse_size("1..5G"), Err(SizeError::BadNumber(_))));
        assert!(matches!(
            parse_size("99999999999T"),
            Err(SizeError::Overflow(_))
        ));
        assert!(matches!(
            parse_size("184467440737095516160"),
            Err(SizeError::Overflow(_))
        ));
        let msg = parse_size("4XB").unwrap_err().to_string();
        assert!(msg.contains("4XB"), "{msg}");
    }

    #[test]
    fn formats_sizes() {
        assert_eq!(format_size(512), "512 B");
        assert_eq!(format_size(4 << 30), "4.00 GiB");
        assert_eq!(format_size(1536 << 20), "1.50 GiB");
    }

    proptest! {
        #[test]
        fn never_panics(s in "\\PC{0,24}") {
            let _ = parse_size(&s);
        }

        #[test]
        fn round_trips_integral_units(n in 0u64..(1 << 20), unit in 0usize..4) {
            let (suffix, mult) = [("", 1u64), ("KiB", 1 << 10), ("MiB", 1 << 20), ("GiB", 1 << 30)][unit];
            prop_assert_eq!(parse_size(&format!("{n}{suffix}")), Ok(n * mult));
        }

        #[test]
        fn fractions_are_monotonic(a in 0u32..1000, b in 0u32..1000) {
            let x = parse_size(&format!("1.{a:03}GiB")).unwrap();
            let y = parse_size(&format!("1.{b:03}GiB")).unwrap();
            prop_assert_eq!(a.cmp(&b), x.cmp(&y));
        }
    }
}
