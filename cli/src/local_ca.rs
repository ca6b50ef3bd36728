//! The TLS identity of a broker standing in for IoT Core: a CA of its own, written to a PEM
//! file that clients trust through `LIVE_CA_FILE`, and a server certificate for 127.0.0.1,
//! ::1, localhost and the region's IoT endpoints (`*.iot.REGION.amazonaws.com`, for clients
//! that reach it under the name `DescribeEndpoint` gave, through `LIVE_IOT_CONNECT_TO`)
//! signed by it, served by rustls on ring. The CA's key is kept beside it (`PATH.key`, owner
//! only) and the pair reused on the next start, so clients that trust the file keep trusting
//! a restarted broker.

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The CA of `ca_file` (reused when the file and its key are there, else created and
/// written), and a server configuration whose certificate it signed, for the loopback names
/// and `region`'s IoT endpoints.
pub fn create(ca_file: &Path, region: &str) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let key_file = key_path(ca_file);
    let (ca_der, ca_key) = match (std::fs::read(ca_file), std::fs::read_to_string(&key_file)) {
        (Ok(cert), Ok(key)) => {
            let again = |what: &Path| {
                format!(
                    "{} cannot be read as the CA's: delete {} and {} to start afresh",
                    what.display(),
                    ca_file.display(),
                    key_file.display()
                )
            };
            let key = KeyPair::from_pem(&key).with_context(|| again(&key_file))?;
            let cert = CertificateDer::from_pem_slice(&cert).with_context(|| again(ca_file))?;
            (cert, key)
        }
        _ => new_ca(ca_file, &key_file)?,
    };
    // The issuer is rebuilt from the same parameters: its name and key identifier are those
    // of the certificate in the file.
    let ca = Issuer::new(ca_params()?, ca_key);
    let endpoints = format!("*.iot.{region}.amazonaws.com");
    let names = ["127.0.0.1", "::1", "localhost", &endpoints].map(String::from);
    let mut server = CertificateParams::new(names.to_vec())?;
    server
        .distinguished_name
        .push(DnType::CommonName, "live broker (IoT mode)");
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let key = KeyPair::generate()?;
    let cert = server.signed_by(&key, &ca)?;

    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone(), ca_der], key)
        .context("the generated server certificate was refused")?;
    Ok(Arc::new(config))
}

/// The CA's parameters, the same on every start.
fn ca_params() -> anyhow::Result<CertificateParams> {
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "live local IoT Core stand-in CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    Ok(ca)
}

/// Where the CA's key is kept: beside the certificate.
fn key_path(ca_file: &Path) -> PathBuf {
    let mut name = ca_file.as_os_str().to_owned();
    name.push(".key");
    PathBuf::from(name)
}

/// A new CA, its certificate written to `ca_file` and its key to `key_file` (owner only).
fn new_ca(ca_file: &Path, key_file: &Path) -> anyhow::Result<(CertificateDer<'static>, KeyPair)> {
    let key = KeyPair::generate()?;
    let cert = ca_params()?.self_signed(&key)?;
    if let Some(parent) = ca_file.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("could not create {}", parent.display()))?;
    }
    let write = |path: &Path, text: String, mode: u32| -> anyhow::Result<()> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(path)
            .with_context(|| {
                format!("could not write {}; pick another --ca-file", path.display())
            })?;
        file.write_all(text.as_bytes())
            .with_context(|| format!("could not write {}", path.display()))
    };
    write(key_file, key.serialize_pem(), 0o600)?;
    write(ca_file, cert.pem(), 0o644)?;
    Ok((cert.der().clone(), key))
}
