//! The `live` layer for attached functions of managed runtimes: the stub at
//! `/opt/live/bootstrap` and the exec wrapper at `/opt/live-wrapper` (`live-wrapper.sh`),
//! published once per content in the stage's layer (a version whose `CodeSha256` matches is
//! reused).

use super::package::Package;
use super::progress::Step;
use crate::aws::{is_not_found, Failure};
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::LayerVersionContentInput;

/// The exec wrapper, as Lambda finds it: `AWS_LAMBDA_EXEC_WRAPPER`'s value.
pub const WRAPPER_PATH: &str = "/opt/live-wrapper";

/// The wrapper script.
pub const WRAPPER: &str = include_str!("live-wrapper.sh");

/// The layer's zip: the wrapper and the stub, both executable.
pub fn zip(stub: &[u8]) -> anyhow::Result<Package> {
    Package::of_entries(
        &[
            ("live-wrapper", WRAPPER.as_bytes(), 0o755),
            ("live/bootstrap", stub, 0o755),
        ],
        None,
    )
}

/// Every version of layer `name` (none when it does not exist), all pages.
async fn versions(
    lambda: &aws_sdk_lambda::Client,
    name: &str,
) -> anyhow::Result<Vec<aws_sdk_lambda::types::LayerVersionsListItem>> {
    let mut all = Vec::new();
    let mut pages = lambda
        .list_layer_versions()
        .layer_name(name)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        match page {
            Ok(page) => all.extend(page.layer_versions.unwrap_or_default()),
            Err(e) if is_not_found(&e) => break,
            Err(e) => {
                return Err(
                    Failure::of("lambda:ListLayerVersions", &format!("layer {name}"), e).into(),
                )
            }
        }
    }
    Ok(all)
}

/// The ARN of a version of layer `name` holding `package`: an existing one with the same
/// content, else a new one.
pub async fn ensure(
    lambda: &aws_sdk_lambda::Client,
    name: &str,
    package: &Package,
    step: &Step,
) -> anyhow::Result<String> {
    let sha = package.code_sha256();
    let what = format!("layer {name}");
    for version in versions(lambda, name).await? {
        let got = lambda
            .get_layer_version()
            .layer_name(name)
            .version_number(version.version)
            .send()
            .await
            .map_err(|e| Failure::of("lambda:GetLayerVersion", &what, e))?;
        if got.content().and_then(|c| c.code_sha256()) == Some(sha.as_str()) {
            if let Some(arn) = got.layer_version_arn() {
                return Ok(arn.to_owned());
            }
        }
    }
    step.say("publishing a version");
    let out = lambda
        .publish_layer_version()
        .layer_name(name)
        .description(
            "live: the stub and its exec wrapper (AWS_LAMBDA_EXEC_WRAPPER=/opt/live-wrapper)",
        )
        .content(
            LayerVersionContentInput::builder()
                .zip_file(Blob::new(package.bytes.clone()))
                .build(),
        )
        .send()
        .await
        .map_err(|e| Failure::of("lambda:PublishLayerVersion", &what, e))?;
    out.layer_version_arn()
        .map(str::to_owned)
        .ok_or_else(|| anyhow::anyhow!("PublishLayerVersion answered without an ARN"))
}

/// Delete every version of layer `name` (`live remove`); returns how many.
pub async fn delete_all(lambda: &aws_sdk_lambda::Client, name: &str) -> anyhow::Result<usize> {
    let what = format!("layer {name}");
    let versions = versions(lambda, name).await?;
    for version in &versions {
        lambda
            .delete_layer_version()
            .layer_name(name)
            .version_number(version.version)
            .send()
            .await
            .map_err(|e| Failure::of("lambda:DeleteLayerVersion", &what, e))?;
    }
    Ok(versions.len())
}
