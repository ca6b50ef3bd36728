//! The stage's S3 bucket as the stub uses it for payloads too large for the bridge's quota
//! (IoT Core carries 512 KiB/s a connection, so 6 MB in chunks takes 12 s each way): the
//! event put as an object and its presigned GET handed to `live dev` with a presigned PUT for
//! a large response, the response fetched, both deleted once used. Every request goes to a
//! URL the stub presigned with its role's credentials (plain HTTP/1.1, TLS for `https://`).

use crate::http1;
use bridge::protocol::{ObjectUrls, RoleCredentials};
use bridge::s3::{object_key, presign_object, OBJECT_THRESHOLD, OBJECT_URL_EXPIRES};
use bridge::sigv4::AwsCredentials;
use bytes::Bytes;
use std::sync::Arc;
use std::time::SystemTime;

/// The stage's bucket.
#[derive(Debug, Clone)]
pub struct Bucket {
    /// `https://BUCKET.s3.REGION.amazonaws.com`, or `ENDPOINT/BUCKET` (path style) with
    /// `AWS_ENDPOINT_URL_S3` or `AWS_ENDPOINT_URL` set, as the SDKs read them.
    base: String,
    region: String,
    tls: Option<Arc<rustls::ClientConfig>>,
}

/// An invocation's objects: their keys, whether the event was put, and the URLs handed over.
#[derive(Debug)]
pub struct Objects {
    event_key: String,
    response_key: String,
    event_put: bool,
    pub urls: ObjectUrls,
}

impl Bucket {
    /// The bucket `LIVE_BUCKET` names, in `region`, if any.
    pub fn from_env(
        var: impl Fn(&str) -> Option<String>,
        region: &str,
    ) -> Result<Option<Bucket>, String> {
        let Some(bucket) = var("LIVE_BUCKET") else {
            return Ok(None);
        };
        let base = match var("AWS_ENDPOINT_URL_S3").or_else(|| var("AWS_ENDPOINT_URL")) {
            Some(endpoint) => format!("{}/{bucket}", endpoint.trim_end_matches('/')),
            None => format!("https://{bucket}.s3.{region}.amazonaws.com"),
        };
        let tls = match base.starts_with("https://") {
            true => Some(
                bridge::tls::client_config(bridge::tls::ca_file_from_env().as_deref())
                    .map_err(|e| e.to_string())?,
            ),
            false => None,
        };
        Ok(Some(Bucket {
            base,
            region: region.to_owned(),
            tls,
        }))
    }

    fn presign(&self, method: &str, key: &str, role: &RoleCredentials) -> Result<String, String> {
        let credentials = AwsCredentials::from(role);
        let url = format!("{}/{key}", self.base);
        presign_object(
            method,
            &url,
            &self.region,
            &credentials,
            SystemTime::now(),
            OBJECT_URL_EXPIRES,
        )
        .map_err(|e| e.to_string())
    }

    /// What `live dev` is offered for invocation `request_id` (app `app`, stage `stage`): a
    /// presigned PUT for a large response, and when `event` is larger than
    /// [`OBJECT_THRESHOLD`], the event put in the bucket and its presigned GET.
    pub async fn offer(
        &self,
        app: &str,
        stage: &str,
        request_id: &str,
        event: &Bytes,
        role: &RoleCredentials,
    ) -> Result<Objects, String> {
        let event_key = object_key(app, stage, request_id, "event");
        let response_key = object_key(app, stage, request_id, "response");
        let event_put = event.len() > OBJECT_THRESHOLD;
        let mut urls = ObjectUrls {
            event: None,
            response: self.presign("PUT", &response_key, role)?,
        };
        if event_put {
            let put = self.presign("PUT", &event_key, role)?;
            self.request("PUT", &put, Some(event)).await?;
            urls.event = Some(self.presign("GET", &event_key, role)?);
        }
        Ok(Objects {
            event_key,
            response_key,
            event_put,
            urls,
        })
    }

    /// The response `live dev` put for `objects`.
    pub async fn get_response(
        &self,
        objects: &Objects,
        role: &RoleCredentials,
    ) -> Result<Bytes, String> {
        let get = self.presign("GET", &objects.response_key, role)?;
        self.request("GET", &get, None).await
    }

    /// Delete the invocation's objects: the event if it was put, the response if `live dev`
    /// put one. A failure is logged: the bucket's one-day expiry removes what is left.
    pub async fn delete(&self, objects: &Objects, response_put: bool, role: &RoleCredentials) {
        let event = objects.event_put.then_some(&objects.event_key);
        let response = response_put.then_some(&objects.response_key);
        for key in event.into_iter().chain(response) {
            let deleted = match self.presign("DELETE", key, role) {
                Ok(url) => self.request("DELETE", &url, None).await.map(|_| ()),
                Err(e) => Err(e),
            };
            if let Err(e) = deleted {
                tracing::warn!("could not delete s3 object {key}: {e}");
            }
        }
    }

    /// One request to a presigned `url`; a 2xx answer's body, else an error naming the status.
    async fn request(
        &self,
        method: &str,
        url: &str,
        body: Option<&Bytes>,
    ) -> Result<Bytes, String> {
        let (_, rest) = url.split_once("://").ok_or("not a URL")?;
        let (authority, path) = match rest.find('/') {
            Some(slash) => rest.split_at(slash),
            None => (rest, "/"),
        };
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) if port.parse::<u16>().is_ok() => (host, port.to_owned()),
            _ => (
                authority,
                if self.tls.is_some() { "443" } else { "80" }.to_owned(),
            ),
        };
        let mut connection = match &self.tls {
            Some(tls) => {
                let at = format!("{host}:{port}");
                http1::Connection::open_tls(&at, host, tls.clone(), "the stage's bucket").await
            }
            None => {
                http1::Connection::open_to(&format!("{host}:{port}"), "the stage's bucket").await
            }
        }
        .map_err(|e| format!("{method} {host}: {e}"))?;
        let head = http1::request_head(method, path, authority, &[], body);
        connection
            .write(&head, body.map_or(&[][..], |b| &b[..]), b"")
            .await
            .map_err(|e| format!("{method} {host}: {e}"))?;
        let read = connection
            .read_answer()
            .await
            .map_err(|e| format!("{method} {host}: {e}"))?;
        match read.answer.status {
            200..=299 => Ok(read.answer.body),
            status => Err(format!(
                "{method} {host}{}: HTTP {status}: {}",
                path.split('?').next().unwrap_or_default(),
                String::from_utf8_lossy(&read.answer.body)
                    .chars()
                    .take(300)
                    .collect::<String>()
            )),
        }
    }
}
