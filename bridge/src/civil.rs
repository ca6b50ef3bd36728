//! UTC calendar times and seconds since the epoch, both ways, without a date crate (Howard
//! Hinnant's `days_from_civil` and `civil_from_days`): what SigV4's `X-Amz-Date` and the
//! container-credentials' ISO 8601 expiry are written in.

/// A UTC date and time of day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Civil {
    pub year: i64,
    pub month: i64,
    pub day: i64,
    pub hour: i64,
    pub minute: i64,
    pub second: i64,
}

impl Civil {
    /// The date and time `secs` seconds after the epoch.
    pub fn from_secs(secs: u64) -> Civil {
        let days = (secs / 86_400) as i64;
        let rest = (secs % 86_400) as i64;
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        Civil {
            year: yoe + era * 400 + i64::from(month <= 2),
            month,
            day,
            hour: rest / 3_600,
            minute: rest % 3_600 / 60,
            second: rest % 60,
        }
    }

    /// Seconds since the epoch, or `None` for a field out of range or a time before it.
    pub fn to_secs(self) -> Option<u64> {
        let Civil {
            year,
            month,
            day,
            hour,
            minute,
            second,
        } = self;
        if !(1..=12).contains(&month)
            || !(1..=31).contains(&day)
            || !(0..=23).contains(&hour)
            || !(0..=59).contains(&minute)
            || !(0..=60).contains(&second)
        {
            return None;
        }
        let y = if month <= 2 { year - 1 } else { year };
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let mp = (month + 9) % 12;
        let doy = (153 * mp + 2) / 5 + day - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        let days = era * 146_097 + doe - 719_468;
        u64::try_from(days * 86_400 + hour * 3_600 + minute * 60 + second).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_go_both_ways_across_leap_days_and_centuries() {
        for secs in [0, 951_782_400, 1_796_345_247, 4_102_444_800, 951_868_799] {
            assert_eq!(Civil::from_secs(secs).to_secs(), Some(secs), "{secs}");
        }
        let leap = Civil::from_secs(951_782_400);
        assert_eq!((leap.year, leap.month, leap.day), (2000, 2, 29));
        let bad = Civil { month: 13, ..leap };
        assert_eq!(bad.to_secs(), None);
    }
}
