//! Kubernetes resource quantities (`6000`, `6k`, `1.5k`, `6e3`, `2048Mi`, `500m`) as the API
//! server parses and stores them: the exact value, whether it is a whole number, and the
//! canonical text the API server writes back.
//!
//! The grammar is apimachinery's:
//!
//! ```text
//! quantity  ::= sign? digits? ('.' digits?)? suffix
//! suffix    ::= '' | 'n' | 'u' | 'm' | 'k' | 'M' | 'G' | 'T' | 'P' | 'E'     (decimal SI)
//!             | 'Ki' | 'Mi' | 'Gi' | 'Ti' | 'Pi' | 'Ei'                    (binary SI)
//!             | ('e' | 'E') sign? digits                                   (decimal exponent)
//! ```
//!
//! Values are rounded up (away from zero) to a whole number of nano-units, as the API server
//! does. Values whose digits do not fit 128 bits are refused here (the API server would keep
//! them); no resource count comes near that.

use std::fmt;
use thiserror::Error;

/// How a quantity was written, which decides how it is written back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Plain numbers and the decimal suffixes (`n`, `u`, `m`, `k`, `M`, `G`, `T`, `P`, `E`).
    DecimalSi,
    /// Powers of 1024 (`Ki` … `Ei`).
    BinarySi,
    /// `e` / `E` followed by a decimal exponent.
    DecimalExponent,
}

/// A parsed quantity: `unscaled × 10^scale`, with `scale ≥ -9`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quantity {
    unscaled: i128,
    scale: i32,
    /// The suffix family the text used.
    pub format: Format,
}

/// Text that is not a quantity.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum QuantityError {
    /// Not of the quantity grammar.
    #[error("not a Kubernetes quantity (expected digits with an optional suffix such as 500m, 6k, 8Gi or 6e3)")]
    Format,
    /// The suffix is none of the known ones.
    #[error("unknown suffix {0:?} (known: n u m k M G T P E, Ki Mi Gi Ti Pi Ei, e<exponent>)")]
    Suffix(String),
    /// Too many digits or too large an exponent to hold exactly.
    #[error("too large")]
    TooLarge,
}

const DECIMAL_SUFFIXES: [(&str, i32); 10] = [
    ("n", -9),
    ("u", -6),
    ("m", -3),
    ("", 0),
    ("k", 3),
    ("M", 6),
    ("G", 9),
    ("T", 12),
    ("P", 15),
    ("E", 18),
];
const BINARY_SUFFIXES: [(&str, u32); 6] = [
    ("Ki", 10),
    ("Mi", 20),
    ("Gi", 30),
    ("Ti", 40),
    ("Pi", 50),
    ("Ei", 60),
];
/// The finest unit the API server keeps: 10^-9.
const NANO: i32 = -9;
/// The largest quantity the API server keeps in binary form (`i64::MAX`).
const MAX_BINARY: i128 = i64::MAX as i128;

/// The text split as apimachinery's `parseQuantityString` splits it.
struct Parts<'a> {
    negative: bool,
    /// Digits before the point, leading zeros removed (may be empty).
    num: &'a str,
    /// Digits after the point (may be empty).
    denom: &'a str,
    suffix: &'a str,
}

fn split(s: &str) -> Result<Parts<'_>, QuantityError> {
    let b = s.as_bytes();
    if b.is_empty() {
        return Err(QuantityError::Format);
    }
    let mut pos = 0;
    let negative = b[0] == b'-';
    if b[0] == b'-' || b[0] == b'+' {
        pos = 1;
    }
    while pos < b.len() && b[pos] == b'0' {
        pos += 1;
    }
    let start = pos;
    while pos < b.len() && b[pos].is_ascii_digit() {
        pos += 1;
    }
    let num = &s[start..pos];
    let mut denom = "";
    if pos < b.len() && b[pos] == b'.' {
        pos += 1;
        let d = pos;
        while pos < b.len() && b[pos].is_ascii_digit() {
            pos += 1;
        }
        denom = &s[d..pos];
    }
    let suffix_start = pos;
    while pos < b.len() && b"eEinumkKMGTP".contains(&b[pos]) {
        pos += 1;
    }
    if pos < b.len() && (b[pos] == b'-' || b[pos] == b'+') {
        pos += 1;
    }
    while pos < b.len() && b[pos].is_ascii_digit() {
        pos += 1;
    }
    if pos != b.len() {
        return Err(QuantityError::Format);
    }
    Ok(Parts {
        negative,
        num,
        denom,
        suffix: &s[suffix_start..],
    })
}

/// The suffix's base-10 exponent or base-2 exponent.
enum Suffix {
    Decimal(i32, Format),
    Binary(u32),
}

