//! `live attach` puts the stub in front of functions `live` did not create, touching nothing
//! else, and `live detach` gives them back exactly as they were. Managed runtimes get the
//! `live` layer and `AWS_LAMBDA_EXEC_WRAPPER`; OS-only runtimes (`provided.*`) get the stub as
//! their code with their own code kept inside it; container images are refused. Each step
//! comes after the attach record is saved, so a detach after an attach killed anywhere still
//! restores the original.

use super::package::Package;
use super::progress::Step;
use super::record::{self, How, Original, Record};
use super::{function, layer, names, policy, Stage, StageArgs, StubArgs};
use crate::aws::{is_not_found, Failure};
use anyhow::{bail, Context};
use aws_sdk_lambda::types::{Environment, PackageType};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Options of `live attach`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  live attach my-stack-Api-1A2B3C=api    # serve Lambda's my-stack-Api-1A2B3C as live.toml's `api`\n  live attach api --stage alice          # a function named as in live.toml\n  live detach --all                      # give every attached function back\n\nThe function's configuration (and an OS-only runtime's code) is saved in the stage's bucket\nbefore anything changes; `live detach` restores it exactly.\n\nExit codes: 0 done, 1 other errors, 2 bad command line, 3 no AWS credentials or region,\n4 access denied, 5 function not found, 6 AWS unreachable."
)]
pub struct AttachArgs {
    /// Lambda functions (names or ARNs), each optionally `=LOCAL`: the live.toml function
    /// that serves it (default: the one of the same name).
    #[arg(required = true)]
    pub functions: Vec<String>,
    #[command(flatten)]
    pub stage: StageArgs,
    #[command(flatten)]
    pub stub: StubArgs,
}

/// Options of `live detach`.
#[derive(Debug, clap::Args)]
pub struct DetachArgs {
    /// Lambda functions to give back (as attached).
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    pub functions: Vec<String>,
    /// Every function attached to the stage.
    #[arg(long)]
    pub all: bool,
    #[command(flatten)]
    pub stage: StageArgs,
}

/// The variable that names the exec wrapper.
const EXEC_WRAPPER: &str = "AWS_LAMBDA_EXEC_WRAPPER";
/// Lambda's most layers per function.
const MAX_LAYERS: usize = 5;
/// The folder of an OS-only function's own code inside the stub's zip.
const ORIGINAL_FOLDER: &str = "live-original";

/// `live attach`.
pub async fn attach(args: AttachArgs) -> anyhow::Result<()> {
    let stage = Stage::open(&args.stage).await?;
    stage.banner("attach");
    attach_functions(
        &stage,
        &args.functions,
        args.stub.stub.clone(),
        args.stub.debug,
    )
    .await?;
    eprintln!(
        "live attach: done. `live dev --aws` serves them; `live detach --all` gives them back."
    );
    Ok(())
}

/// Attach `functions` (`FN` or `FN=LOCAL`) to the stage, one after the other.
pub async fn attach_functions(
    stage: &Stage,
    functions: &[String],
    stub: Option<PathBuf>,
    debug: bool,
) -> anyhow::Result<()> {
    let stub = super::deploy::Stub::find(stub)?;
    let endpoint = stage.endpoint().await?;
    stage.ensure_bucket().await?;
    let mut layer_arn = None;
    for given in functions {
        let (lambda_name, local) = split(given);
        if !stage.project.functions.contains_key(local) {
            eprintln!(
                "  note: live.toml has no function `{local}`: `live dev` will not serve \
                 {lambda_name} until it has one (or attach it as {lambda_name}=LOCAL)"
            );
        }
        let step = Step::new(format!("function {lambda_name}"));
        attach_one(
            stage,
            lambda_name,
            local,
            &endpoint,
            &stub,
            &mut layer_arn,
            debug,
            &step,
        )
        .await
        .with_context(|| format!("attaching {lambda_name}"))?;
    }
    Ok(())
}

