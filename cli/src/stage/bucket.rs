//! The stage's payload bucket: events and responses too large for IoT Core's 512 KiB/s pass
//! through it (`bridge::s3`). Private (public access blocked), tagged with the stage, and
//! every object under `live/` expires after a day, whatever happens to `live dev`.

use super::progress::Step;
use crate::aws::{is_not_found, Failure};
use aws_sdk_s3::types::{
    BucketLifecycleConfiguration, BucketLocationConstraint, CreateBucketConfiguration,
    ExpirationStatus, LifecycleExpiration, LifecycleRule, LifecycleRuleFilter,
    PublicAccessBlockConfiguration, Tag, Tagging,
};
use aws_sdk_s3::Client;
use std::collections::BTreeMap;

/// The lifecycle rule's id, and the prefix it expires (every object key of `bridge::s3`).
pub const EXPIRY_RULE: &str = "live-payloads-expire";
pub const PAYLOAD_PREFIX: &str = "live/";
/// Objects live at most this many days (they are deleted once used; this catches the rest).
pub const EXPIRY_DAYS: i32 = 1;

/// Make bucket `name` in `region`; returns what changed (empty: nothing), `created` first.
pub async fn ensure(
    s3: &Client,
    name: &str,
    region: &str,
    tags: &BTreeMap<String, String>,
    step: &Step,
) -> anyhow::Result<(bool, Vec<String>)> {
    let what = format!("bucket {name}");
    let exists = exists(s3, name).await?;
    let mut changes = Vec::new();
    if !exists {
        step.say("creating");
        let mut create = s3.create_bucket().bucket(name);
        // us-east-1 is the one region that takes no location constraint.
        if region != "us-east-1" {
            create = create.create_bucket_configuration(
                CreateBucketConfiguration::builder()
                    .location_constraint(BucketLocationConstraint::from(region))
                    .build(),
            );
        }
        create
            .send()
            .await
            .map_err(|e| Failure::of("s3:CreateBucket", &what, e))?;
        s3.put_public_access_block()
            .bucket(name)
            .public_access_block_configuration(
                PublicAccessBlockConfiguration::builder()
                    .block_public_acls(true)
                    .ignore_public_acls(true)
                    .block_public_policy(true)
                    .restrict_public_buckets(true)
                    .build(),
            )
            .send()
            .await
            .map_err(|e| Failure::of("s3:PutBucketPublicAccessBlock", &what, e))?;
    }
    // Other rules someone added are kept: a lifecycle put replaces the whole set.
    let rules: Vec<LifecycleRule> = if exists {
        match s3
            .get_bucket_lifecycle_configuration()
            .bucket(name)
            .send()
            .await
        {
            Ok(out) => out.rules().to_vec(),
            Err(e) if is_not_found(&e) => Vec::new(),
            Err(e) => return Err(Failure::of("s3:GetLifecycleConfiguration", &what, e).into()),
        }
    } else {
        Vec::new()
    };
    let has_rule = rules.iter().any(is_expiry_rule);
    if !has_rule {
        let rule = LifecycleRule::builder()
            .id(EXPIRY_RULE)
            .status(ExpirationStatus::Enabled)
            .filter(
                LifecycleRuleFilter::builder()
                    .prefix(PAYLOAD_PREFIX)
                    .build(),
            )
            .expiration(LifecycleExpiration::builder().days(EXPIRY_DAYS).build())
            .build()?;
        s3.put_bucket_lifecycle_configuration()
            .bucket(name)
            .lifecycle_configuration(
                BucketLifecycleConfiguration::builder()
                    .rules(rule)
                    .build()?,
            )
            .send()
            .await
            .map_err(|e| Failure::of("s3:PutLifecycleConfiguration", &what, e))?;
        if exists {
            changes.push(format!("expiry rule ({EXPIRY_DAYS} day)"));
        }
    }
    let have = if exists {
        self::tags(s3, name).await?
    } else {
        BTreeMap::new()
    };
    if tags.iter().any(|(k, v)| have.get(k) != Some(v)) {
        let mut all = have.clone();
        all.extend(tags.clone());
        let set = all
            .iter()
            .map(|(k, v)| Tag::builder().key(k).value(v).build())
            .collect::<Result<Vec<_>, _>>()?;
        s3.put_bucket_tagging()
            .bucket(name)
            .tagging(Tagging::builder().set_tag_set(Some(set)).build()?)
            .send()
            .await
            .map_err(|e| Failure::of("s3:PutBucketTagging", &what, e))?;
        if exists {
            changes.push("tags".to_owned());
        }
    }
    Ok((!exists, changes))
}

/// Whether bucket `name` exists (and this account may see it: another error is an error,
/// never "no bucket").
pub async fn exists(s3: &Client, name: &str) -> anyhow::Result<bool> {
    match s3.head_bucket().bucket(name).send().await {
        Ok(_) => Ok(true),
        Err(e) if is_not_found(&e) || e.as_service_error().is_some_and(|s| s.is_not_found()) => {
            Ok(false)
        }
        Err(e) => Err(Failure::of("s3:ListBucket", &format!("bucket {name}"), e).into()),
    }
}

/// Bucket `name`'s tags (none set: empty).
pub async fn tags(s3: &Client, name: &str) -> anyhow::Result<BTreeMap<String, String>> {
    match s3.get_bucket_tagging().bucket(name).send().await {
        Ok(out) => Ok(out
            .tag_set()
            .iter()
            .map(|t| (t.key().to_owned(), t.value().to_owned()))
            .collect()),
        Err(e) if is_not_found(&e) => Ok(BTreeMap::new()),
        Err(e) => Err(Failure::of("s3:GetBucketTagging", &format!("bucket {name}"), e).into()),
    }
}

fn is_expiry_rule(rule: &LifecycleRule) -> bool {
    rule.id() == Some(EXPIRY_RULE)
        && rule.status() == &ExpirationStatus::Enabled
        && rule.filter().and_then(|f| f.prefix()) == Some(PAYLOAD_PREFIX)
        && rule
            .expiration()
            .and_then(|e| e.days())
            .is_some_and(|d| d == EXPIRY_DAYS)
}
