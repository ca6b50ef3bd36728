//! A function as the local hosts run it: built ([`build`]: one `cargo build` for the Rust
//! functions, `build` commands for others) and launched as Lambda launches a runtime
//! ([`launch`]), its role's credentials served as containers get theirs ([`credentials`]).
//! Both `live cloud --direct` and `live dev`'s workers use it; it uses neither.

pub mod build;
pub mod credentials;
pub mod debug_env;
pub mod launch;

pub use build::{build_some, BuildFailure};
pub use credentials::{CredentialsEndpoint, Grant};
pub use launch::{handler_name, lambda_env, runtime_command, Deployed, Launch, REGION};
