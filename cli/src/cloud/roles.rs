//! Each function's execution role as the emulator hands it to its stubs in IoT mode: a
//! temporary key pair with a session token per function, accepted by the IoT-mode broker's
//! key ring; or, against a broker of its own process (`live broker --iot`), which knows only
//! the environment's credentials, those. Given in the stubs' environment, as Lambda does; or,
//! rotating on a schedule (hidden `--rotate-credentials-secs`), served from a loopback
//! container-credentials endpoint, as Lambda serves SnapStart functions, so a running stub
//! sees each new key. A rotated-out key stays accepted for one more period, as real
//! credentials stay valid until they expire.

use crate::function::{CredentialsEndpoint, Grant};
use bridge::broker::KeyRing;
use bridge::container_credentials::now_secs;
use bridge::sigv4::AwsCredentials;
use bridge::RoleCredentials;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// IoT mode as the stubs meet it: the broker's region and CA file, and the roles.
#[derive(Debug, Clone)]
pub struct StubIot {
    /// The region the broker stands in for; the stubs' `AWS_REGION`.
    pub region: String,
    /// The broker's CA certificate; the stubs' `LIVE_CA_FILE`.
    pub ca_file: PathBuf,
    /// The functions' role credentials.
    pub roles: Roles,
    /// The stage's S3 bucket for large payloads (the stubs' `LIVE_BUCKET`), with the S3
    /// endpoint of this process's environment (`AWS_ENDPOINT_URL_S3`, `AWS_ENDPOINT_URL`)
    /// for a stand-in.
    pub bucket: Option<String>,
    /// The stubs run a deployed configuration, whose `LIVE_BRIDGE_URL` names IoT Core's
    /// endpoint: they connect to this cloud's broker under that name (`LIVE_IOT_CONNECT_TO`,
    /// set once the broker listens).
    pub redirect: Option<String>,
}

/// The current credentials of each function's role.
#[derive(Clone)]
pub struct Roles {
    keys: Option<KeyRing>,
    current: Arc<Mutex<HashMap<String, Role>>>,
    fixed: Option<AwsCredentials>,
    /// With rotation: the endpoint serving them, and the period.
    rotating: Option<(CredentialsEndpoint, Duration)>,
}

/// One function's role: its key, and where it is served when rotating.
struct Role {
    credentials: AwsCredentials,
    grant: Option<Grant>,
}

impl std::fmt::Debug for Roles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Roles")
            .field("rotating", &self.rotating.as_ref().map(|(_, p)| p))
            .finish_non_exhaustive()
    }
}

impl Roles {
    /// A role per function, its credentials accepted by `keys` (the broker's key ring).
    pub fn new(keys: KeyRing) -> Roles {
        Roles {
            keys: Some(keys),
            current: Arc::default(),
            fixed: None,
            rotating: None,
        }
    }

    /// [`Roles::new`], each role's key replaced every `period` and served to its stubs from a
    /// loopback container-credentials endpoint.
    pub async fn rotating(keys: KeyRing, period: Duration) -> anyhow::Result<Roles> {
        let endpoint = CredentialsEndpoint::start().await.map_err(|e| {
            anyhow::anyhow!("could not start the roles' credentials endpoint on loopback: {e}")
        })?;
        let roles = Roles {
            rotating: Some((endpoint, period)),
            ..Roles::new(keys)
        };
        let rotator = roles.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
            loop {
                every.tick().await;
                rotator.rotate();
            }
        });
        Ok(roles)
    }

    /// Every function's role is `credentials`.
    pub fn fixed(credentials: AwsCredentials) -> Roles {
        Roles {
            keys: None,
            current: Arc::default(),
            fixed: Some(credentials),
            rotating: None,
        }
    }

    /// The variables that give a stub of `function` its role: the key pair, or with rotation
    /// the endpoint's URL and token. The role is made on first use.
    pub fn stub_env(&self, function: &str) -> Vec<(&'static str, String)> {
        if let Some(fixed) = &self.fixed {
            return key_env(fixed);
        }
        let mut current = self.current.lock().expect("roles");
        let role = current.entry(function.to_owned()).or_insert_with(|| {
            let credentials = self.issue(function);
            let grant = self.rotating.as_ref().map(|(endpoint, period)| {
                let grant = endpoint.grant(function);
                grant.set(&wire(&credentials), Some(expiry(*period)));
                grant
            });
            Role { credentials, grant }
        });
        match &role.grant {
            Some(grant) => grant.env().into(),
            None => key_env(&role.credentials),
        }
    }

    /// A new key for `function`, accepted by the broker from now on.
    fn issue(&self, function: &str) -> AwsCredentials {
        let credentials = fresh();
        if let Some(keys) = &self.keys {
            keys.insert(credentials.clone());
        }
        tracing::info!(
            function,
            access_key = credentials.access_key_id,
            "issued role credentials"
        );
        credentials
    }

    /// Replace every role's key; each old one is refused one period later (when it expires).
    fn rotate(&self) {
        let Some((_, period)) = &self.rotating else {
            return;
        };
        let mut current = self.current.lock().expect("roles");
        for (function, role) in current.iter_mut() {
            let old = std::mem::replace(&mut role.credentials, self.issue(function));
            if let Some(grant) = &role.grant {
                grant.set(&wire(&role.credentials), Some(expiry(*period)));
            }
            if let Some(keys) = self.keys.clone() {
                let period = *period;
                tokio::spawn(async move {
                    tokio::time::sleep(period).await;
                    keys.remove(&old.access_key_id);
                });
            }
        }
    }
}

/// When a key issued now expires: after its own period and the next one.
fn expiry(period: Duration) -> u64 {
    now_secs() + 2 * period.as_secs().max(1)
}

fn wire(credentials: &AwsCredentials) -> RoleCredentials {
    RoleCredentials {
        access_key_id: credentials.access_key_id.clone(),
        secret_access_key: credentials.secret_access_key.clone(),
        session_token: credentials.session_token.clone(),
        expires_in_secs: None,
    }
}

fn key_env(credentials: &AwsCredentials) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ACCESS_KEY_ID", credentials.access_key_id.clone()),
        (
            "AWS_SECRET_ACCESS_KEY",
            credentials.secret_access_key.clone(),
        ),
        (
            "AWS_SESSION_TOKEN",
            credentials.session_token.clone().unwrap_or_default(),
        ),
    ]
}

/// A new temporary key pair: `ASIA` and 16 letters or digits, a 40-character secret, a token.
fn fresh() -> AwsCredentials {
    const KEY: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    const SECRET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let pick = |alphabet: &[u8], n: usize| -> String {
        let mut bytes = vec![0u8; n];
        getrandom::fill(&mut bytes).expect("the operating system's random source is readable");
        bytes
            .iter()
            .map(|b| alphabet[usize::from(*b) % alphabet.len()] as char)
            .collect()
    };
    AwsCredentials {
        access_key_id: format!("ASIA{}", pick(KEY, 16)),
        secret_access_key: pick(SECRET, 40),
        session_token: Some(format!("IQoJb3JpZ2luX2Vj{}", pick(SECRET, 96))),
    }
}
