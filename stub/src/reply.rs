//! What the stub posts to the real Runtime API: the handler's result, or a failure of the
//! bridge named with its cause and what to do about it.

use bridge::protocol::Header;
use bridge::runtime_api::{failure, json_headers};
use bridge::{Presence, PROTOCOL_VERSION};
use bytes::Bytes;
use std::time::Duration;

/// What to post to the real Runtime API.
pub enum Reply {
    Response {
        headers: Vec<Header>,
        body: Bytes,
    },
    Error {
        error_type: String,
        headers: Vec<Header>,
        body: Bytes,
    },
}

impl Reply {
    /// A failure of the bridge's own: `error_type` (`Live.*`) with `message`, as Lambda's
    /// error JSON.
    pub fn failure(error_type: &str, message: String) -> Reply {
        let (error_type, body) = failure(error_type, &message);
        Reply::Error {
            error_type,
            headers: json_headers(),
            body,
        }
    }
}

/// `Live.ProtocolMismatch` when `session` speaks another bridge protocol version than this
/// stub, naming the side to update.
pub fn version_mismatch(session: &Presence) -> Option<Reply> {
    (session.version != PROTOCOL_VERSION).then(|| {
        let update = if session.version > PROTOCOL_VERSION {
            "redeploy the stub with the newer `live`"
        } else {
            "update `live` on the developer's machine"
        };
        Reply::failure(
            "Live.ProtocolMismatch",
            format!(
                "developer session {:?} speaks bridge protocol v{}, this stub v{PROTOCOL_VERSION}: {update}",
                session.session, session.version
            ),
        )
    })
}

/// `Live.BridgeUnreachable`: the link to the broker at `url` did not come up within `waited`
/// for `place`; the message carries the connection's `last_error` and advice that follows
/// from it.
pub fn unreachable(url: &str, waited: Duration, place: &str, last_error: &str) -> Reply {
    Reply::failure(
        "Live.BridgeUnreachable",
        format!(
            "the stub could not join the bridge at {url} within {waited:?} for {place}: {last_error}; {}",
            advice(last_error)
        ),
    )
}

/// What to check, from the connection's last error (as the transport words it: `rumqttc`'s
/// `ConnectionError`, or the refusal code of a CONNACK).
fn advice(last_error: &str) -> String {
    // CONNACK return codes (MQTT 3.1.1), as `rumqttc` names them.
    let refusal = [
        ("BadUserNamePassword", "the broker refused the login (bad user name or password): check LIVE_BROKER_USERNAME and LIVE_BROKER_PASSWORD against the broker's credentials (`live broker --username --password`, or those `live cloud` was given)"),
        ("NotAuthorized", "the broker refused the login (not authorised): check LIVE_BROKER_USERNAME and LIVE_BROKER_PASSWORD, and on IoT Core that the function's role and the IoT policy allow iot:Connect for this client id"),
        ("BadClientId", "the broker refused the client id (`APP:STAGE:stub:` and the environment's id): check LIVE_ENV_ID (1-64 characters of A-Za-z0-9_.-)"),
        ("ServiceUnavailable", "the broker refused new connections for now (service unavailable): try again, or look at the broker's own log"),
        ("RefusedProtocolVersion", "the broker does not speak MQTT 3.1.1: check that LIVE_BRIDGE_URL names a `live` broker or the IoT Core endpoint"),
    ];
    if let Some((_, advice)) = refusal.iter().find(|(code, _)| last_error.contains(code)) {
        return (*advice).to_string();
    }
    if last_error.contains("certificate") {
        return "the broker's TLS certificate is not trusted: on IoT Core use the iot:Data-ATS endpoint (Amazon's roots are built in); for a broker of your own set LIVE_CA_FILE to its CA (the file `live broker --iot --ca-file` wrote)".into();
    }
    if last_error.contains("HTTP error: 401") || last_error.contains("HTTP error: 403") {
        return "the broker refused the WebSocket upgrade: on IoT Core check the request signing and the function's role; otherwise check the credentials and LIVE_BRIDGE_URL's path (/mqtt)".into();
    }
    if last_error.contains("HTTP error") || last_error.starts_with("Invalid Url") {
        return "check LIVE_BRIDGE_URL (ws://HOST:PORT/mqtt, or the IoT endpoint's wss:// URL)"
            .into();
    }
    if last_error.starts_with("TLS") {
        return "the TLS handshake failed: check that LIVE_BRIDGE_URL is the broker's wss:// URL and that its certificate is valid".into();
    }
    if last_error == "not tried yet" {
        return "the connection had not been tried yet: raise LIVE_NO_DEV_WINDOW_MS".into();
    }
    "check that the broker (`live broker`, `live cloud` or IoT Core) is running and reachable at that URL".into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_advice_follows_the_cause() {
        let refused = advice("Connection refused, return code: `BadUserNamePassword`");
        assert!(
            refused.contains("refused the login") && refused.contains("LIVE_BROKER_PASSWORD"),
            "{refused}"
        );
        assert!(!refused.contains("running"), "{refused}");
        let untrusted = advice("Websocket: IO error: invalid peer certificate: UnknownIssuer");
        assert!(untrusted.contains("LIVE_CA_FILE"), "{untrusted}");
        let by_the_driver = advice("broker refused: NotAuthorized");
        assert!(
            by_the_driver.contains("not authorised") && by_the_driver.contains("IoT policy"),
            "{by_the_driver}"
        );
        // An OS "connection refused" is no login refusal: nothing listens there.
        let nothing_there =
            advice("Websocket Connect: IO error: Connection refused (os error 111)");
        assert!(nothing_there.contains("is running"), "{nothing_there}");
        let upgrade = advice("Websocket Connect: HTTP error: 403 Forbidden");
        assert!(upgrade.contains("request signing"), "{upgrade}");
        assert!(advice("TLS: invalid peer certificate").contains("certificate"));
        assert!(advice("I/O: Network timeout").contains("is running"));
    }

    #[test]
    fn an_unreachable_bridge_names_the_url_the_error_and_the_advice() {
        let Reply::Error {
            error_type, body, ..
        } = unreachable(
            "ws://h:1/mqtt",
            Duration::from_secs(3),
            "function \"f\"",
            "Connection refused, return code: `BadUserNamePassword`",
        )
        else {
            panic!("a failure")
        };
        assert_eq!(error_type, "Live.BridgeUnreachable");
        let body = String::from_utf8_lossy(&body);
        assert!(
            body.contains("ws://h:1/mqtt within 3s for function \\\"f\\\": Connection refused, return code: `BadUserNamePassword`; the broker refused the login"),
            "{body}"
        );
    }
}