/// The Lambda function an attach argument names (`FN` of `FN=LOCAL`), and the live.toml
/// function serving it.
pub fn split(given: &str) -> (&str, &str) {
    let (name, local) = given.split_once('=').unwrap_or((given, given));
    let lambda = names::lambda_name(name);
    (lambda, if local == name { lambda } else { local })
}

/// `live detach`.
pub async fn detach(args: DetachArgs) -> anyhow::Result<()> {
    let stage = Stage::open(&args.stage).await?;
    stage.banner("detach");
    let functions = if args.all {
        record::list(&stage.s3, &stage.bucket).await?
    } else {
        args.functions
            .iter()
            .map(|f| names::lambda_name(f).to_owned())
            .collect()
    };
    if functions.is_empty() {
        eprintln!("live detach: no function is attached to this stage");
    }
    detach_functions(&stage, &functions).await
}

/// Give `functions` back (those not attached are skipped).
pub async fn detach_functions(stage: &Stage, functions: &[String]) -> anyhow::Result<()> {
    for name in functions {
        detach_one(stage, name).await?;
    }
    Ok(())
}

/// The functions attached to the stage, with when each was attached (seconds since the
/// epoch).
pub async fn attached(stage: &Stage) -> anyhow::Result<Vec<(String, u64)>> {
    let mut found = Vec::new();
    for name in record::list(&stage.s3, &stage.bucket).await? {
        if let Some(record) = record::read(&stage.s3, &stage.bucket, &name).await? {
            found.push((name, record.attached_at));
        }
    }
    Ok(found)
}

