//! `live dev --attach FN[=LOCAL]`: functions another tool deployed, taken over once the
//! session is ready (`live attach`'s steps, while invocations are already served) and given
//! back when it stops; and on every `live dev --aws`, a note naming the functions an earlier
//! session left attached (a `live dev` that died), with what to do.

use super::output::Output;
use super::DevArgs;
use crate::stage::Stage;
use std::sync::Arc;

/// The stage `live dev` serves (its project, already loaded, in the account it joined IoT
/// Core with), for its attach records.
pub async fn open(
    project: &crate::config::Project,
    sdk: &aws_config::SdkConfig,
) -> anyhow::Result<Arc<Stage>> {
    Ok(Arc::new(Stage::new(project.clone(), sdk.clone()).await?))
}

/// Attach `functions` in the background, saying how it went.
pub fn start(
    stage: Arc<Stage>,
    functions: Vec<String>,
    args: &DevArgs,
    output: Arc<Output>,
) -> tokio::task::JoinHandle<()> {
    let stub = args.cloud.stub.clone();
    tokio::spawn(async move {
        match crate::stage::attach_functions(&stage, &functions, stub, false).await {
            Ok(()) => output.noteln(format_args!(
                "live dev: attached {}: their invocations come here until live dev stops",
                names(&functions).join(", ")
            )),
            Err(e) => output.noteln(format_args!(
                "live dev: could not attach ({e:#}); what was attached is given back when live dev stops"
            )),
        }
    })
}

/// Say which functions of the stage are attached without being asked for now (left by a
/// `live dev` that died), and how old each attachment is.
pub fn note_left_attached(stage: Arc<Stage>, asked: Vec<String>, output: Arc<Output>) {
    tokio::spawn(async move {
        let asked = names(&asked);
        let found = match crate::stage::attached(&stage).await {
            Ok(found) => found,
            Err(e) => {
                tracing::debug!("could not list the stage's attach records: {e:#}");
                return;
            }
        };
        let now = bridge::container_credentials::now_secs();
        let left: Vec<String> = found
            .into_iter()
            .filter(|(name, _)| !asked.contains(name))
            .map(|(name, at)| format!("{name} ({} ago)", age(now.saturating_sub(at))))
            .collect();
        if !left.is_empty() {
            output.noteln(format_args!(
                "live dev: still attached from an earlier session: {}; `live detach --all` gives \
                 them back, `live dev --attach FN` takes one over again",
                left.join(", ")
            ));
        }
    });
}

/// Give `functions` back.
pub async fn give_back(stage: &Stage, functions: &[String], output: &Output) {
    output.noteln(format_args!(
        "live dev: detaching {} (Ctrl-C again leaves them attached)",
        names(functions).join(", ")
    ));
    let lambda_names: Vec<String> = names(functions);
    match crate::stage::detach_functions(stage, &lambda_names).await {
        Ok(()) => output.noteln("live dev: detached: the functions are as they were"),
        Err(e) => output.noteln(format_args!(
            "live dev: could not detach ({e:#}): run `live detach --all` to give them back"
        )),
    }
}

/// The Lambda names of `FN[=LOCAL]` arguments.
fn names(functions: &[String]) -> Vec<String> {
    functions
        .iter()
        .map(|f| crate::stage::split(f).0.to_owned())
        .collect()
}

/// `90 s`, `5 min`, `3 h`, `2 d`.
fn age(secs: u64) -> String {
    match secs {
        0..120 => format!("{secs} s"),
        120..7_200 => format!("{} min", secs / 60),
        7_200..172_800 => format!("{} h", secs / 3_600),
        _ => format!("{} d", secs / 86_400),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn ages_read_in_the_unit_that_fits() {
        assert_eq!(super::age(5), "5 s");
        assert_eq!(super::age(600), "10 min");
        assert_eq!(super::age(3 * 3_600), "3 h");
        assert_eq!(super::age(3 * 86_400), "3 d");
    }
}
