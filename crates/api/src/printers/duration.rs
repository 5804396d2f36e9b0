//! Ages as upstream prints them: apimachinery's `duration.HumanDuration` and the printers'
//! `translateTimestampSince`.

use jiff::Timestamp;
use std::time::Duration;

/// Go's `duration.HumanDuration`: two or three significant figures, e.g. `45s`, `119s`, `2m30s`,
/// `15m`, `179m`, `3h20m`, `30h`, `3d4h`, `400d`, `2y10d`, `9y`.
pub fn human_duration(d: Duration) -> String {
    let seconds = d.as_secs();
    if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        return match seconds % 60 {
            0 => format!("{minutes}m"),
            s => format!("{minutes}m{s}s"),
        };
    }
    if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = minutes / 60;
    if hours < 8 {
        return match minutes % 60 {
            0 => format!("{hours}h"),
            m => format!("{hours}h{m}m"),
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    let days = hours / 24;
    if hours < 24 * 8 {
        return match hours % 24 {
            0 => format!("{days}d"),
            h => format!("{days}d{h}h"),
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{days}d");
    }
    let years = days / 365;
    if hours < 24 * 365 * 8 {
        return match days % 365 {
            0 => format!("{years}y"),
            dy => format!("{years}y{dy}d"),
        };
    }
    format!("{years}y")
}

/// `HumanDuration` of a signed span in nanoseconds. Upstream tolerates clock skew: a span
/// down to (but excluding) two seconds in the future reads `0s`, anything further is
/// `<invalid>`.
fn human_signed_duration(nanos: i128) -> String {
    // Go truncates toward zero: int(d.Seconds()).
    let whole_seconds = nanos / 1_000_000_000;
    if whole_seconds < -1 {
        "<invalid>".to_string()
    } else if nanos < 0 {
        "0s".to_string()
    } else {
        // Non-negative and at most ~5e21 years: fits a Duration.
        let nanos = u128::try_from(nanos).unwrap_or_default();
        human_duration(Duration::new(
            (nanos / 1_000_000_000) as u64,
            (nanos % 1_000_000_000) as u32,
        ))
    }
}

/// Upstream's `translateTimestampSince`: the age of `timestamp` at `now`, or `<unknown>` when
/// there is no timestamp.
pub(super) fn since(timestamp: Option<Timestamp>, now: Timestamp) -> String {
    match timestamp {
        None => "<unknown>".to_string(),
        Some(t) => human_signed_duration(now.as_nanosecond() - t.as_nanosecond()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: i128 = 1_000_000_000;
    const MILLI: i128 = 1_000_000;
    const MINUTE: i128 = 60 * SECOND;
    const HOUR: i128 = 60 * MINUTE;
    const DAY: i128 = 24 * HOUR;
    const YEAR: i128 = 365 * DAY;

    /// Upstream's `TestHumanDuration` and `TestHumanDurationBoundaries`.
    #[test]
    fn upstream_cases() {
        let cases: &[(i128, &str)] = &[
            (SECOND, "1s"),
            (70 * SECOND, "70s"),
            (190 * SECOND, "3m10s"),
            (70 * MINUTE, "70m"),
            (47 * HOUR, "47h"),
            (49 * HOUR, "2d1h"),
            ((8 * 24 + 2) * HOUR, "8d"),
            (367 * DAY, "367d"),
            ((365 * 2 * 24 + 25) * HOUR, "2y1d"),
            ((365 * 8 * 24 + 2) * HOUR, "8y"),
            (-2 * SECOND, "<invalid>"),
            (-2 * SECOND + 1, "0s"),
            (0, "0s"),
            (SECOND - MILLI, "0s"),
            (2 * MINUTE - MILLI, "119s"),
            (2 * MINUTE, "2m"),
            (2 * MINUTE + SECOND, "2m1s"),
            (10 * MINUTE - MILLI, "9m59s"),
            (10 * MINUTE, "10m"),
            (10 * MINUTE + SECOND, "10m"),
            (3 * HOUR - MILLI, "179m"),
            (3 * HOUR, "3h"),
            (3 * HOUR + MINUTE, "3h1m"),
            (8 * HOUR - MILLI, "7h59m"),
            (8 * HOUR, "8h"),
            (8 * HOUR + 59 * MINUTE, "8h"),
            (2 * DAY - MILLI, "47h"),
            (2 * DAY, "2d"),
            (2 * DAY + HOUR, "2d1h"),
            (8 * DAY - MILLI, "7d23h"),
            (8 * DAY, "8d"),
            (8 * DAY + 23 * HOUR, "8d"),
            (2 * YEAR - MILLI, "729d"),
            (2 * YEAR, "2y"),
            (2 * YEAR + 23 * HOUR, "2y"),
            (2 * YEAR + 23 * HOUR + 59 * MINUTE, "2y"),
            (2 * YEAR + DAY - MILLI, "2y"),
            (2 * YEAR + DAY, "2y1d"),
            (3 * YEAR, "3y"),
            (7 * YEAR, "7y"),
            (8 * YEAR - MILLI, "7y364d"),
            (8 * YEAR, "8y"),
            (8 * YEAR + 364 * DAY, "8y"),
            (9 * YEAR, "9y"),
        ];
        for &(nanos, want) in cases {
            assert_eq!(human_signed_duration(nanos), want, "{nanos}ns");
        }
    }

    #[test]
    fn public_duration_form() {
        assert_eq!(human_duration(Duration::from_secs(45)), "45s");
        assert_eq!(human_duration(Duration::from_secs(150)), "2m30s");
        assert_eq!(
            human_duration(Duration::from_secs(3 * 3600 + 20 * 60)),
            "3h20m"
        );
        assert_eq!(human_duration(Duration::from_secs(30 * 3600)), "30h");
        assert_eq!(
            human_duration(Duration::from_secs((3 * 24 + 4) * 3600)),
            "3d4h"
        );
        assert_eq!(human_duration(Duration::from_secs(400 * 86400)), "400d");
        assert_eq!(
            human_duration(Duration::from_secs((2 * 365 + 10) * 86400)),
            "2y10d"
        );
    }

    #[test]
    fn since_a_timestamp() {
        let now: Timestamp = "2024-05-01T12:00:00Z".parse().unwrap();
        assert_eq!(since(None, now), "<unknown>");
        assert_eq!(
            since(Some("2024-05-01T11:55:00Z".parse().unwrap()), now),
            "5m"
        );
        assert_eq!(
            since(Some("2024-05-01T12:00:01Z".parse().unwrap()), now),
            "0s"
        );
        assert_eq!(
            since(Some("2024-05-01T12:00:02Z".parse().unwrap()), now),
            "<invalid>"
        );
    }
}