#[allow(clippy::too_many_arguments)]
async fn attach_one(
    stage: &Stage,
    name: &str,
    local: &str,
    endpoint: &str,
    stub: &super::deploy::Stub,
    layer_arn: &mut Option<String>,
    debug: bool,
    step: &Step,
) -> anyhow::Result<()> {
    let what = format!("function {name}");
    let out = stage
        .lambda
        .get_function()
        .function_name(name)
        .send()
        .await
        .map_err(|e| Failure::of("lambda:GetFunction", &what, e))?;
    let config = out
        .configuration()
        .context("GetFunction answered without a configuration")?;
    let name = config.function_name().unwrap_or(name).to_owned();
    let (record, original_zip) = match record::read(&stage.s3, &stage.bucket, &name).await? {
        Some(record) => {
            step.say("already attached: applying again from its attach record");
            let zip = match &record.code_key {
                Some(key) => Some(
                    record::get(&stage.s3, &stage.bucket, key)
                        .await?
                        .with_context(|| {
                            format!("the saved code s3://{}/{key} is missing", stage.bucket)
                        })?,
                ),
                None => None,
            };
            (record, zip)
        }
        None => {
            if config.package_type() == Some(&PackageType::Image) {
                bail!(
                    "{what} is a container image: live attaches zip functions only (deploy \
                     the stub with `live deploy` instead, or attach a zip function)"
                );
            }
            let runtime = config
                .runtime()
                .map(|r| r.as_str().to_owned())
                .context("the function has no runtime")?;
            if let Some(error) = config.environment().and_then(|e| e.error()) {
                bail!(
                    "{what}'s environment cannot be read ({}: {}): attach must keep it; allow \
                     kms:Decrypt on the function's key, then attach",
                    error.error_code().unwrap_or("Error"),
                    error.message().unwrap_or_default()
                );
            }
            let vars = config.environment().and_then(|e| e.variables());
            if let (Some(app), Some(stage_name)) = (
                vars.and_then(|v| v.get("LIVE_APP")),
                vars.and_then(|v| v.get("LIVE_STAGE")),
            ) {
                bail!(
                    "{what} already runs live's stub (app {app}, stage {stage_name}) and this \
                     stage holds no attach record of it: `live detach {name} --stage \
                     {stage_name}` gives it back if it was attached there; one made by `live \
                     deploy` is the stage's own"
                );
            }
            let wanted = stub.architecture;
            let has: Vec<&str> = config.architectures().iter().map(|a| a.as_str()).collect();
            if !has.is_empty() && !has.contains(&wanted) {
                bail!(
                    "{what} runs on {}, and the stub is built for {wanted}: build the stub for \
                     the function's architecture and pass it with --stub",
                    has.join(", ")
                );
            }
            if on_amazon_linux_2(&runtime) {
                bail!(
                    "{what} runs {runtime}, on Amazon Linux 2, whose glibc (2.26) is older than \
                     the stub needs (2.34): live attaches functions on Amazon Linux 2023 \
                     runtimes (python3.12+, nodejs20.x+, java21, dotnet8, ruby3.3+, \
                     provided.al2023); move the function to one, or deploy the stage with \
                     `live deploy`"
                );
            }
            let original = Original::of(config);
            let how = if runtime.starts_with("provided") {
                How::Code
            } else {
                How::Layer
            };
            if how == How::Layer {
                if let Some(wrapper) = original.env.get(EXEC_WRAPPER) {
                    bail!(
                        "{what} already runs under an exec wrapper ({EXEC_WRAPPER}={wrapper}): \
                         live cannot chain it yet; remove it, or attach another function"
                    );
                }
                if original.layers.len() >= MAX_LAYERS {
                    bail!(
                        "{what} has {MAX_LAYERS} layers, Lambda's most: live needs one more; \
                         remove a layer, then attach"
                    );
                }
            }
            function::check_environment(
                &what,
                &attached_env(&original.env, how, stage.stub_env(local, endpoint)),
            )?;
            let zip = match how {
                How::Code => {
                    step.say("saving its code");
                    Some(save_code(stage, &name, &out, &original).await?)
                }
                How::Layer => None,
            };
            let role_name = original
                .role
                .rsplit('/')
                .next()
                .unwrap_or_default()
                .to_owned();
            let record = Record {
                function: name.clone(),
                arn: config.function_arn().unwrap_or_default().to_owned(),
                attached_at: bridge::container_credentials::now_secs(),
                how,
                code_key: zip.as_ref().map(|_| record::code_key(&name)),
                original,
                role_name,
                policy_name: names::attach_policy(&stage.project.app, &stage.project.stage, &name),
            };
            record::write(&stage.s3, &stage.bucket, &record).await?;
            (record, zip)
        }
    };
    fault_point("record");

    // The stage's IoT permissions, as a policy of their own on the function's role.
    let scope = policy::Scope {
        app: &stage.project.app,
        stage: &stage.project.stage,
        region: &stage.region,
        account: &stage.account,
        function: &name,
        bucket: &stage.bucket,
    };
    stage
        .iam
        .put_role_policy()
        .role_name(&record.role_name)
        .policy_name(&record.policy_name)
        .policy_document(policy::stage(&scope).to_string())
        .send()
        .await
        .map_err(|e| {
            Failure::of(
                "iam:PutRolePolicy",
                &format!("role {}", record.role_name),
                e,
            )
        })?;
    fault_point("policy");

    // A function another tool just deployed may still be updating: Lambda refuses a change
    // then (409).
    function::wait_until_ready(&stage.lambda, &name, step).await?;
    let env = attached_env(
        &record.original.env,
        record.how,
        stage.stub_env(local, endpoint),
    );
    let mut layers = record.original.layers.clone();
    match record.how {
        How::Layer => {
            let arn = match layer_arn {
                Some(arn) => arn.clone(),
                None => {
                    let name = names::layer(&stage.project.app, &stage.project.stage);
                    let layer_step = Step::new(format!("layer {name}"));
                    let arn = layer::ensure(
                        &stage.lambda,
                        &name,
                        &layer::zip(&stub.binary)?,
                        &layer_step,
                    )
                    .await?;
                    *layer_arn = Some(arn.clone());
                    arn
                }
            };
            layers.push(arn);
        }
        How::Code => {
            let original = original_zip.context("no saved code")?;
            let code = Package::of_entries(
                &[("bootstrap", &stub.binary, 0o755)],
                Some((&original, ORIGINAL_FOLDER)),
            )?;
            if config.code_sha256() != Some(code.code_sha256().as_str()) {
                step.say("replacing its code with the stub");
                // Through the stage's bucket (same region): Lambda takes 50 MB zipped as a
                // direct upload, and the stub with the function's own code inside may be more.
                let key = record::stub_code_key(&name);
                record::put(
                    &stage.s3,
                    &stage.bucket,
                    &key,
                    code.bytes.clone(),
                    "application/zip",
                )
                .await?;
                function::code_from_bucket(&stage.lambda, &name, &stage.bucket, &key, step).await?;
                record::delete(&stage.s3, &stage.bucket, &key).await?;
            }
        }
    }
    fault_point("code");
    let timeout = if debug { 900 } else { record.original.timeout };
    step.say("pointing it at the stub");
    update_configuration(stage, &name, env, layers, timeout).await?;
    function::wait_until_ready(&stage.lambda, &name, step).await?;
    step.say(match record.how {
        How::Layer => "attached (layer and exec wrapper)",
        How::Code => "attached (the stub in front of its own code)",
    });
    Ok(())
}

