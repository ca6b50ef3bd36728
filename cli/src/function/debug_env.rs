//! Debug mode's contract with whatever launches a function's worker: the loopback port of its
//! Runtime API (`debug_port`, or one derived from the name, the same every run) and the
//! environment the worker starts with, as `live dev --debug` writes it to `.live/debug/FN.env`
//! and `live ide` puts it in editors' run configurations.

use super::{runtime_command, Deployed, Launch};
use crate::config::Function;
use std::net::SocketAddr;
use std::path::Path;

/// The first of the ports debug mode derives from function names.
const PORT_BASE: u16 = 19_000;
/// How many ports names are spread over.
const PORT_SPAN: u16 = 1_000;

/// The loopback port of function `name`'s Runtime API in debug mode.
pub fn port(name: &str, config: &Function) -> u16 {
    config.debug_port.unwrap_or_else(|| {
        let mut hash: u32 = 0x811c_9dc5;
        for byte in name.bytes() {
            hash ^= u32::from(byte);
            hash = hash.wrapping_mul(0x0100_0193);
        }
        PORT_BASE + (hash % u32::from(PORT_SPAN)) as u16
    })
}

/// Where `live dev --debug` writes function `name`'s environment, relative to the project's
/// folder.
pub fn env_file(name: &str) -> std::path::PathBuf {
    Path::new(".live").join("debug").join(format!("{name}.env"))
}

/// The address of that Runtime API.
pub fn addr(name: &str, config: &Function) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port(name, config)))
}

/// The variables the debugged worker of `name` starts with (beside its launcher's own), for
/// a worker run from `dir`.
pub fn environment(name: &str, config: &Function, dir: &Path) -> Vec<(String, String)> {
    let launch = Launch {
        program: name.into(),
        args: Vec::new(),
        dir: dir.to_path_buf(),
    };
    let env_id = format!("debug-{name}");
    let cmd = runtime_command(
        name,
        config,
        &launch,
        &env_id,
        addr(name, config),
        Deployed::default(),
    );
    cmd.as_std()
        .get_envs()
        .filter_map(|(key, value)| {
            value.map(|v| {
                (
                    key.to_string_lossy().into_owned(),
                    v.to_string_lossy().into_owned(),
                )
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_the_same_every_run_and_debug_port_wins() {
        let f = Function::default();
        assert_eq!(port("hello", &f), port("hello", &f));
        assert!((PORT_BASE..PORT_BASE + PORT_SPAN).contains(&port("hello", &f)));
        let pinned = Function {
            debug_port: Some(9_123),
            ..Function::default()
        };
        assert_eq!(port("hello", &pinned), 9_123);
        let env = environment("hello", &pinned, Path::new("/p"));
        assert!(env.contains(&("AWS_LAMBDA_RUNTIME_API".into(), "127.0.0.1:9123".into())));
    }
}
