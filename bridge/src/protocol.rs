//! Wire protocol v2: the messages the stub and `live dev` exchange, as data.
//!
//! One serde enum per direction, named after its sender: [`StubMessage`] travels from a stub
//! execution environment to a developer session, [`DevMessage`] the other way, and
//! [`Presence`] is retained per developer session. Every message travels with a raw body
//! (the event, the handler's response or error JSON) that is never re-encoded: see
//! [`crate::wire`] for the framing and chunking.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// The bridge protocol version. It travels in every frame, so the first message of every
/// session carries it; a mismatch is a [`crate::ProtocolError::VersionMismatch`].
///
/// v2 (from v1): the stub no longer acknowledges each result (`result_ack`); it probes for a
/// result it still waits for after an Ack (`probe`), and the developer side keeps a result
/// until the same environment's next invocation or the deadline. Later additions are optional
/// fields that older readers ignore and newer ones default (`WireInvocation::env` and
/// `credentials`), which need no new version.
pub const PROTOCOL_VERSION: u8 = 2;

/// The largest MQTT PUBLISH payload any broker on the path accepts (IoT Core's 128 KB),
/// our frame header included. Larger messages are split into chunks.
pub const MAX_MQTT_PAYLOAD: usize = 131_072;

/// The largest topic IoT Core accepts, in bytes of UTF-8.
pub const MAX_TOPIC_BYTES: usize = 256;

/// The most forward slashes IoT Core accepts in a topic.
pub const MAX_TOPIC_SLASHES: usize = 7;

/// The largest whole message (header and body): Lambda's largest synchronous response
/// (6 MiB + 100 bytes) with room for the headers that travel beside it.
pub const MAX_MESSAGE_BYTES: usize = 6_291_556 + 64 * 1024;

/// How long a partly received chunked message is kept before it is dropped.
pub const REASSEMBLY_TIMEOUT: Duration = Duration::from_secs(30);

/// The most bytes held across all partly received messages of one receiver.
pub const REASSEMBLY_BUDGET: usize = 64 * 1024 * 1024;

/// A header name and value, in the order and spelling received.
pub type Header = (String, String);

/// Messages a stub execution environment sends to a developer session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StubMessage {
    /// An invocation taken from the real Runtime API's `/next`; the frame's body is the raw
    /// event, byte for byte.
    Invoke(WireInvocation),
    /// The stub still waits for the result of `request_id`, which the developer side
    /// acknowledged: sent every second and after every reconnection, since a result sent
    /// while a connection was down is lost. The developer side answers with the result if it
    /// has one (again), or with an Ack while the handler runs.
    Probe {
        /// The invocation waited for.
        request_id: String,
        /// The stub's execution environment, whose topic the answer goes to.
        env_id: String,
    },
}

impl StubMessage {
    /// The invocation this message is about.
    pub fn request_id(&self) -> &str {
        match self {
            StubMessage::Invoke(invocation) => &invocation.request_id,
            StubMessage::Probe { request_id, .. } => request_id,
        }
    }
}

/// One invocation on the wire: the header of a [`StubMessage::Invoke`], as the stub received
/// it from Lambda (the event is the frame's body). The Runtime API layer's counterpart, what a
/// local Runtime API serves on `/next`, is `runtime_api::server::RuntimeInvocation`, made from
/// this and the body by `RuntimeInvocation::from_wire`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireInvocation {
    /// Lambda's request id (`Lambda-Runtime-Aws-Request-Id`); the key of acknowledgements,
    /// deduplication and results.
    pub request_id: String,
    /// The function this stub stands in for, as named in `live.toml`.
    pub function: String,
    /// The stub's execution environment; results go to its topic and it maps 1:1 to a local
    /// worker process.
    pub env_id: String,
    /// Every `Lambda-Runtime-*` header of `/next`, names and values unchanged.
    pub headers: Vec<Header>,
    /// Milliseconds left before Lambda's deadline when the stub sent this; relative, so that
    /// clock skew between the cloud and the laptop does not matter.
    pub remaining_ms: u64,
    /// How often this invocation was sent before (0 on the first send).
    pub attempt: u32,
    /// The function's environment in the cloud, minus Lambda's runtime-internal variables
    /// and the credentials: sent on an environment's first invocation to a session (a
    /// connection of it, by epoch) and when it changed; absent means "as before".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<FunctionEnv>,
    /// The function role's current credentials, sent as `env` is: on the first invocation to
    /// a session and whenever they changed (rotated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<RoleCredentials>,
    /// Where a payload too large for the bridge's quota travels instead: the stage's S3
    /// bucket, by URLs the stub presigned (the event is then not in the frame's body).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub objects: Option<Box<ObjectUrls>>,
}