/// An attached function's environment: its own, the stub's `LIVE_*`, and for a managed
/// runtime the exec wrapper.
fn attached_env(
    own: &BTreeMap<String, String>,
    how: How,
    stub_env: BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut env = own.clone();
    env.extend(stub_env);
    if how == How::Layer {
        env.insert(EXEC_WRAPPER.to_owned(), layer::WRAPPER_PATH.to_owned());
    }
    env
}

/// Lambda runtimes whose execution environment is Amazon Linux 2 (or older): their glibc is
/// too old for the stub.
fn on_amazon_linux_2(runtime: &str) -> bool {
    matches!(
        runtime,
        "provided"
            | "provided.al2"
            | "python3.7"
            | "python3.8"
            | "python3.9"
            | "python3.10"
            | "python3.11"
            | "nodejs14.x"
            | "nodejs16.x"
            | "nodejs18.x"
            | "java8"
            | "java8.al2"
            | "java11"
            | "java17"
            | "ruby2.7"
            | "ruby3.2"
            | "dotnet6"
            | "dotnet7"
            | "go1.x"
    )
}

/// Download the function's code from Lambda, check it is the deployed code, and keep it in
/// the stage's bucket.
async fn save_code(
    stage: &Stage,
    name: &str,
    out: &aws_sdk_lambda::operation::get_function::GetFunctionOutput,
    original: &Original,
) -> anyhow::Result<Vec<u8>> {
    let location = out
        .code()
        .and_then(|c| c.location())
        .context("GetFunction gave no code location")?;
    let url = code_url(location);
    let zip = crate::url_request::fetch(&url)
        .await
        .map_err(|e| anyhow::anyhow!("could not download the function's code: {e}"))?
        .to_vec();
    let zip = Package { bytes: zip };
    let sha = zip.code_sha256();
    if sha != original.code_sha256 {
        bail!(
            "the downloaded code's CodeSha256 {sha} is not the function's {}: nothing was \
             changed; try again",
            original.code_sha256
        );
    }
    record::put(
        &stage.s3,
        &stage.bucket,
        &record::code_key(name),
        zip.bytes.clone(),
        "application/zip",
    )
    .await?;
    Ok(zip.bytes)
}

/// Lambda's code location, or, with `LIVE_CODE_LOCATION_BASE` set (tests: moto's location
/// is an amazonaws.com URL nothing serves), the same path and query under that base.
fn code_url(location: &str) -> String {
    match std::env::var("LIVE_CODE_LOCATION_BASE") {
        Ok(base) if !base.is_empty() => {
            let path = location
                .split_once("://")
                .and_then(|(_, rest)| rest.find('/').map(|i| &rest[i..]))
                .unwrap_or("/");
            format!("{}{path}", base.trim_end_matches('/'))
        }
        _ => location.to_owned(),
    }
}

