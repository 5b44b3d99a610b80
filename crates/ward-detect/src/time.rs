//! Timestamps of series files: calendar times in UTC, RFC 3339, or seconds since the epoch.

/// Seconds since the epoch of `text`: `YYYY-MM-DD HH:MM[:SS[.f]]`, the same with `T` and a
/// `Z` or `±HH:MM` offset (RFC 3339), a bare date, or a number of seconds (a number past
/// 10^11 is taken as milliseconds).
pub fn parse(text: &str) -> Option<f64> {
    let text = text.trim();
    if let Ok(seconds) = text.parse::<f64>() {
        if !seconds.is_finite() {
            return None;
        }
        return Some(if seconds.abs() >= 1e11 {
            seconds / 1000.0
        } else {
            seconds
        });
    }
    let (date, clock) = match text.find(['T', 't', ' ']) {
        Some(at) => (&text[..at], &text[at + 1..]),
        None => (text, ""),
    };
    let mut parts = date.splitn(3, '-');
    let year: i64 = parts.next()?.parse().ok()?;
    let month: i64 = parts.next()?.parse().ok()?;
    let day: i64 = parts.next()?.parse().ok()?;
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    let (clock, offset) = split_offset(clock)?;
    let mut seconds = 0.0;
    if !clock.is_empty() {
        let mut fields = clock.splitn(3, ':');
        let hours: f64 = fields.next()?.parse().ok()?;
        let minutes: f64 = fields.next()?.parse().ok()?;
        let secs: f64 = fields.next().map_or(Some(0.0), |s| s.parse().ok())?;
        if !(0.0..24.0).contains(&hours)
            || !(0.0..60.0).contains(&minutes)
            || !(0.0..61.0).contains(&secs)
        {
            return None;
        }
        seconds = hours * 3600.0 + minutes * 60.0 + secs;
    }
    Some(days_from_civil(year, month, day) as f64 * 86_400.0 + seconds - offset)
}

/// The clock and its offset from UTC in seconds.
fn split_offset(clock: &str) -> Option<(&str, f64)> {
    if let Some(clock) = clock.strip_suffix(['Z', 'z']) {
        return Some((clock, 0.0));
    }
    match clock.rfind(['+', '-']) {
        Some(at) if at > 0 => {
            let (clock, offset) = clock.split_at(at);
            let sign = if offset.starts_with('-') { -1.0 } else { 1.0 };
            let (hours, minutes) = offset[1..].split_once(':').unwrap_or((&offset[1..], "0"));
            let hours: f64 = hours.parse().ok()?;
            let minutes: f64 = minutes.parse().ok()?;
            Some((clock, sign * (hours * 3600.0 + minutes * 60.0)))
        }
        _ => Some((clock, 0.0)),
    }
}

/// `YYYY-MM-DD HH:MM:SS` in UTC of `seconds` since the epoch.
pub fn format(seconds: f64) -> String {
    let whole = seconds.round() as i64;
    let (days, clock) = (whole.div_euclid(86_400), whole.rem_euclid(86_400));
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        clock / 3600,
        clock / 60 % 60,
        clock % 60
    )
}

/// The date of a day number (days since 1970-01-01), Howard Hinnant's algorithm.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    (year_of_era + era * 400 + i64::from(month <= 2), month, day)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_index = if month > 2 { month - 3 } else { month + 9 };
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn forms() {
        assert_eq!(parse("1970-01-01 00:00:00"), Some(0.0));
        assert_eq!(parse("2014-07-01 00:30:00"), Some(1_404_174_600.0));
        assert_eq!(parse("2014-07-01T00:30:00Z"), Some(1_404_174_600.0));
        assert_eq!(parse("2014-07-01T02:30:00+02:00"), Some(1_404_174_600.0));
        assert_eq!(parse("2014-07-01 00:30:00.500000"), Some(1_404_174_600.5));
        assert_eq!(parse("2014-07-01"), Some(1_404_172_800.0));
        assert_eq!(parse("1404174600"), Some(1_404_174_600.0));
        assert_eq!(parse("1404174600000"), Some(1_404_174_600.0));
        assert_eq!(parse("2000-02-29 12:00"), Some(951_825_600.0));
        for text in [
            "1970-01-01 00:00:00",
            "2000-02-29 12:00:00",
            "2014-07-01 00:30:00",
            "1969-12-31 23:59:59",
        ] {
            assert_eq!(super::format(parse(text).unwrap()), text);
        }
        for bad in [
            "",
            "yesterday",
            "2014-13-01",
            "2014-07-01 25:00:00",
            "nan",
            "2014-07",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }
}
