//! The CLI's one door to AWS: configuration from `aws-config`'s default chain (environment,
//! profile, SSO; `--profile`, `--region`; `AWS_ENDPOINT_URL*` honoured), on an HTTPS client
//! built on ring, IoT Core's endpoint (`DescribeEndpoint`, `iot:Data-ATS`), and the
//! credentials the bridge signs its connections with.

mod failure;

pub use failure::{exit, exit_code, is_not_found, Failure};

use anyhow::Context;
use aws_config::{BehaviorVersion, SdkConfig};
use aws_credential_types::provider::ProvideCredentials;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use bridge::sigv4::AwsCredentials;
use bridge::transport::CredentialSource;
use std::sync::Arc;

/// Which AWS account and region: `--profile` and `--region`, else the environment's.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct AwsArgs {
    /// The AWS profile (from ~/.aws/config); default: AWS_PROFILE, else `default`.
    #[arg(long, env = "AWS_PROFILE")]
    pub profile: Option<String>,
    /// The AWS region; default: AWS_REGION, else the profile's.
    #[arg(long)]
    pub region: Option<String>,
}

impl AwsArgs {
    /// These, else live.toml's `[cloud]` profile and region.
    pub fn or_project(&self, cloud: &crate::config::Cloud) -> AwsArgs {
        AwsArgs {
            profile: self.profile.clone().or(cloud.profile.clone()),
            region: self.region.clone().or(cloud.region.clone()),
        }
    }
}

/// The SDK configuration: the default credential chain and region, `AWS_ENDPOINT_URL` and
/// `AWS_ENDPOINT_URL_<SERVICE>` honoured, HTTPS on rustls with ring.
pub async fn load(args: &AwsArgs) -> anyhow::Result<SdkConfig> {
    // The SDK panics on an endpoint URL set to nothing; say so instead.
    for (name, value) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if name.starts_with("AWS_ENDPOINT_URL") && value.is_empty() {
            anyhow::bail!("{name} is set but empty: unset it, or give the endpoint's URL");
        }
    }
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .build_https();
    let mut loader = aws_config::defaults(BehaviorVersion::latest()).http_client(http);
    if let Some(profile) = &args.profile {
        loader = loader.profile_name(profile);
    }
    if let Some(region) = &args.region {
        loader = loader.region(aws_config::Region::new(region.clone()));
    }
    let config = loader.load().await;
    if config.region().is_none() {
        return Err(Failure::Worded {
            text: "no AWS region: pass --region, set AWS_REGION, or set a region in the profile (`aws configure`)".to_owned(),
            exit: exit::NO_CREDENTIALS,
        }
        .into());
    }
    Ok(config)
}

/// The region the configuration names (checked by [`load`]).
pub fn region(config: &SdkConfig) -> String {
    config.region().map(|r| r.to_string()).unwrap_or_default()
}

/// The stage's IoT Core URL: `wss://{pinned}/mqtt` when live.toml pins a host (`[cloud]
/// endpoint`), else [`iot_endpoint`]'s.
pub async fn bridge_url(config: &SdkConfig, pinned: Option<&str>) -> anyhow::Result<String> {
    match pinned {
        Some(host) if !host.is_empty() && !host.contains(['/', ' ']) => {
            Ok(format!("wss://{host}/mqtt"))
        }
        Some(host) => anyhow::bail!(
            "[cloud] endpoint = {host:?} is not a host name: give IoT Core's endpoint, e.g. \
             \"abc123-ats.iot.eu-west-1.amazonaws.com\" (`aws iot describe-endpoint \
             --endpoint-type iot:Data-ATS`)"
        ),
        None => iot_endpoint(config).await,
    }
}

/// IoT Core's data endpoint for this account and region (`iot:Data-ATS`), as a `wss://` URL.
pub async fn iot_endpoint(config: &SdkConfig) -> anyhow::Result<String> {
    let client = aws_sdk_iot::Client::new(config);
    let region = region(config);
    let out = client
        .describe_endpoint()
        .endpoint_type("iot:Data-ATS")
        .send()
        .await
        .map_err(|e| {
            use aws_sdk_iot::error::SdkError;
            let advice = match &e {
                SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => format!(
                    "could not reach the AWS API for IoT in {region}: check the network, \
                     or AWS_ENDPOINT_URL / AWS_ENDPOINT_URL_IOT if set"
                ),
                _ => format!(
                    "IoT Core refused DescribeEndpoint in {region}: check the credentials \
                     (`aws sts get-caller-identity`) and that they allow iot:DescribeEndpoint"
                ),
            };
            let cause = match &e {
                SdkError::ServiceError(service) => service.err().to_string(),
                _ => chain(&e),
            };
            Failure::Worded {
                text: format!("{advice} ({cause})"),
                exit: Failure::of("iot:DescribeEndpoint", "IoT Core's endpoint", e).exit_code(),
            }
        })?;
    let host = out
        .endpoint_address()
        .filter(|h| !h.is_empty())
        .context("DescribeEndpoint answered without an endpoint address")?;
    Ok(format!("wss://{host}/mqtt"))
}

/// The account the credentials belong to (STS `GetCallerIdentity`): also the check that
/// there are credentials and that AWS accepts them, before anything else is called.
pub async fn account(config: &SdkConfig) -> anyhow::Result<String> {
    let provider = config
        .credentials_provider()
        .ok_or_else(|| Failure::NoCredentials {
            detail: "no credentials provider is configured".to_owned(),
        })?;
    if let Err(e) = provider.provide_credentials().await {
        return Err(Failure::NoCredentials { detail: chain(&e) }.into());
    }
    let out = aws_sdk_sts::Client::new(config)
        .get_caller_identity()
        .send()
        .await
        .map_err(|e| Failure::of("sts:GetCallerIdentity", "the caller", e))?;
    out.account()
        .map(str::to_owned)
        .context("STS GetCallerIdentity answered without an account")
}

/// An S3 client; path-style addressing when an endpoint is configured (an S3 stand-in such
/// as moto serves no bucket subdomains).
pub fn s3_client(config: &SdkConfig) -> aws_sdk_s3::Client {
    let overridden = ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"]
        .iter()
        .any(|v| std::env::var_os(v).is_some_and(|v| !v.is_empty()));
    let s3 = aws_sdk_s3::config::Builder::from(config)
        .force_path_style(overridden)
        .build();
    aws_sdk_s3::Client::from_conf(s3)
}

/// The bridge's credential source from the configuration's provider: asked afresh before
/// every connection attempt (the provider refreshes what expires).
pub fn credential_source(config: &SdkConfig) -> anyhow::Result<CredentialSource> {
    let provider = config.credentials_provider().context(
        "no AWS credentials provider: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or pass --profile",
    )?;
    Ok(Arc::new(move || {
        let provider = provider.clone();
        Box::pin(async move {
            let credentials = provider
                .provide_credentials()
                .await
                .map_err(|e| chain(&e))?;
            Ok(AwsCredentials {
                access_key_id: credentials.access_key_id().to_owned(),
                secret_access_key: credentials.secret_access_key().to_owned(),
                session_token: credentials.session_token().map(str::to_owned),
            })
        })
    }))
}

/// An error and its sources, joined (without the `Debug` dump `DisplayErrorContext` adds).
pub(crate) fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