fn interpret(suffix: &str) -> Result<Suffix, QuantityError> {
    if let Some(&(_, e)) = DECIMAL_SUFFIXES.iter().find(|(s, _)| *s == suffix) {
        return Ok(Suffix::Decimal(e, Format::DecimalSi));
    }
    if let Some(&(_, e)) = BINARY_SUFFIXES.iter().find(|(s, _)| *s == suffix) {
        return Ok(Suffix::Binary(e));
    }
    let bad = || QuantityError::Suffix(suffix.to_string());
    match suffix.as_bytes().first() {
        Some(b'e' | b'E') if suffix.len() > 1 => {
            let e: i64 = suffix[1..].parse().map_err(|_| bad())?;
            // Beyond this no digit string of ours can be held exactly (or it is below nano).
            let e = i32::try_from(e.clamp(-1000, 1000)).map_err(|_| bad())?;
            Ok(Suffix::Decimal(e, Format::DecimalExponent))
        }
        _ => Err(bad()),
    }
}

/// `digits` (ASCII digits) as a number, `None` past 128 bits.
fn digits_value(digits: &str) -> Option<i128> {
    digits.bytes().try_fold(0i128, |acc, d| {
        acc.checked_mul(10)?.checked_add(i128::from(d - b'0'))
    })
}

fn pow10(n: u32) -> Option<i128> {
    10i128.checked_pow(n)
}

impl Quantity {
    /// Parses `text` as the API server does.
    pub fn parse(text: &str) -> Result<Quantity, QuantityError> {
        let p = split(text)?;
        let suffix = interpret(p.suffix)?;
        // All the digits, and where the decimal point sits among them.
        let digits = format!("{}{}", p.num, p.denom);
        let digits = digits.trim_start_matches('0');
        let point = p.denom.len() as i32;
        let (mut unscaled, mut scale, format) = match suffix {
            Suffix::Decimal(exponent, format) => {
                let scale = exponent - point;
                // Digits below nano only matter as "round up": drop them first.
                let (kept, dropped) = if scale < NANO {
                    let drop = (NANO - scale) as usize;
                    let keep = digits.len().saturating_sub(drop);
                    (&digits[..keep], &digits[keep..])
                } else {
                    (digits, "")
                };
                let mut v = digits_value(kept).ok_or(QuantityError::TooLarge)?;
                if dropped.bytes().any(|d| d != b'0') {
                    v = v.checked_add(1).ok_or(QuantityError::TooLarge)?;
                }
                (v, scale.max(NANO), format)
            }
            Suffix::Binary(shift) => {
                let v = digits_value(digits).ok_or(QuantityError::TooLarge)?;
                let v = v
                    .checked_mul(1i128 << shift)
                    .ok_or(QuantityError::TooLarge)?;
                let (v, scale) = round_up_to_nano(v, -point);
                // The API server caps binary quantities at i64::MAX.
                let cap = pow10((-scale) as u32)
                    .and_then(|d| MAX_BINARY.checked_mul(d))
                    .unwrap_or(i128::MAX);
                if v > cap {
                    (MAX_BINARY, 0, Format::BinarySi)
                } else {
                    (v, scale, Format::BinarySi)
                }
            }
        };
        if unscaled == 0 {
            scale = 0;
        }
        // Keep the representation small: trailing zeros move into the scale.
        while unscaled != 0 && unscaled % 10 == 0 && scale < 0 {
            unscaled /= 10;
            scale += 1;
        }
        if p.negative {
            unscaled = -unscaled;
        }
        Ok(Quantity {
            unscaled,
            scale,
            format,
        })
    }

    /// The value as a whole number, `None` when it has a fraction or does not fit an `i128`.
    pub fn whole(&self) -> Option<i128> {
        if self.scale >= 0 {
            self.unscaled.checked_mul(pow10(self.scale as u32)?)
        } else {
            let d = pow10((-self.scale) as u32)?;
            (self.unscaled % d == 0).then_some(self.unscaled / d)
        }
    }

    /// Whether the value is negative.
    pub fn is_negative(&self) -> bool {
        self.unscaled < 0
    }

    /// The value in decimal notation without suffix (`1500`, `0.5`, `-2`), for messages.
    pub fn plain(&self) -> String {
        let sign = if self.unscaled < 0 { "-" } else { "" };
        let digits = self.unscaled.unsigned_abs().to_string();
        if self.scale >= 0 {
            return format!("{sign}{digits}{}", "0".repeat(self.scale as usize));
        }
        let frac = (-self.scale) as usize;
        let padded = format!("{digits:0>width$}", width = frac + 1);
        let (int, rest) = padded.split_at(padded.len() - frac);
        format!("{sign}{int}.{rest}")
    }

