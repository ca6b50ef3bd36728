//! The deployment package: the stub as `bootstrap`, alone in a zip whose bytes depend only on
//! the binary (fixed time and mode, one compression level), so that Lambda's `CodeSha256`
//! tells whether the deployed code is this build.

use anyhow::Context;
use base64::Engine;
use std::io::Write;
use std::path::Path;

/// A zip ready to upload.
#[derive(Debug, Clone)]
pub struct Package {
    pub bytes: Vec<u8>,
}

impl Package {
    /// The zip of the stub binary at `stub`.
    pub fn of_stub(stub: &Path) -> anyhow::Result<Package> {
        let binary = std::fs::read(stub)
            .with_context(|| format!("could not read the stub binary {}", stub.display()))?;
        Package::of_bootstrap(&binary)
    }

    /// A zip holding `binary` as the executable `bootstrap`.
    pub fn of_bootstrap(binary: &[u8]) -> anyhow::Result<Package> {
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .compression_level(Some(9))
            // 1980-01-01 00:00, zip's epoch: the build time never enters the bytes.
            .last_modified_time(zip::DateTime::default())
            .unix_permissions(0o755);
        let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        zip.start_file("bootstrap", options)?;
        zip.write_all(binary)?;
        let bytes = zip.finish()?.into_inner();
        Ok(Package { bytes })
    }

    /// Lambda's `CodeSha256`: the SHA-256 of the zip, in base64.
    pub fn code_sha256(&self) -> String {
        let digest = ring::digest::digest(&ring::digest::SHA256, &self.bytes);
        base64::engine::general_purpose::STANDARD.encode(digest.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn the_same_binary_gives_the_same_bytes_and_an_executable_bootstrap() {
        let binary = b"\x7fELF pretend binary".repeat(1000);
        let a = Package::of_bootstrap(&binary).unwrap();
        let b = Package::of_bootstrap(&binary).unwrap();
        assert_eq!(a.bytes, b.bytes);
        assert_eq!(a.code_sha256(), b.code_sha256());
        assert_ne!(
            a.code_sha256(),
            Package::of_bootstrap(b"other").unwrap().code_sha256()
        );
        let mut archive = zip::ZipArchive::new(std::io::Cursor::new(a.bytes)).unwrap();
        assert_eq!(archive.len(), 1);
        let mut entry = archive.by_name("bootstrap").unwrap();
        assert_eq!(entry.unix_mode().map(|m| m & 0o777), Some(0o755));
        let mut unpacked = Vec::new();
        entry.read_to_end(&mut unpacked).unwrap();
        assert_eq!(unpacked, binary);
    }

    #[test]
    fn code_sha256_is_base64_of_the_zips_sha256() {
        let package = Package {
            bytes: b"abc".to_vec(),
        };
        // sha256("abc"), as `openssl dgst -sha256 -binary | base64` prints it.
        assert_eq!(
            package.code_sha256(),
            "ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0="
        );
    }
}
