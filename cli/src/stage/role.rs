//! One stage function's IAM role: trusted by Lambda, with the stage's inline policy
//! (`policy.rs`) and the stage's tags; created once, its documents put back only where they
//! differ from what IAM holds.

use super::names::ROLE_POLICY;
use super::progress::Step;
use crate::aws::{is_not_found, Failure};
use aws_sdk_iam::types::Tag;
use aws_sdk_iam::Client;
use serde_json::Value;
use std::collections::BTreeMap;

/// A role as deployed.
#[derive(Debug, Clone)]
pub struct DeployedRole {
    pub arn: String,
    pub created: bool,
    pub changes: Vec<String>,
}

/// The path every role of `live` is created under.
pub const PATH: &str = "/live/";

/// Make role `name` trusted by `trust`, holding `policy` inline, tagged `tags`.
pub async fn ensure(
    iam: &Client,
    name: &str,
    trust: &Value,
    policy: &Value,
    tags: &BTreeMap<String, String>,
    step: &Step,
) -> anyhow::Result<DeployedRole> {
    let what = format!("role {name}");
    let current = match iam.get_role().role_name(name).send().await {
        Ok(out) => out.role,
        Err(e) if is_not_found(&e) => None,
        Err(e) => return Err(Failure::of("iam:GetRole", &what, e).into()),
    };
    let mut changes = Vec::new();
    let (arn, created) = match current {
        None => {
            step.say("creating");
            let out = iam
                .create_role()
                .role_name(name)
                .path(PATH)
                .description("live: the stub's role (IoT bridge, payload bucket, logs)")
                .assume_role_policy_document(trust.to_string())
                .set_tags(Some(
                    tags.iter()
                        .map(|(k, v)| Tag::builder().key(k).value(v).build())
                        .collect::<Result<Vec<_>, _>>()?,
                ))
                .send()
                .await
                .map_err(|e| Failure::of("iam:CreateRole", &what, e))?;
            let arn = out.role.map(|r| r.arn).unwrap_or_default();
            (arn, true)
        }
        Some(role) => {
            let have = iam
                .list_role_tags()
                .role_name(name)
                .send()
                .await
                .map_err(|e| Failure::of("iam:ListRoleTags", &what, e))?;
            let tag = |key: &str| {
                have.tags()
                    .iter()
                    .find(|t| t.key() == key)
                    .map(|t| t.value())
            };
            if !super::names::carries_stage(tag, tags) {
                anyhow::bail!(
                    "{what} exists and is not this stage's (it lacks the stage's live:app and \
                     live:stage tags): live deploy never takes over what it did not create; \
                     delete or rename that role, or deploy another stage"
                );
            }
            if document(role.assume_role_policy_document()) != Some(trust.clone()) {
                iam.update_assume_role_policy()
                    .role_name(name)
                    .policy_document(trust.to_string())
                    .send()
                    .await
                    .map_err(|e| Failure::of("iam:UpdateAssumeRolePolicy", &what, e))?;
                changes.push("trust policy".to_owned());
            }
            (role.arn, false)
        }
    };
    let have = if created {
        None
    } else {
        match iam
            .get_role_policy()
            .role_name(name)
            .policy_name(ROLE_POLICY)
            .send()
            .await
        {
            Ok(out) => document(Some(&out.policy_document)),
            Err(e) if is_not_found(&e) => None,
            Err(e) => return Err(Failure::of("iam:GetRolePolicy", &what, e).into()),
        }
    };
    if have.as_ref() != Some(policy) {
        iam.put_role_policy()
            .role_name(name)
            .policy_name(ROLE_POLICY)
            .policy_document(policy.to_string())
            .send()
            .await
            .map_err(|e| Failure::of("iam:PutRolePolicy", &what, e))?;
        if !created {
            changes.push(format!("inline policy {ROLE_POLICY}"));
        }
    }
    Ok(DeployedRole {
        arn,
        created,
        changes,
    })
}

/// A policy document as IAM returns it (URL-encoded JSON), parsed.
fn document(text: Option<&str>) -> Option<Value> {
    let text = text?;
    let decoded = percent_encoding::percent_decode_str(text)
        .decode_utf8()
        .ok()?;
    serde_json::from_str(&decoded).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iams_url_encoded_documents_read_back_as_the_json_put() {
        let trust = super::super::policy::trust();
        let encoded: String = percent_encoding::utf8_percent_encode(
            &trust.to_string(),
            percent_encoding::NON_ALPHANUMERIC,
        )
        .to_string();
        assert_eq!(document(Some(&encoded)), Some(trust.clone()));
        // Not encoded (moto returns some documents as given): read as well.
        assert_eq!(document(Some(&trust.to_string())), Some(trust));
    }
}
