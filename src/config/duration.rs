//! Durations as operators write them: `"30s"`, `"8h"`, `"1h 30m"` (humantime) or
//! ISO-8601 `"PT8H"`, `"P14D"`, `"P1DT12H"` as in Apereo's properties.

use std::time::Duration;

/// A duration that could not be read; its message quotes the text and shows the forms
/// that work.
#[derive(Debug, thiserror::Error)]
#[error("`{text}` is not a duration ({cause}); write e.g. \"30s\", \"8h\", \"PT8H\" or \"P14D\"")]
pub struct DurationError {
    text: String,
    #[source]
    cause: Cause,
}

/// Why the text is not a duration, in the notation it started with.
#[derive(Debug, thiserror::Error)]
enum Cause {
    #[error(transparent)]
    Humantime(#[from] humantime::DurationError),
    #[error("{0}")]
    Iso8601(&'static str),
    #[error("unit `{0}` is not supported")]
    IsoUnit(char),
    #[error("missing number before `{0}`")]
    IsoNumber(char),
    #[error("number `{0}` has no unit")]
    IsoNoUnit(String),
}

pub fn parse(text: &str) -> Result<Duration, DurationError> {
    let text = text.trim();
    let parsed = if text.starts_with(['P', 'p']) {
        parse_iso8601(text)
    } else {
        humantime::parse_duration(text).map_err(Cause::from)
    };
    parsed.map_err(|cause| DurationError {
        text: text.to_owned(),
        cause,
    })
}

/// `PnW`, or `P[nD][T[nH][nM][n[.f]S]]`; years and months are refused (their length varies).
fn parse_iso8601(text: &str) -> Result<Duration, Cause> {
    let upper = text.to_ascii_uppercase();
    let body = &upper[1..];
    if body.is_empty() || body == "T" {
        return Err(Cause::Iso8601("empty ISO-8601 duration"));
    }
    let (date, time) = match body.split_once('T') {
        Some((d, t)) if !t.is_empty() => (d, Some(t)),
        Some(_) => return Err(Cause::Iso8601("nothing after `T`")),
        None => (body, None),
    };
    let mut total = 0f64;
    for (part, units) in [(date, "WD"), (time.unwrap_or(""), "HMS")] {
        let mut number = String::new();
        for c in part.chars() {
            if c.is_ascii_digit() || c == '.' {
                number.push(c);
                continue;
            }
            if !units.contains(c) {
                return Err(Cause::IsoUnit(c));
            }
            let value: f64 = number.parse().map_err(|_| Cause::IsoNumber(c))?;
            number.clear();
            total += value
                * match c {
                    'W' => 604_800.0,
                    'D' => 86_400.0,
                    'H' => 3_600.0,
                    'M' => 60.0,
                    _ => 1.0,
                };
        }
        if !number.is_empty() {
            return Err(Cause::IsoNoUnit(number));
        }
    }
    if !total.is_finite() || total > 1e12 {
        return Err(Cause::Iso8601("too long"));
    }
    Ok(Duration::from_secs_f64(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_both_notations() {
        assert_eq!(parse("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse("8h").unwrap(), Duration::from_secs(8 * 3600));
        assert_eq!(parse("1h 30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse("PT8H").unwrap(), Duration::from_secs(8 * 3600));
        assert_eq!(parse("P14D").unwrap(), Duration::from_secs(14 * 86400));
        assert_eq!(
            parse("P1DT2H3M4.5S").unwrap(),
            Duration::from_secs_f64(93784.5)
        );
        assert_eq!(parse("P2W").unwrap(), Duration::from_secs(14 * 86400));
    }

    #[test]
    fn refuses_nonsense_with_a_hint() {
        for bad in [
            "",
            "ten seconds",
            "P",
            "PT",
            "P1Y",
            "PT5",
            "P1M",
            "10 parsecs",
        ] {
            let e = parse(bad).unwrap_err().to_string();
            assert!(e.contains("\"PT8H\""), "{bad}: {e}");
        }
    }
}
