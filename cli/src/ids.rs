//! Random identifiers: request ids in UUID form and 32-hex execution environment ids (from
//! the operating system's random source, `getrandom`), and the UTC day of Lambda's log stream
//! names (`time`).

/// 16 random bytes.
fn random() -> [u8; 16] {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("the operating system's random source is readable");
    bytes
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A version-4 UUID, as Lambda's request ids look.
pub fn request_id() -> String {
    let mut b = random();
    b[6] = (b[6] & 0x0f) | 0x40; // version 4
    b[8] = (b[8] & 0x3f) | 0x80; // the RFC 4122 variant
    format!(
        "{}-{}-{}-{}-{}",
        hex(&b[..4]),
        hex(&b[4..6]),
        hex(&b[6..8]),
        hex(&b[8..10]),
        hex(&b[10..])
    )
}

/// 32 hex characters, as the unique tail of a Lambda log stream name.
pub fn env_id() -> String {
    hex(&random())
}

/// Today's date in UTC as `YYYY/MM/DD`, as in Lambda's log stream names.
pub fn utc_day() -> String {
    let today = time::OffsetDateTime::now_utc().date();
    format!(
        "{:04}/{:02}/{:02}",
        today.year(),
        u8::from(today.month()),
        today.day()
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn shapes() {
        let id = super::request_id();
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
        assert!(matches!(&id[19..20], "8" | "9" | "a" | "b"), "{id}");
        assert_ne!(super::request_id(), id);
        let env = super::env_id();
        assert_eq!(env.len(), 32);
        assert!(env.chars().all(|c| c.is_ascii_hexdigit()));
        let day = super::utc_day();
        assert_eq!(day.len(), 10);
        assert_eq!(&day[4..5], "/");
        assert_eq!(&day[7..8], "/");
    }
}
