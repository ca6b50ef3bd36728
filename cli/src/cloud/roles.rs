//! Each function's execution role as the emulator hands it to its stubs in IoT mode: a
//! temporary key pair with a session token per function (as Lambda puts the role's
//! credentials in the environment), accepted by the IoT-mode broker's key ring; or, against
//! a broker of its own process (`live broker --iot`), which knows only the environment's
//! credentials, those.

use bridge::broker::KeyRing;
use bridge::sigv4::AwsCredentials;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// IoT mode as the stubs meet it: the broker's region and CA file, and the roles.
#[derive(Debug, Clone)]
pub struct StubIot {
    /// The region the broker stands in for; the stubs' `AWS_REGION`.
    pub region: String,
    /// The broker's CA certificate; the stubs' `LIVE_CA_FILE`.
    pub ca_file: PathBuf,
    /// The functions' role credentials.
    pub roles: Roles,
}

/// The current credentials of each function's role.
#[derive(Debug, Clone)]
pub struct Roles {
    keys: Option<KeyRing>,
    current: Arc<Mutex<HashMap<String, AwsCredentials>>>,
    fixed: Option<AwsCredentials>,
}

impl Roles {
    /// A role per function, its credentials accepted by `keys` (the broker's key ring).
    pub fn new(keys: KeyRing) -> Roles {
        Roles {
            keys: Some(keys),
            current: Arc::default(),
            fixed: None,
        }
    }

    /// Every function's role is `credentials`.
    pub fn fixed(credentials: AwsCredentials) -> Roles {
        Roles {
            keys: None,
            current: Arc::default(),
            fixed: Some(credentials),
        }
    }

    /// The credentials of `function`'s role, made on first use.
    pub fn credentials(&self, function: &str) -> AwsCredentials {
        if let Some(fixed) = &self.fixed {
            return fixed.clone();
        }
        let mut current = self.current.lock().expect("roles");
        current
            .entry(function.to_owned())
            .or_insert_with(|| {
                let credentials = fresh();
                if let Some(keys) = &self.keys {
                    keys.insert(credentials.clone());
                }
                credentials
            })
            .clone()
    }
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
