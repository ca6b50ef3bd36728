//! The request hook that presigns every connection attempt for IoT Core with SigV4, with
//! credentials fetched afresh each time (a reconnection after they rotated signs with the new
//! ones).

use super::RequestSigner;
use crate::sigv4::{presign, AwsCredentials, PRESIGN_EXPIRES};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::SystemTime;

/// Where the signer gets its credentials, asked before every connection attempt: the
/// environment (the stub), or `aws-config`'s default chain (`live dev`). An error is text to
/// log.
pub type CredentialSource = Arc<
    dyn Fn() -> Pin<Box<dyn Future<Output = Result<AwsCredentials, String>> + Send>> + Send + Sync,
>;

/// A source that always answers `credentials` (the stub's, from its environment).
pub fn fixed_credentials(credentials: AwsCredentials) -> CredentialSource {
    Arc::new(move || {
        let credentials = credentials.clone();
        Box::pin(async move { Ok(credentials) })
    })
}

/// A hook presigning each upgrade request's URL for IoT Core in `region`. When no credentials
/// can be had, the request goes unsigned (the broker refuses it with a 403, which becomes the
/// connection's last error) and the reason is logged.
pub fn sigv4_signer(region: String, source: CredentialSource) -> RequestSigner {
    Arc::new(move |mut request: http::Request<()>| {
        let region = region.clone();
        let source = source.clone();
        Box::pin(async move {
            let credentials = match source().await {
                Ok(credentials) => credentials,
                Err(e) => {
                    tracing::warn!("no AWS credentials to sign the bridge connection with: {e}");
                    return request;
                }
            };
            let url = request.uri().to_string();
            let signed = presign(
                &url,
                &region,
                &credentials,
                SystemTime::now(),
                PRESIGN_EXPIRES,
            )
            .map_err(|e| e.to_string())
            .and_then(|signed| {
                signed
                    .parse()
                    .map_err(|e: http::uri::InvalidUri| e.to_string())
            });
            match signed {
                Ok(uri) => *request.uri_mut() = uri,
                Err(e) => tracing::warn!("cannot sign the bridge connection: {e}"),
            }
            request
        })
    })
}
