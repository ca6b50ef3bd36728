//! Payloads too large for the bridge's quota, on `live dev`'s side: the event fetched from
//! the URL its stub presigned, and a large response put where the stub presigned for it. The
//! developer needs no S3 permission: the URLs carry the stub's role's signature.

pub use crate::url_request::{fetch, put};
pub use bridge::s3::OBJECT_THRESHOLD;