    /// The text the API server writes back for this value (apimachinery's canonical form:
    /// decimal mantissa with an exponent that is a multiple of three, or powers of 1024 for
    /// whole binary values of 1024 and more).
    pub fn canonical(&self) -> String {
        if self.unscaled == 0 {
            return "0".into();
        }
        let sign = if self.unscaled < 0 { "-" } else { "" };
        if self.format == Format::BinarySi {
            if let Some(whole) = self.whole().filter(|w| w.unsigned_abs() >= 1024) {
                let mut amount = whole.unsigned_abs();
                let mut exponent = 0;
                while amount % 1024 == 0 && exponent < BINARY_SUFFIXES.len() {
                    amount /= 1024;
                    exponent += 1;
                }
                let suffix = match exponent {
                    0 => "",
                    e => BINARY_SUFFIXES[e - 1].0,
                };
                return format!("{sign}{amount}{suffix}");
            }
        }
        let (mut amount, mut exponent) = (self.unscaled.unsigned_abs(), self.scale);
        while amount % 10 == 0 {
            amount /= 10;
            exponent += 1;
        }
        while exponent.rem_euclid(3) != 0 {
            let Some(a) = amount.checked_mul(10) else {
                return self.plain();
            };
            amount = a;
            exponent -= 1;
        }
        let suffix = match self.format {
            Format::DecimalExponent if exponent == 0 => String::new(),
            Format::DecimalExponent => format!("e{exponent}"),
            _ => match DECIMAL_SUFFIXES.iter().find(|(_, e)| *e == exponent) {
                Some((s, _)) => (*s).to_string(),
                None => format!("e{exponent}"),
            },
        };
        format!("{sign}{amount}{suffix}")
    }
}

/// `v × 10^scale` (`v ≥ 0`) rounded up to scale [`NANO`] when finer.
fn round_up_to_nano(v: i128, scale: i32) -> (i128, i32) {
    if scale >= NANO {
        return (v, scale);
    }
    let Some(d) = pow10((NANO - scale) as u32) else {
        return (i128::from(v != 0), NANO);
    };
    (v / d + i128::from(v % d != 0), NANO)
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.canonical())
    }
}

