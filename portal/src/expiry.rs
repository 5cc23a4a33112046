//! When the TLS certificate stops being valid, and whether to say so.
//!
//! The portal refuses nothing for an old certificate (an expired one still
//! encrypts, and clients decide what they accept); it warns, in its log and
//! to the game's admins in play, once the end is within
//! `portal.tls_expiry_warn_days`, so an operator whose renewal silently
//! stopped hears of it before players do. Only the certificate's notAfter
//! is read, by a small DER walk over the X.509 structure (RFC 5280 4.1):
//! Certificate → tbsCertificate → [version], serialNumber, signature,
//! issuer, validity → notBefore, notAfter.

const SEQUENCE: u8 = 0x30;
const VERSION: u8 = 0xa0;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;
const DAY: u64 = 86_400;

/// The certificate's notAfter in Unix seconds; None if `der` is not an
/// X.509 certificate this walk can read.
pub fn not_after(der: &[u8]) -> Option<i64> {
    let (tag, certificate, _) = tlv(der)?;
    if tag != SEQUENCE {
        return None;
    }
    let (tag, mut tbs, _) = tlv(certificate)?;
    if tag != SEQUENCE {
        return None;
    }
    if tbs.first() == Some(&VERSION) {
        tbs = tlv(tbs)?.2;
    }
    // serialNumber, signature, issuer.
    for _ in 0..3 {
        tbs = tlv(tbs)?.2;
    }
    let (tag, validity, _) = tlv(tbs)?;
    if tag != SEQUENCE {
        return None;
    }
    let (_, _, rest) = tlv(validity)?;
    let (tag, time, _) = tlv(rest)?;
    let text = std::str::from_utf8(time).ok()?;
    match tag {
        UTC_TIME => {
            // Two-digit years: 50 to 99 are 19xx (RFC 5280 4.1.2.5.1).
            let yy: i64 = number(text.get(0..2)?)?;
            let year = if yy >= 50 { 1900 + yy } else { 2000 + yy };
            seconds(year, text.get(2..)?)
        }
        GENERALIZED_TIME => seconds(number(text.get(0..4)?)?, text.get(4..)?),
        _ => None,
    }
}

/// What to warn of a certificate ending at `not_after` (Unix seconds), at
/// `now`, with `warn_days` of warning (0: never warn); None if nothing.
pub fn warning(not_after: i64, now: i64, warn_days: u64) -> Option<String> {
    if warn_days == 0 {
        return None;
    }
    let left = not_after.saturating_sub(now);
    let warn_within = i64::try_from(warn_days.saturating_mul(DAY)).unwrap_or(i64::MAX);
    if left > warn_within {
        return None;
    }
    let days = |s: i64| s.unsigned_abs() / DAY;
    Some(if left <= 0 {
        format!(
            "the TLS certificate expired {} day(s) ago: clients that check it refuse to connect; renew it (portal.tls_cert)",
            days(left)
        )
    } else {
        format!(
            "the TLS certificate expires in {} day(s): renew it (portal.tls_cert) before clients refuse it",
            days(left)
        )
    })
}

/// One DER element: its tag, its contents and what follows it.
fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let bytes = rest.get(..n)?;
        let len = bytes
            .iter()
            .fold(0usize, |len, &b| (len << 8) | usize::from(b));
        (len, &rest[n..])
    };
    let contents = rest.get(..len)?;
    Some((tag, contents, &rest[len..]))
}

fn number(digits: &str) -> Option<i64> {
    if digits.bytes().all(|b| b.is_ascii_digit()) {
        digits.parse().ok()
    } else {
        None
    }
}

/// Unix seconds of `year` and "MMDDHHMMSSZ".
fn seconds(year: i64, rest: &str) -> Option<i64> {
    let field = |at: usize| number(rest.get(at..at + 2)?);
    let (month, day) = (field(0)?, field(2)?);
    let (hour, minute, second) = (field(4)?, field(6)?, field(8)?);
    if rest.get(10..) != Some("Z") || !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    Some(days_from_civil(year, month, day) * DAY as i64 + hour * 3600 + minute * 60 + second)
}

/// Days since 1970-01-01 of a date in the proleptic Gregorian calendar:
/// years counted from March, so the leap day ends each 400-year era's year.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed certificate valid until `seconds` after the given day.
    pub(crate) fn der_ending(year: i32, month: u8, day: u8, seconds: u64) -> Vec<u8> {
        let mut params = rcgen::CertificateParams::new(vec!["ev.test".to_owned()]).unwrap();
        params.not_after =
            rcgen::date_time_ymd(year, month, day) + std::time::Duration::from_secs(seconds);
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn not_after_is_read_in_either_time_form() {
        // Before 2050 X.509 writes UTCTime, from 2050 GeneralizedTime.
        assert_eq!(not_after(&der_ending(2031, 5, 17, 0)), Some(1_936_742_400));
        assert_eq!(not_after(&der_ending(2049, 12, 31, 0)), Some(2_524_521_600));
        assert_eq!(not_after(&der_ending(2051, 2, 28, 0)), Some(2_561_155_200));
        assert_eq!(
            not_after(&der_ending(2000, 2, 29, 3_723)),
            Some(951_782_400 + 3_723),
            "a leap day, and a time of day"
        );
    }

    #[test]
    fn what_is_not_a_certificate_has_no_end_and_no_panic() {
        let der = der_ending(2031, 5, 17, 0);
        for len in 0..der.len() {
            let _ = not_after(&der[..len]);
        }
        assert_eq!(not_after(b""), None);
        assert_eq!(not_after(b"-----BEGIN CERTIFICATE-----"), None);
        assert_eq!(not_after(&[SEQUENCE, 0x85, 1, 1, 1, 1, 1]), None);
        assert_eq!(not_after(&[SEQUENCE, 0x82, 0xff, 0xff]), None);
    }

    #[test]
    fn a_warning_only_within_the_days_and_never_when_off() {
        let now = 1_900_000_000;
        assert_eq!(warning(now + 15 * DAY as i64, now, 14), None);
        let soon = warning(now + 3 * DAY as i64 + 5, now, 14).unwrap();
        assert!(soon.contains("expires in 3 day(s)"), "{soon}");
        let gone = warning(now - 2 * DAY as i64, now, 14).unwrap();
        assert!(gone.contains("expired 2 day(s) ago"), "{gone}");
        assert_eq!(
            warning(now - 2 * DAY as i64, now, 0),
            None,
            "0 turns it off"
        );
        assert!(warning(i64::MIN, now, u64::MAX).is_some());
    }
}