async fn update_configuration(
    stage: &Stage,
    name: &str,
    env: BTreeMap<String, String>,
    layers: Vec<String>,
    timeout: i32,
) -> anyhow::Result<()> {
    stage
        .lambda
        .update_function_configuration()
        .function_name(name)
        .environment(
            Environment::builder()
                .set_variables(Some(env.into_iter().collect()))
                .build(),
        )
        .set_layers(Some(layers))
        .timeout(timeout)
        .send()
        .await
        .map_err(|e| {
            Failure::of(
                "lambda:UpdateFunctionConfiguration",
                &format!("function {name}"),
                e,
            )
        })?;
    Ok(())
}

/// Give function `name` back as its attach record holds it, then forget the record.
pub(super) async fn detach_one(stage: &Stage, name: &str) -> anyhow::Result<()> {
    let step = Step::new(format!("function {name}"));
    let Some(record) = record::read(&stage.s3, &stage.bucket, name).await? else {
        step.say("not attached (no attach record): nothing to do");
        return Ok(());
    };
    let what = format!("function {name}");
    let current = match stage
        .lambda
        .get_function_configuration()
        .function_name(name)
        .send()
        .await
    {
        Ok(config) => Some(config),
        Err(e) if is_not_found(&e) => None,
        Err(e) => return Err(Failure::of("lambda:GetFunctionConfiguration", &what, e).into()),
    };
    if let Some(current) = current {
        function::wait_until_ready(&stage.lambda, name, &step).await?;
        if let Some(key) = &record.code_key {
            if current.code_sha256() != Some(record.original.code_sha256.as_str()) {
                // Lambda reads the saved code from the bucket itself (no size limit of a
                // direct upload, no download here).
                step.say("restoring its code");
                function::code_from_bucket(&stage.lambda, name, &stage.bucket, key, &step).await?;
            }
        }
        step.say("restoring its configuration");
        update_configuration(
            stage,
            name,
            record.original.env.clone(),
            record.original.layers.clone(),
            record.original.timeout,
        )
        .await?;
        function::wait_until_ready(&stage.lambda, name, &step).await?;
    } else {
        step.say("the function no longer exists: forgetting its attach record");
    }
    match stage
        .iam
        .delete_role_policy()
        .role_name(&record.role_name)
        .policy_name(&record.policy_name)
        .send()
        .await
    {
        Ok(_) => {}
        Err(e) if is_not_found(&e) => {}
        Err(e) => {
            return Err(Failure::of(
                "iam:DeleteRolePolicy",
                &format!("role {}", record.role_name),
                e,
            )
            .into())
        }
    }
    if let Some(key) = &record.code_key {
        record::delete(&stage.s3, &stage.bucket, key).await?;
    }
    record::delete(&stage.s3, &stage.bucket, &record::key(name)).await?;
    step.say("detached: as it was before attach");
    Ok(())
}

/// Tests only: `LIVE_FAULT_AFTER=STEP` kills `live attach` right after that step (`record`,
/// `policy`, `code`), as a crash or a Ctrl-C there would.
fn fault_point(step: &str) {
    if std::env::var("LIVE_FAULT_AFTER").is_ok_and(|v| v == step) {
        eprintln!("live attach: killed after step {step} (LIVE_FAULT_AFTER)");
        std::process::abort();
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn runtimes_on_amazon_linux_2_are_told_apart_from_those_on_2023() {
        for old in [
            "python3.11",
            "nodejs18.x",
            "java17",
            "provided.al2",
            "ruby3.2",
        ] {
            assert!(super::on_amazon_linux_2(old), "{old}");
        }
        for new in [
            "python3.12",
            "python3.13",
            "nodejs20.x",
            "nodejs22.x",
            "java21",
            "dotnet8",
            "ruby3.3",
            "provided.al2023",
        ] {
            assert!(!super::on_amazon_linux_2(new), "{new}");
        }
    }
}
