//! Attach records: what `live attach` found before changing a function (its configuration,
//! and for an OS-only runtime its code), kept in the stage's bucket under `attach/` (outside
//! the payloads' expiry) before anything is changed, so that `live detach` can give the
//! function back exactly as it was even after an attach killed between its steps.

use crate::aws::{is_not_found, Failure};
use aws_sdk_lambda::types::FunctionConfiguration;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The prefix of every attach record's key.
pub const PREFIX: &str = "attach/";

/// How the stub was put in front of a function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum How {
    /// A managed runtime: the `live` layer and `AWS_LAMBDA_EXEC_WRAPPER`.
    Layer,
    /// An OS-only runtime: the code replaced by the stub, the original kept inside it.
    Code,
}

/// What attach changes on a function, as it was before.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Original {
    pub runtime: Option<String>,
    pub handler: Option<String>,
    pub role: String,
    pub timeout: i32,
    pub memory: i32,
    pub description: String,
    pub env: BTreeMap<String, String>,
    /// Layer version ARNs, in order.
    pub layers: Vec<String>,
    pub code_sha256: String,
}

impl Original {
    /// From Lambda's configuration of the function.
    pub fn of(config: &FunctionConfiguration) -> Original {
        Original {
            runtime: config.runtime().map(|r| r.as_str().to_owned()),
            handler: config.handler().map(str::to_owned),
            role: config.role().unwrap_or_default().to_owned(),
            timeout: config.timeout().unwrap_or(3),
            memory: config.memory_size().unwrap_or(128),
            description: config.description().unwrap_or_default().to_owned(),
            env: config
                .environment()
                .and_then(|e| e.variables())
                .map(|v| v.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                .unwrap_or_default(),
            layers: config
                .layers()
                .iter()
                .filter_map(|l| l.arn().map(str::to_owned))
                .collect(),
            code_sha256: config.code_sha256().unwrap_or_default().to_owned(),
        }
    }
}

/// One attached function's record.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    /// Lambda's function name.
    pub function: String,
    pub arn: String,
    /// Seconds since the epoch.
    pub attached_at: u64,
    pub how: How,
    pub original: Original,
    /// The key of the function's own code zip in the bucket (`How::Code`).
    pub code_key: Option<String>,
    /// The role's name, and the inline policy attach adds to it.
    pub role_name: String,
    pub policy_name: String,
}

/// The record's key for `function`.
pub fn key(function: &str) -> String {
    format!("{PREFIX}{function}.json")
}

/// The key of `function`'s saved code.
pub fn code_key(function: &str) -> String {
    format!("{PREFIX}{function}.zip")
}

/// Where attach puts the stub's zip for Lambda to read (deleted once Lambda has it).
pub fn stub_code_key(function: &str) -> String {
    format!("{PREFIX}{function}.stub.zip")
}

/// The record of `function`, if there is one.
pub async fn read(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    function: &str,
) -> anyhow::Result<Option<Record>> {
    let Some(bytes) = get(s3, bucket, &key(function)).await? else {
        return Ok(None);
    };
    let record = serde_json::from_slice(&bytes).map_err(|e| {
        anyhow::anyhow!(
            "the attach record s3://{bucket}/{} is not readable ({e}): fix or delete it by hand",
            key(function)
        )
    })?;
    Ok(Some(record))
}

/// Save `record` (before anything of the function is changed).
pub async fn write(s3: &aws_sdk_s3::Client, bucket: &str, record: &Record) -> anyhow::Result<()> {
    let body = serde_json::to_vec_pretty(record)?;
    put(s3, bucket, &key(&record.function), body, "application/json").await
}

/// The functions with a record in the bucket.
pub async fn list(s3: &aws_sdk_s3::Client, bucket: &str) -> anyhow::Result<Vec<String>> {
    let mut names = Vec::new();
    let mut pages = s3
        .list_objects_v2()
        .bucket(bucket)
        .prefix(PREFIX)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = match page {
            Ok(page) => page,
            Err(e) if is_not_found(&e) => return Ok(names),
            Err(e) => {
                return Err(Failure::of("s3:ListBucket", &format!("bucket {bucket}"), e).into())
            }
        };
        for object in page.contents() {
            if let Some(name) = object
                .key()
                .and_then(|k| k.strip_prefix(PREFIX))
                .and_then(|k| k.strip_suffix(".json"))
            {
                names.push(name.to_owned());
            }
        }
    }
    Ok(names)
}

/// An object's bytes, `None` if it does not exist.
pub async fn get(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
) -> anyhow::Result<Option<Vec<u8>>> {
    match s3.get_object().bucket(bucket).key(key).send().await {
        Ok(out) => Ok(Some(out.body.collect().await?.into_bytes().to_vec())),
        Err(e) if is_not_found(&e) => Ok(None),
        Err(e) => Err(Failure::of("s3:GetObject", &format!("s3://{bucket}/{key}"), e).into()),
    }
}

/// Put an object.
pub async fn put(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    body: Vec<u8>,
    content_type: &str,
) -> anyhow::Result<()> {
    s3.put_object()
        .bucket(bucket)
        .key(key)
        .content_type(content_type)
        .body(body.into())
        .send()
        .await
        .map_err(|e| Failure::of("s3:PutObject", &format!("s3://{bucket}/{key}"), e))?;
    Ok(())
}

/// Delete an object (gone already is fine).
pub async fn delete(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) -> anyhow::Result<()> {
    match s3.delete_object().bucket(bucket).key(key).send().await {
        Ok(_) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(Failure::of("s3:DeleteObject", &format!("s3://{bucket}/{key}"), e).into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_reads_back_as_written_and_lives_outside_the_payloads_expiry() {
        let record = Record {
            function: "api".into(),
            arn: "arn:aws:lambda:us-east-1:1:function:api".into(),
            attached_at: 1,
            how: How::Code,
            original: Original {
                runtime: Some("provided.al2023".into()),
                handler: Some("bootstrap".into()),
                role: "arn:aws:iam::1:role/r".into(),
                timeout: 3,
                memory: 128,
                description: String::new(),
                env: BTreeMap::from([("A".into(), "1".into())]),
                layers: vec![],
                code_sha256: "abc=".into(),
            },
            code_key: Some(code_key("api")),
            role_name: "r".into(),
            policy_name: "live-hello-ci".into(),
        };
        let text = serde_json::to_vec(&record).unwrap();
        let back: Record = serde_json::from_slice(&text).unwrap();
        assert_eq!(back.original, record.original);
        assert_eq!(back.how, How::Code);
        assert!(!key("api").starts_with(super::super::bucket::PAYLOAD_PREFIX));
    }
}
