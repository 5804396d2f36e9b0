//! Int-or-percent values scaled against a total (apimachinery's
//! `GetScaledValueFromIntOrPercent`), as rollout bounds are.

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// `value` as a number: an integer as it is, `"N%"` as N% of `total` rounded up or down as
/// asked; a malformed value (which validation rejects) is `None`.
pub fn scaled_value(value: &IntOrString, total: i32, round_up: bool) -> Option<i32> {
    match value {
        IntOrString::Int(n) => Some(*n),
        IntOrString::String(s) => {
            let percent: i64 = s.strip_suffix('%')?.parse().ok()?;
            let scaled = percent * i64::from(total);
            let value = if round_up {
                scaled.div_euclid(100) + i64::from(scaled.rem_euclid(100) != 0)
            } else {
                scaled.div_euclid(100)
            };
            i32::try_from(value).ok()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_round_as_asked() {
        let percent = |s: &str| IntOrString::String(s.into());
        assert_eq!(scaled_value(&IntOrString::Int(3), 10, true), Some(3));
        assert_eq!(scaled_value(&percent("25%"), 10, true), Some(3));
        assert_eq!(scaled_value(&percent("25%"), 10, false), Some(2));
        assert_eq!(scaled_value(&percent("10%"), 5000, true), Some(500));
        assert_eq!(scaled_value(&percent("1%"), 1, true), Some(1));
        assert_eq!(scaled_value(&percent("20Percent"), 10, true), None);
    }
}