/// What the API server stores for `text`: the text itself when apimachinery keeps it (short,
/// already in a canonical shape), otherwise the canonical form; `Err` where it refuses the text.
pub fn stored_form(text: &str) -> Result<String, QuantityError> {
    let q = Quantity::parse(text)?;
    let p = split(text)?;
    // apimachinery writes an empty integer part as "0".
    let num = if p.num.is_empty() { "0" } else { p.num };
    let shifted = format!("{num}{}", p.denom);
    let kept = match interpret(p.suffix)? {
        Suffix::Decimal(exponent, _) => {
            let scale = exponent - p.denom.len() as i32;
            shifted.len() <= 18
                && scale >= NANO
                && shifted.parse::<i64>().is_ok()
                && scale % 3 == 0
                && !shifted.ends_with("000")
                && !shifted.starts_with('0')
        }
        Suffix::Binary(exponent) => {
            let precision = 15 - num.len() as i32 - (exponent as f32 * 3.0 / 10.0) as i32 - 1;
            p.denom.is_empty()
                && precision >= 0
                && shifted
                    .parse::<i64>()
                    .ok()
                    .and_then(|v| v.checked_mul(1 << exponent))
                    .is_some()
                && shifted.parse::<i64>().is_ok_and(|v| v & 7 != 0)
        }
    };
    Ok(if kept {
        text.to_string()
    } else {
        q.canonical()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::strategy::Strategy;

    fn q(s: &str) -> Quantity {
        Quantity::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn values_of_every_suffix_family() {
        for (text, whole) in [
            ("6000", 6000),
            ("6k", 6000),
            ("1.5k", 1500),
            ("6e3", 6000),
            ("6E3", 6000),
            ("+6", 6),
            ("0006", 6),
            ("2048Mi", 2048 << 20),
            ("1.5Gi", 1536 << 20),
            ("8E", 8_000_000_000_000_000_000),
            ("1000m", 1),
            ("1.", 1),
            (".5k", 500),
            ("0", 0),
            ("-2", -2),
            ("60e-1", 6),
        ] {
            assert_eq!(q(text).whole(), Some(whole), "{text}");
        }
        for text in ["0.5", "500m", "1n", "1.5", "1.0000000001k"] {
            assert_eq!(q(text).whole(), None, "{text}");
        }
    }

    #[test]
    fn malformed_text_is_refused() {
        for text in [
            "", "six", "6 ", " 6", "6K", "6kb", "1..5", "6e", "6Mii", "0x10", "6e3.5",
        ] {
            assert!(Quantity::parse(text).is_err(), "{text:?} was accepted");
        }
        assert!(matches!(
            Quantity::parse("6K"),
            Err(QuantityError::Suffix(s)) if s == "K"
        ));
        assert_eq!(
            Quantity::parse(&"9".repeat(60)),
            Err(QuantityError::TooLarge)
        );
    }

    #[test]
    fn fractions_below_nano_round_up() {
        assert_eq!(q("0.0000000001").canonical(), "1n");
        assert_eq!(q("1e-20").canonical(), "1e-9");
        assert_eq!(q("-0.0000000001").canonical(), "-1n");
    }

    #[test]
    fn canonical_forms_match_the_api_server() {
        for (text, stored) in [
            ("6000", "6k"),
            ("8000", "8k"),
            ("1500", "1500"),
            ("1.5k", "1500"),
            ("6e3", "6e3"),
            ("10e2", "1e3"),
            ("0.5", "500m"),
            ("1024Mi", "1Gi"),
            ("2048Mi", "2Gi"),
            ("1536Mi", "1536Mi"),
            ("0.5Gi", "512Mi"),
            ("0.5Ki", "512"),
            ("1.5Ki", "1536"),
            ("1000000", "1M"),
            ("0", "0"),
            ("-1000", "-1k"),
        ] {
            assert_eq!(stored_form(text).unwrap(), stored, "{text}");
        }
        // Texts the API server keeps as they were written.
        for text in ["1536Mi", "+6", "06", "1e3", "3Ki", "6k", "1500"] {
            assert_eq!(stored_form(text).unwrap(), text);
        }
    }

    #[test]
    fn plain_writes_the_exact_value() {
        assert_eq!(q("1.5k").plain(), "1500");
        assert_eq!(q("500m").plain(), "0.5");
        assert_eq!(q("-25m").plain(), "-0.025");
        assert_eq!(q("6e3").plain(), "6000");
    }

    /// Every way of writing `v` the API server accepts (decimal and binary suffixes, fractions,
    /// exponents, signs, leading zeros).
    fn spellings(v: u64) -> Vec<String> {
        let mut out = vec![
            v.to_string(),
            format!("+{v}"),
            format!("00{v}"),
            format!("{v}."),
            format!("{v}.000"),
            format!("{v}e0"),
            format!("{v}000m"),
            format!("{v}000000u"),
            format!("{v}000000000n"),
            format!("{v}0e-1"),
            format!("{v}000E-3"),
        ];
        for &(suffix, exponent) in &DECIMAL_SUFFIXES[4..] {
            let unit = 10u128.pow(exponent as u32);
            let (int, frac) = (u128::from(v) / unit, u128::from(v) % unit);
            let frac = format!("{frac:0>width$}", width = exponent as usize);
            out.push(format!("{int}.{frac}{suffix}"));
            let trimmed = frac.trim_end_matches('0');
            if trimmed.is_empty() {
                out.push(format!("{int}{suffix}"));
                out.push(format!("{int}e{exponent}"));
                out.push(format!("{int}E+{exponent}"));
            } else {
                out.push(format!("{int}.{trimmed}{suffix}"));
            }
            if int == 0 {
                out.push(format!(".{frac}{suffix}"));
            }
        }
        for &(suffix, shift) in &BINARY_SUFFIXES {
            let unit = 1u128 << shift;
            let v = u128::from(v);
            if v % unit == 0 {
                out.push(format!("{}{suffix}", v / unit));
            } else if (2 * v) % unit == 0 {
                out.push(format!("{}.5{suffix}", v / unit));
            } else if (4 * v) % unit == 0 {
                out.push(format!(
                    "{}.{}{suffix}",
                    v / unit,
                    25 * ((4 * v / unit) % 4)
                ));
            }
        }
        out
    }

    proptest::proptest! {
        /// Whatever spelling the user chose, the text the API server stores reads back as the
        /// same whole value, also once stored again.
        #[test]
        fn every_spelling_of_a_whole_value_is_read_as_that_value(
            v in proptest::prop_oneof![
                0u64..=i64::MAX as u64,
                (0u64..100_000, 0u32..=12).prop_map(|(a, e)| a * 10u64.pow(e)),
                (0u64..100_000, 0u32..=4).prop_map(|(a, e)| a << (10 * e)),
                (0u64..10_000, 1u32..=4).prop_map(|(a, e)| (2 * a + 1) << (10 * e - 1)),
            ]
        ) {
            for text in spellings(v) {
                let q = Quantity::parse(&text).map_err(|e| format!("{text}: {e}")).unwrap();
                proptest::prop_assert_eq!(q.whole(), Some(i128::from(v)), "{}", text);
                let stored = stored_form(&text).unwrap();
                let back = Quantity::parse(&stored).unwrap();
                proptest::prop_assert_eq!(back.whole(), Some(i128::from(v)), "{} stored as {}", text, stored);
                // Stored again (an update, an apply), it keeps its value.
                let again = Quantity::parse(&stored_form(&stored).unwrap()).unwrap();
                proptest::prop_assert_eq!(again.whole(), Some(i128::from(v)), "{}", text);
            }
        }
    }
}
