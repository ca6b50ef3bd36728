//! MQTT client ids of a stage: `{app}:{stage}:{kind}:{name}`, so that an IoT policy can allow
//! exactly the stage's clients (`client/{app}:{stage}:*`). Names never hold `:`, so a
//! stage's prefix is never another stage's; ids stay inside IoT Core's 128 bytes, long parts
//! replaced by their hash.

/// IoT Core's longest client id, in bytes.
pub const MAX_CLIENT_ID_BYTES: usize = 128;

/// Room kept below [`MAX_CLIENT_ID_BYTES`] for a lane's `-{k}` suffix.
const LANE_SUFFIX_ROOM: usize = 3;

/// The start every client id of `app`'s `stage` shares: `{app}:{stage}:`, or, when that
/// would be longer than 64 bytes, the hash of it (`{16 hex digits}:`).
pub fn stage_prefix(app: &str, stage: &str) -> String {
    let prefix = format!("{app}:{stage}:");
    if prefix.len() <= 64 {
        prefix
    } else {
        format!("{:016x}:", fnv1a64(prefix.as_bytes()))
    }
}

/// A stub execution environment's client id.
pub fn stub(app: &str, stage: &str, env: &str) -> String {
    client_id(app, stage, "stub", env)
}

/// A developer session's client id (its lanes append `-{k}`).
pub fn dev(app: &str, stage: &str, session: &str) -> String {
    client_id(app, stage, "dev", session)
}

fn client_id(app: &str, stage: &str, kind: &str, name: &str) -> String {
    let prefix = stage_prefix(app, stage);
    let id = format!("{prefix}{kind}:{name}");
    if id.len() <= MAX_CLIENT_ID_BYTES - LANE_SUFFIX_ROOM {
        id
    } else {
        format!("{prefix}{kind}:{:016x}", fnv1a64(name.as_bytes()))
    }
}

/// FNV-1a, 64 bits: stable across versions and machines (the policy and the clients must
/// agree on it).
fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_start_with_their_stages_prefix_and_name_the_client() {
        assert_eq!(stub("hello", "alice", "env1"), "hello:alice:stub:env1");
        assert_eq!(
            dev("hello", "alice", "alice-1a2b"),
            "hello:alice:dev:alice-1a2b"
        );
        assert!(stub("hello", "alice", "e").starts_with(&stage_prefix("hello", "alice")));
    }

    #[test]
    fn one_stages_prefix_is_never_the_start_of_anothers_ids() {
        // With `-` as the separator, app "a-b" stage "c" and app "a" stage "b-c" would share
        // a prefix; names cannot hold ':'.
        assert_ne!(stage_prefix("a-b", "c"), stage_prefix("a", "b-c"));
        assert!(!stub("a", "b-c", "x").starts_with(&stage_prefix("a-b", "c")));
        assert!(!stub("a", "bc", "x").starts_with(&stage_prefix("a", "b")));
    }

    #[test]
    fn the_longest_names_still_give_ids_within_iot_cores_limit_with_room_for_lanes() {
        let long = "n".repeat(64);
        for id in [stub(&long, &long, &long), dev(&long, &long, &long)] {
            assert!(id.len() + LANE_SUFFIX_ROOM <= MAX_CLIENT_ID_BYTES, "{id}");
            assert!(id.starts_with(&stage_prefix(&long, &long)));
        }
        // Different long names stay different.
        let other = "m".repeat(64);
        assert_ne!(stub(&long, &long, &long), stub(&long, &long, &other));
        assert_ne!(stage_prefix(&long, &long), stage_prefix(&long, &other));
    }
}
