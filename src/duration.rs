//! Go's `time.ParseDuration` syntax (`1h`, `15m30s`, `1.5h`, `300ms`, `0`), which ESO's
//! `refreshInterval` uses. Negative durations are refused: an interval cannot be negative.

use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid duration {input:?}: {reason} (expected Go syntax such as \"1h\", \"15m30s\" or \"0\")"
)]
pub struct DurationError {
    pub input: String,
    pub reason: &'static str,
}

/// Parses a Go duration string.
pub fn parse(input: &str) -> Result<Duration, DurationError> {
    let fail = |reason| DurationError {
        input: input.to_owned(),
        reason,
    };
    let mut rest = input.strip_prefix('+').unwrap_or(input);
    if let Some(negative) = rest.strip_prefix('-') {
        return if !negative.is_empty() && negative.chars().all(|c| c == '0') {
            Ok(Duration::ZERO)
        } else {
            Err(fail("negative durations are not allowed"))
        };
    }
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(fail("empty"));
    }
    let mut total_nanos: f64 = 0.0;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| fail("missing unit"))?;
        let (number, tail) = rest.split_at(number_len);
        if number.is_empty() || number == "." {
            return Err(fail("missing number before unit"));
        }
        let value: f64 = number.parse().map_err(|_| fail("malformed number"))?;
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, next) = tail.split_at(unit_len);
        let nanos_per_unit = match unit {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return Err(fail("unknown unit")),
        };
        total_nanos += value * nanos_per_unit;
        rest = next;
    }
    if total_nanos > u64::MAX as f64 {
        return Err(fail("too large"));
    }
    Ok(Duration::from_nanos(total_nanos.round() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_durations() {
        assert_eq!(parse("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse("15m30s").unwrap(), Duration::from_secs(930));
        assert_eq!(parse("1.5h").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse("300ms").unwrap(), Duration::from_millis(300));
        assert_eq!(parse("2us").unwrap(), Duration::from_micros(2));
        assert_eq!(parse("0").unwrap(), Duration::ZERO);
        assert_eq!(parse("0s").unwrap(), Duration::ZERO);
        assert_eq!(parse("+10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse("1h0m0s").unwrap(), Duration::from_secs(3600));
    }

    #[test]
    fn refuses_malformed_durations() {
        for bad in ["", "1", "h", "1x", "1h-2m", "-1h", "abc", "1..5s", ".h"] {
            let err = parse(bad).unwrap_err();
            assert_eq!(err.input, bad);
            assert!(err.to_string().contains("invalid duration"), "{err}");
        }
    }
}
