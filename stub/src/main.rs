//! The Lambda custom runtime `bootstrap` that stands in for a function and forwards each
//! invocation over the bridge. The forwarding loop is not built yet (issue 3): until then the
//! binary refuses to start with a clear message, so that nobody deploys it by mistake.

fn main() {
    eprintln!(
        "bootstrap: the live stub speaks bridge protocol v{} but its Runtime API loop is not \
         implemented yet; do not deploy this build",
        bridge::PROTOCOL_VERSION
    );
    std::process::exit(2);
}
