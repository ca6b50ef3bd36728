//! `live cloud --iot --deployed`: the stage's functions as the Lambda API reports them (the
//! ones `live deploy` made: found by the stage's tags), each run with the environment,
//! timeout and memory Lambda holds for it, and only if the stub here is the code Lambda holds
//! (`CodeSha256`). The emulator then runs what the cloud would, against its IoT Core
//! stand-in.

use crate::aws::Failure;
use crate::config::{Function, Project};
use anyhow::bail;
use std::collections::BTreeMap;
use std::path::Path;

/// The stage's deployed functions under their Lambda names, as live.toml functions the
/// emulator can run with the stub at `stub`.
pub async fn functions(
    sdk: &aws_config::SdkConfig,
    project: &Project,
    stub: &Path,
) -> anyhow::Result<BTreeMap<String, Function>> {
    let local = crate::stage::package::Package::of_stub(stub)?.code_sha256();
    let lambda = aws_sdk_lambda::Client::new(sdk);
    let mut functions = BTreeMap::new();
    let stage_tags = crate::stage::stage_tags(&project.app, &project.stage);
    for name in crate::stage::functions_of_stage(&lambda, &stage_tags).await? {
        let what = format!("function {name}");
        let config = lambda
            .get_function_configuration()
            .function_name(&name)
            .send()
            .await
            .map_err(|e| Failure::of("lambda:GetFunctionConfiguration", &what, e))?;
        let deployed = config.code_sha256().unwrap_or_default();
        if deployed != local {
            bail!(
                "{what}'s code (CodeSha256 {deployed}) is not the stub {} ({local}): run \
                 `live deploy` with this stub, or name the deployed one with --stub",
                stub.display()
            );
        }
        let env = config
            .environment()
            .and_then(|e| e.variables())
            .map(|v| v.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        let function = Function {
            env,
            timeout: config
                .timeout()
                .and_then(|t| u64::try_from(t).ok())
                .unwrap_or(3),
            memory: config
                .memory_size()
                .and_then(|m| u32::try_from(m).ok())
                .unwrap_or(128),
            ..Function::default()
        };
        functions.insert(name, function);
    }
    if functions.is_empty() {
        bail!(
            "no function of app {} stage {} is deployed in this account and region: run \
             `live deploy` first (or pass --stage)",
            project.app,
            project.stage
        );
    }
    Ok(functions)
}
