//! The broker's IoT mode, standing in for IoT Core: TLS under a given server identity, and a
//! SigV4 gate on every WebSocket upgrade, checked against the credentials it knows (a key
//! ring the caller may change while it runs, as role credentials rotate).

use crate::sigv4::{self, AwsCredentials, Refusal, Signed};
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

/// What IoT mode needs: the TLS identity, the region signatures must name, the known keys.
#[derive(Clone)]
pub struct IotMode {
    /// The server's certificate and key (for 127.0.0.1 and localhost, from a CA of its own).
    pub tls: Arc<rustls::ServerConfig>,
    /// The region of this stand-in endpoint.
    pub region: String,
    /// The credentials whose signatures are accepted.
    pub keys: KeyRing,
    /// Counts of verified and refused upgrades.
    pub counts: Arc<GateCounts>,
}

impl fmt::Debug for IotMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IotMode")
            .field("region", &self.region)
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

/// Upgrades verified and refused since the broker started.
#[derive(Debug, Default)]
pub struct GateCounts {
    /// Signatures that verified.
    pub verified: AtomicU64,
    /// Upgrades refused with a 403.
    pub refused: AtomicU64,
}

/// The access keys the gate accepts, by access key id; shared with whoever rotates them.
#[derive(Clone, Default)]
pub struct KeyRing(Arc<RwLock<HashMap<String, AwsCredentials>>>);

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys = self.0.read().expect("key ring");
        f.debug_list().entries(keys.keys()).finish()
    }
}

impl KeyRing {
    /// Accept signatures by `credentials` (replacing an earlier secret for the same key).
    pub fn insert(&self, credentials: AwsCredentials) {
        let mut keys = self.0.write().expect("key ring");
        keys.insert(credentials.access_key_id.clone(), credentials);
    }

    /// Stop accepting `access_key_id` (rotated out).
    pub fn remove(&self, access_key_id: &str) {
        self.0.write().expect("key ring").remove(access_key_id);
    }

    fn get(&self, access_key_id: &str) -> Option<AwsCredentials> {
        self.0.read().expect("key ring").get(access_key_id).cloned()
    }
}

impl IotMode {
    /// Check an upgrade request for `path_and_query` with its `Host` header: who signed and
    /// when on success, the reason on refusal. Counted either way.
    pub(super) fn check(&self, host: &str, path_and_query: &str) -> Result<Signed, Refusal> {
        let verdict = sigv4::verify(host, path_and_query, &self.region, SystemTime::now(), |k| {
            self.keys.get(k)
        });
        let count = match verdict {
            Ok(_) => &self.counts.verified,
            Err(_) => &self.counts.refused,
        };
        count.fetch_add(1, Ordering::Relaxed);
        verdict
    }
}