/// An invocation's payloads in the stage's S3 bucket, by presigned URL. `Debug` hides the
/// queries: they carry the stub's signature.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectUrls {
    /// GET: the event, when it is not in the frame's body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    /// PUT: where a response too large for the bridge goes (then sent as
    /// `DevMessage::Response { in_object: true }` with an empty body).
    pub response: String,
}

impl std::fmt::Debug for ObjectUrls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let path = |url: &str| format!("{}?…", url.split('?').next().unwrap_or_default());
        f.debug_struct("ObjectUrls")
            .field("event", &self.event.as_deref().map(path))
            .field("response", &path(&self.response))
            .finish()
    }
}

/// A function's environment variables, by name. `Debug` shows the names only: values may be
/// secrets.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct FunctionEnv(pub BTreeMap<String, String>);

impl std::fmt::Debug for FunctionEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

/// A function role's temporary credentials as they travel with an invocation. `Debug` shows
/// the access key id only.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleCredentials {
    /// `ASIA...` (or `AKIA...`).
    pub access_key_id: String,
    /// The secret half.
    pub secret_access_key: String,
    /// The session token of temporary credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_token: Option<String>,
    /// Seconds they stay valid from when the stub sent them, when known; relative, as
    /// `remaining_ms` is, so that clock skew does not matter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in_secs: Option<u64>,
}

impl RoleCredentials {
    /// Whether `other` is the same key, secret and token (whatever their expiry).
    pub fn same_key(&self, other: &RoleCredentials) -> bool {
        self.access_key_id == other.access_key_id
            && self.secret_access_key == other.secret_access_key
            && self.session_token == other.session_token
    }
}

impl std::fmt::Debug for RoleCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoleCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"** redacted **")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "** redacted **"),
            )
            .field("expires_in_secs", &self.expires_in_secs)
            .finish()
    }
}

/// Messages a developer session sends to a stub execution environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum DevMessage {
    /// The invocation arrived: the stub stops retransmitting it.
    Ack {
        /// The invocation received.
        request_id: String,
    },
    /// The handler posted `/response`; the frame's body is its raw response.
    Response {
        /// The invocation answered.
        request_id: String,
        /// The headers of the handler's `/response` request, unchanged.
        headers: Vec<Header>,
        /// The response was put at the invocation's `ObjectUrls::response` (too large for
        /// the bridge); the frame's body is empty.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        in_object: bool,
    },
    /// The handler posted `/error`, or the chain failed on the developer's side (build failed,
    /// worker crashed); the frame's body is the raw error JSON.
    Error {
        /// The invocation answered.
        request_id: String,
        /// `Lambda-Runtime-Function-Error-Type`, when the handler sent one.
        error_type: Option<String>,
        /// The headers of the handler's `/error` request, unchanged.
        headers: Vec<Header>,
    },
}

impl DevMessage {
    /// The invocation this message is about.
    pub fn request_id(&self) -> &str {
        match self {
            DevMessage::Ack { request_id }
            | DevMessage::Response { request_id, .. }
            | DevMessage::Error { request_id, .. } => request_id,
        }
    }
}

/// Retained on a developer session's presence topic; its last will is the same record with
/// `online: false`. A retained record is one MQTT message, so a record is one whole frame of
/// at most [`MAX_MQTT_PAYLOAD`] bytes, never chunked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Presence {
    /// The developer session this record describes.
    pub session: String,
    /// Whether the session is connected and serving.
    pub online: bool,
    /// When this connection of the session started (ms since the epoch): of two records for
    /// one session the newer wins, so a late "offline" cannot erase a newer "online".
    pub epoch: u64,
    /// The protocol version the session speaks, so a stub can name the side to update.
    pub version: u8,
    /// The functions the session serves.
    pub functions: Vec<String>,
    /// How many connections (lanes) the session receives invocations on, each under the
    /// broker's per-connection quota: an execution environment sends to lane
    /// `topics::lane_of(env, lanes)`. Absent in older records: one.
    #[serde(default = "one_lane", skip_serializing_if = "is_one_lane")]
    pub lanes: u16,
}

fn one_lane() -> u16 {
    1
}

fn is_one_lane(lanes: &u16) -> bool {
    *lanes == 1
}

impl Presence {
    /// Whether this record should replace `other` for the same session: the newer connection
    /// wins, and within one connection "offline" (its last will) comes after "online".
    pub fn supersedes(&self, other: &Presence) -> bool {
        (self.epoch, !self.online) >= (other.epoch, !other.online)
    }
}
