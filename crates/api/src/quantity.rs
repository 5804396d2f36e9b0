//! Just enough of `resource.Quantity`: `500m`, `1.5Gi`, `2e3` as a float to compare, and as
//! upstream's exact integer `Value`/`MilliValue` for resource arithmetic.

/// The value of a quantity string, or `None` when it is not one.
pub fn parse(s: &str) -> Option<f64> {
    let s = s.trim();
    let number_end = s
        .find(|c: char| !(c.is_ascii_digit() || matches!(c, '.' | '+' | '-')))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(number_end);
    let number: f64 = number.parse().ok()?;
    let scale = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024f64,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        exponent => 10f64.powi(exponent.strip_prefix(['e', 'E'])?.parse().ok()?),
    };
    Some(number * scale)
}

/// A quantity's value rounded up to an integer, in thousandths when `milli` (upstream's
/// `MilliValue`/`Value`); `None` when `text` is not a quantity.
pub fn parse_int(text: &str, milli: bool) -> Option<i64> {
    let text = text.trim();
    let (sign, unsigned) = match text.as_bytes().first()? {
        b'-' => (-1i128, &text[1..]),
        b'+' => (1, &text[1..]),
        _ => (1, text),
    };
    let number_end = unsigned
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(unsigned.len());
    let (number, suffix) = unsigned.split_at(number_end);
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && fraction.is_empty() {
        return None;
    }
    let digits = format!("{whole}{fraction}");
    let mut mantissa: i128 = digits.trim_start_matches('0').parse().unwrap_or(0);
    if digits.len() > 30 {
        return None;
    }
    let mut exponent = -(fraction.len() as i32) + if milli { 3 } else { 0 };
    match suffix {
        "" => {}
        "n" => exponent -= 9,
        "u" => exponent -= 6,
        "m" => exponent -= 3,
        "k" => exponent += 3,
        "M" => exponent += 6,
        "G" => exponent += 9,
        "T" => exponent += 12,
        "P" => exponent += 15,
        "E" => exponent += 18,
        "Ki" | "Mi" | "Gi" | "Ti" | "Pi" | "Ei" => {
            let power = ["Ki", "Mi", "Gi", "Ti", "Pi", "Ei"]
                .iter()
                .position(|s| *s == suffix)? as u32
                + 1;
            mantissa = mantissa.checked_mul(1024i128.checked_pow(power)?)?;
        }
        other => exponent += other.strip_prefix(['e', 'E'])?.parse::<i32>().ok()?,
    }
    let value = if exponent >= 0 {
        mantissa.checked_mul(10i128.checked_pow(exponent as u32)?)?
    } else {
        let divisor = 10i128
            .checked_pow(exponent.unsigned_abs())
            .unwrap_or(i128::MAX);
        // Round up, as upstream's Value and MilliValue do.
        (mantissa + divisor - 1) / divisor
    };
    Some((sign * value).clamp(i64::MIN as i128, i64::MAX as i128) as i64)
}

#[cfg(test)]
mod tests {
    use super::{parse, parse_int};

    #[test]
    fn parses_suffixes() {
        assert_eq!(parse("500m"), Some(0.5));
        assert_eq!(parse("1Gi"), Some(1073741824.0));
        assert_eq!(parse("2e3"), Some(2000.0));
        assert_eq!(parse("-1"), Some(-1.0));
        assert_eq!(parse("abc"), None);
        assert!(parse("128Mi") < parse("1Gi"));
    }

    #[test]
    fn quantities() {
        let cases = [
            ("100m", true, Some(100)),
            ("1", true, Some(1000)),
            ("1.5", true, Some(1500)),
            ("0.0001", true, Some(1)),
            ("1Gi", false, Some(1 << 30)),
            ("128Mi", false, Some(128 << 20)),
            ("1k", false, Some(1000)),
            ("2e3", false, Some(2000)),
            ("500m", false, Some(1)),
            ("1.5Ki", false, Some(1536)),
            ("abc", false, None),
            ("", false, None),
        ];
        for (text, milli, want) in cases {
            assert_eq!(parse_int(text, milli), want, "{text} milli={milli}");
        }
    }
}
