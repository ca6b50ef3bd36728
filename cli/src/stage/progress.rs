//! What `live deploy` says while it works: one line per step on stderr (`  role NAME:
//! creating`), so that a slow call shows where it is, and the results on stdout.

/// One resource being deployed: every line it says names it.
#[derive(Debug, Clone)]
pub struct Step {
    what: String,
}

impl Step {
    /// A step for `what` (`function hello-ci-http`).
    pub fn new(what: impl Into<String>) -> Step {
        Step { what: what.into() }
    }

    /// Say what the step is doing now.
    pub fn say(&self, doing: &str) {
        eprintln!("  {}: {doing}", self.what);
    }

    /// Say how it ended: created, unchanged, or what changed.
    pub fn done(&self, created: bool, changes: &[String]) {
        if created {
            self.say("created");
        } else if changes.is_empty() {
            self.say("unchanged");
        } else {
            self.say(&format!("updated: {}", changes.join("; ")));
        }
    }
}
