//! Just enough of `resource.Quantity` to compare quantities: `500m`, `1.5Gi`, `2e3`.

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

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn parses_suffixes() {
        assert_eq!(parse("500m"), Some(0.5));
        assert_eq!(parse("1Gi"), Some(1073741824.0));
        assert_eq!(parse("2e3"), Some(2000.0));
        assert_eq!(parse("-1"), Some(-1.0));
        assert_eq!(parse("abc"), None);
        assert!(parse("128Mi") < parse("1Gi"));
    }
}
