//! `live remove`: everything of the stage goes: attached functions given back first (their
//! attach records), then the functions and roles carrying the stage's tags, the stage's layer
//! and its bucket. Resources without the stage's tags are never touched. Idempotent.

use super::progress::Step;
use super::{layer, names, record, Stage, StageArgs};
use crate::aws::{is_not_found, Failure};

/// Options of `live remove`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Removes only what carries the stage's tags (live:app, live:stage) and the stage's\nattach records; run it again at any time.\n\nExit codes: 0 done, 1 other errors, 2 bad command line, 3 no AWS credentials or region,\n4 access denied, 6 AWS unreachable."
)]
pub struct RemoveArgs {
    #[command(flatten)]
    pub stage: StageArgs,
}

/// `live remove`.
pub async fn remove(args: RemoveArgs) -> anyhow::Result<()> {
    let stage = Stage::open(&args.stage).await?;
    stage.banner("remove");
    let mut removed = 0;

    // Attached functions first: they are given back, never deleted.
    // A bucket that cannot be seen is an error, not "no bucket": without its attach records,
    // attached functions would be left.
    let bucket_exists = super::bucket::exists(&stage.s3, &stage.bucket).await?;
    if bucket_exists {
        for name in record::list(&stage.s3, &stage.bucket).await? {
            super::attach::detach_one(&stage, &name).await?;
            removed += 1;
        }
    }

    // Functions with the stage's tags.
    let functions = super::function::of_stage(&stage.lambda, &stage.tags()).await?;
    for name in functions {
        let step = Step::new(format!("function {name}"));
        match stage
            .lambda
            .delete_function()
            .function_name(&name)
            .send()
            .await
        {
            Ok(_) => step.say("deleted"),
            Err(e) if is_not_found(&e) => step.say("already gone"),
            Err(e) => {
                return Err(
                    Failure::of("lambda:DeleteFunction", &format!("function {name}"), e).into(),
                )
            }
        }
        removed += 1;
    }

    // The stage's layer (attached functions' stub).
    let layer_name = names::layer(&stage.project.app, &stage.project.stage);
    let versions = layer::delete_all(&stage.lambda, &layer_name).await?;
    if versions > 0 {
        Step::new(format!("layer {layer_name}")).say(&format!("deleted ({versions} versions)"));
        removed += 1;
    }

    // Roles under live's path with the stage's tags.
    let mut roles = Vec::new();
    let mut pages = stage
        .iam
        .list_roles()
        .path_prefix(super::role::PATH)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| Failure::of("iam:ListRoles", "roles", e))?;
        roles.extend(page.roles().iter().map(|r| r.role_name().to_owned()));
    }
    for role in roles {
        let what = format!("role {role}");
        let tags = stage
            .iam
            .list_role_tags()
            .role_name(&role)
            .send()
            .await
            .map_err(|e| Failure::of("iam:ListRoleTags", &what, e))?;
        let tag = |key: &str| {
            tags.tags()
                .iter()
                .find(|t| t.key() == key)
                .map(|t| t.value())
        };
        if !stage.owns(tag) {
            continue;
        }
        let policies = stage
            .iam
            .list_role_policies()
            .role_name(&role)
            .send()
            .await
            .map_err(|e| Failure::of("iam:ListRolePolicies", &what, e))?;
        for policy in policies.policy_names() {
            stage
                .iam
                .delete_role_policy()
                .role_name(&role)
                .policy_name(policy)
                .send()
                .await
                .map_err(|e| Failure::of("iam:DeleteRolePolicy", &what, e))?;
        }
        stage
            .iam
            .delete_role()
            .role_name(&role)
            .send()
            .await
            .map_err(|e| Failure::of("iam:DeleteRole", &what, e))?;
        Step::new(what).say("deleted");
        removed += 1;
    }

    // The bucket, emptied first; only if it carries the stage's tags.
    if bucket_exists {
        let what = format!("bucket {}", stage.bucket);
        let tags = super::bucket::tags(&stage.s3, &stage.bucket).await?;
        if stage.owns(|key| tags.get(key).map(String::as_str)) {
            let mut keys = Vec::new();
            let mut pages = stage
                .s3
                .list_objects_v2()
                .bucket(&stage.bucket)
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|e| Failure::of("s3:ListBucket", &what, e))?;
                keys.extend(
                    page.contents()
                        .iter()
                        .filter_map(|o| o.key().map(str::to_owned)),
                );
            }
            for key in &keys {
                record::delete(&stage.s3, &stage.bucket, key).await?;
            }
            stage
                .s3
                .delete_bucket()
                .bucket(&stage.bucket)
                .send()
                .await
                .map_err(|e| Failure::of("s3:DeleteBucket", &what, e))?;
            Step::new(what).say(&format!("deleted ({} objects)", keys.len()));
            removed += 1;
        }
    }
    if removed == 0 {
        eprintln!("live remove: nothing of the stage is left");
    } else {
        eprintln!("live remove: done");
    }
    Ok(())
}
