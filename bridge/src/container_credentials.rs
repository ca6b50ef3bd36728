//! The container-credentials format AWS SDKs read from `AWS_CONTAINER_CREDENTIALS_FULL_URI`
//! (`{"AccessKeyId","SecretAccessKey","Token","Expiration"}`, the expiration in ISO 8601 UTC):
//! read by the stub from Lambda's endpoint, written by `live dev`'s and the emulator's
//! endpoints. With the UTC timestamps it needs, so the stub compiles no date crate.

use crate::civil::Civil;
use crate::protocol::RoleCredentials;
use serde::{Deserialize, Serialize};

/// The variable naming the endpoint's URL.
pub const FULL_URI: &str = "AWS_CONTAINER_CREDENTIALS_FULL_URI";
/// The variable holding the `Authorization` header's value for it.
pub const AUTHORIZATION_TOKEN: &str = "AWS_CONTAINER_AUTHORIZATION_TOKEN";
/// The variable naming a file that holds that value instead.
pub const AUTHORIZATION_TOKEN_FILE: &str = "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE";
/// The variable naming a path on ECS's fixed address instead of a full URI.
pub const RELATIVE_URI: &str = "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI";

/// One answer of a container-credentials endpoint.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Answer {
    access_key_id: String,
    secret_access_key: String,
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    expiration: Option<String>,
}

/// The JSON an endpoint answers with for `credentials`, valid until `expires_at` (seconds
/// since the epoch).
pub fn render(credentials: &RoleCredentials, expires_at: u64) -> String {
    let answer = Answer {
        access_key_id: credentials.access_key_id.clone(),
        secret_access_key: credentials.secret_access_key.clone(),
        token: credentials.session_token.clone(),
        expiration: Some(iso8601(expires_at)),
    };
    serde_json::to_string(&answer).expect("strings serialize")
}

/// An endpoint's answer read at `now` (seconds since the epoch): the credentials, their
/// lifetime from now in `expires_in_secs` (0 once expired) when the answer has one.
pub fn parse(json: &[u8], now: u64) -> Result<RoleCredentials, String> {
    let answer: Answer = serde_json::from_slice(json)
        .map_err(|e| format!("the credentials endpoint's answer is not its JSON format: {e}"))?;
    let expires_in_secs = match &answer.expiration {
        None => None,
        Some(text) => Some(
            parse_iso8601(text)
                .ok_or_else(|| format!("the credentials' Expiration {text:?} is not ISO 8601"))?
                .saturating_sub(now),
        ),
    };
    Ok(RoleCredentials {
        access_key_id: answer.access_key_id,
        secret_access_key: answer.secret_access_key,
        session_token: answer.token.filter(|t| !t.is_empty()),
        expires_in_secs,
    })
}

/// Seconds since the epoch, now.
pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `secs` since the epoch as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn iso8601(secs: u64) -> String {
    let c = Civil::from_secs(secs);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        c.year, c.month, c.day, c.hour, c.minute, c.second
    )
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction](Z|+00:00)` as seconds since the epoch (the fraction
/// dropped); other offsets are applied.
pub fn parse_iso8601(text: &str) -> Option<u64> {
    let b = text.as_bytes();
    let num = |from: usize, len: usize| -> Option<i64> {
        let part = text.get(from..from + len)?;
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let civil = Civil {
        year: num(0, 4)?,
        month: num(5, 2)?,
        day: num(8, 2)?,
        hour: num(11, 2)?,
        minute: num(14, 2)?,
        second: num(17, 2)?,
    };
    let mut rest = &text[19..];
    if let Some(fraction) = rest.strip_prefix('.') {
        let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
        rest = &fraction[digits..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ if rest.len() == 6 && matches!(&rest[..1], "+" | "-") && &rest[3..4] == ":" => {
            let sign = if &rest[..1] == "-" { -1 } else { 1 };
            let (h, m): (i64, i64) = (rest[1..3].parse().ok()?, rest[4..6].parse().ok()?);
            sign * (h * 3600 + m * 60)
        }
        _ => return None,
    };
    let secs = i64::try_from(civil.to_secs()?).ok()? - offset;
    u64::try_from(secs).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip_and_read_the_forms_sdks_write() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00Z");
        assert_eq!(iso8601(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(iso8601(1_796_342_399), "2026-12-03T23:59:59Z");
        for secs in [0, 951_782_400, 1_796_342_399, 4_102_444_800] {
            assert_eq!(parse_iso8601(&iso8601(secs)), Some(secs));
        }
        assert_eq!(
            parse_iso8601("2026-12-03T23:59:59.123Z"),
            Some(1_796_342_399)
        );
        assert_eq!(
            parse_iso8601("2026-12-04T01:59:59+02:00"),
            Some(1_796_342_399)
        );
        for bad in [
            "",
            "2026-12-03",
            "2026-13-03T00:00:00Z",
            "2026-12-03T00:00:00",
        ] {
            assert_eq!(parse_iso8601(bad), None, "{bad}");
        }
    }

    #[test]
    fn an_answer_reads_back_as_what_was_rendered() {
        let credentials = RoleCredentials {
            access_key_id: "ASIAEXAMPLE".into(),
            secret_access_key: "secret".into(),
            session_token: Some("token".into()),
            expires_in_secs: None,
        };
        let json = render(&credentials, 1_000_600);
        assert!(json.contains(r#""AccessKeyId":"ASIAEXAMPLE""#), "{json}");
        assert!(
            json.contains(r#""Expiration":"1970-01-12T13:56:40Z""#),
            "{json}"
        );
        let read = parse(json.as_bytes(), 1_000_000).unwrap();
        assert!(read.same_key(&credentials));
        assert_eq!(read.expires_in_secs, Some(600));
        assert!(parse(b"{}", 0).unwrap_err().contains("JSON format"));
    }
}
