//! RFC 3339 timestamps written without `core::fmt`: byte for byte what chrono's serde
//! writes (`2026-12-03T20:13:01.123456Z`, the fraction in 0, 3, 6 or 9 digits as needed),
//! at a fraction of the cost. A page of 50 contacts carries 100 of them, and chrono's
//! formatting machinery was 6 % of the server's CPU for a list.

use chrono::{DateTime, Datelike, Timelike, Utc};
use serde::Serializer;

/// For `#[serde(serialize_with = "timestamp::serialize")]`.
///
/// # Errors
/// Only the serializer's own.
pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    let mut buf = [0u8; 30];
    match write(t, &mut buf) {
        // Only ASCII digits and separators are written.
        Some(len) => s.serialize_str(std::str::from_utf8(&buf[..len]).unwrap_or_default()),
        // Years outside 0..=9999 and leap seconds: chrono's own (rare) way.
        None => serde::Serialize::serialize(t, s),
    }
}

/// Writes into a fixed buffer; `None` leaves the odd cases to chrono.
fn write(t: &DateTime<Utc>, buf: &mut [u8; 30]) -> Option<usize> {
    // Each accessor of a `DateTime` converts it again; convert once.
    let (date, time) = (t.date_naive(), t.time());
    let year = u32::try_from(date.year()).ok().filter(|y| *y <= 9999)?;
    let nanos = time.nanosecond();
    if nanos >= 1_000_000_000 {
        return None;
    }
    let (fraction, width) = if nanos == 0 {
        (0, 0)
    } else if nanos % 1_000_000 == 0 {
        (nanos / 1_000_000, 3)
    } else if nanos % 1_000 == 0 {
        (nanos / 1_000, 6)
    } else {
        (nanos, 9)
    };
    let mut out = Cursor { buf, at: 0 };
    out.digits(year, 4);
    for (sep, value) in [
        (b'-', date.month()),
        (b'-', date.day()),
        (b'T', time.hour()),
        (b':', time.minute()),
        (b':', time.second()),
    ] {
        out.byte(sep);
        out.digits(value, 2);
    }
    if width > 0 {
        out.byte(b'.');
        out.digits(fraction, width);
    }
    out.byte(b'Z');
    Some(out.at)
}

struct Cursor<'a> {
    buf: &'a mut [u8; 30],
    at: usize,
}

impl Cursor<'_> {
    fn byte(&mut self, b: u8) {
        self.buf[self.at] = b;
        self.at += 1;
    }

    /// `value` in exactly `width` digits, zero-padded.
    fn digits(&mut self, mut value: u32, width: usize) {
        for slot in self.buf[self.at..self.at + width].iter_mut().rev() {
            *slot = b'0' + u8::try_from(value % 10).unwrap_or(0);
            value /= 10;
        }
        self.at += width;
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[derive(serde::Serialize)]
    struct Ours(#[serde(serialize_with = "serialize")] DateTime<Utc>);

    #[test]
    fn writes_exactly_what_chrono_writes() {
        let mut cases = vec![
            Utc.with_ymd_and_hms(2026, 12, 3, 20, 13, 1).unwrap(),
            Utc.with_ymd_and_hms(1, 1, 1, 0, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(9999, 12, 31, 23, 59, 59).unwrap(),
            Utc.with_ymd_and_hms(10_000, 1, 1, 0, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(-1, 6, 15, 12, 0, 0).unwrap(),
        ];
        // Whole seconds, milliseconds, microseconds (what PostgreSQL stores), nanoseconds.
        let base = Utc.with_ymd_and_hms(2024, 2, 29, 9, 5, 7).unwrap();
        for nanos in [
            0,
            1,
            999,
            1_000,
            120_000,
            123_456_000,
            5_000_000,
            999_999_999,
        ] {
            cases.push(base + chrono::Duration::nanoseconds(nanos));
        }
        // A spread of instants over three centuries, with microseconds.
        let mut seed: i64 = 0x5eed;
        for _ in 0..2_000 {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            let micros = (seed >> 11).rem_euclid(10_000_000_000_000_000) - 2_000_000_000_000_000;
            cases.push(DateTime::from_timestamp_micros(micros).unwrap());
        }
        for t in cases {
            assert_eq!(
                serde_json::to_string(&Ours(t)).unwrap(),
                serde_json::to_string(&t).unwrap(),
                "{t:?}"
            );
        }
    }
}
