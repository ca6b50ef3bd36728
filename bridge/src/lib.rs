//! The bridge between a Lambda stub and `live dev`: everything both sides must agree on.
//!
//! - [`protocol`]: the messages, as data, and the limits beside them;
//! - [`wire`]: framing, chunking to IoT Core's payload limit, and bounded reassembly;
//! - [`topics`]: the topic scheme under `live/{app}/{stage}/`, received topics parsed into a
//!   [`Topic`], and IoT Core's topic limits;
//! - [`client_ids`]: the stage's MQTT client ids, `{app}:{stage}:{kind}:{name}` (what an IoT
//!   policy allows);
//! - [`transport`]: the MQTT-over-WebSocket client connection (on `rumqttc`), or an
//!   in-process one to a broker in the same process;
//! - [`s3`]: S3 object URLs presigned with SigV4, for payloads too large for the bridge's
//!   quota;
//! - [`sigv4`]: IoT Core's SigV4-presigned WebSocket URL, presigned (clients) and verified
//!   (the broker standing in for IoT Core);
//! - [`container_credentials`]: the container-credentials JSON AWS SDKs read, and UTC times;
//! - [`tls`]: the clients' TLS (one crypto provider, ring; Amazon's roots and `LIVE_CA_FILE`);
//! - [`runtime_api`]: the Lambda Runtime API's paths and headers, and (feature
//!   `runtime-server`) the local Runtime API server every local host uses;
//! - [`broker`] (feature `broker`): the embedded MQTT-over-WebSocket broker.

pub mod civil;
pub mod client_ids;
pub mod container_credentials;
pub mod protocol;
pub mod runtime_api;
pub mod s3;
pub mod sigv4;
pub mod tls;
pub mod topics;
pub mod transport;
pub mod wire;

#[cfg(feature = "broker")]
pub mod broker;

pub use protocol::{
    DevMessage, FunctionEnv, Presence, RoleCredentials, StubMessage, WireInvocation,
    PROTOCOL_VERSION,
};
pub use topics::{Topic, Topics};
pub use wire::{Frame, ProtocolError, Reassembler};
