//! Zips for Lambda whose bytes depend only on what they hold (fixed times and modes, one
//! compression level), so that Lambda's `CodeSha256` tells whether the deployed code is this
//! build: the stub as `bootstrap` (`live deploy`), the `live` layer (`layer.rs`), and the
//! stub in front of an attached function's own code, kept inside.

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
        Package::of_entries(&[("bootstrap", binary, 0o755)], None)
    }

    /// A zip of `entries` (name, bytes, Unix mode), and with `keep` = (a zip, a folder) every
    /// entry of that zip copied as it is under the folder.
    pub fn of_entries(
        entries: &[(&str, &[u8], u32)],
        keep: Option<(&[u8], &str)>,
    ) -> anyhow::Result<Package> {
        let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        for (name, bytes, mode) in entries {
            let options = zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Deflated)
                .compression_level(Some(9))
                // 1980-01-01 00:00, zip's epoch: the build time never enters the bytes.
                .last_modified_time(zip::DateTime::default())
                .unix_permissions(*mode);
            zip.start_file(*name, options)?;
            zip.write_all(bytes)?;
        }
        if let Some((original, folder)) = keep {
            let mut archive = zip::ZipArchive::new(std::io::Cursor::new(original))
                .context("the function's own code is not a zip")?;
            for i in 0..archive.len() {
                let file = archive.by_index_raw(i)?;
                let name = format!("{folder}/{}", file.name()?);
                zip.raw_copy_file_rename(file, name)?;
            }
        }
        let bytes = zip.finish()?.into_inner();
        Ok(Package { bytes })
    }

    /// The bytes of entry `name`, if the zip holds it.
    #[cfg(test)]
    pub fn entry(&self, name: &str) -> Option<Vec<u8>> {
        use std::io::Read;
        let mut archive = zip::ZipArchive::new(std::io::Cursor::new(&self.bytes)).ok()?;
        let mut file = archive.by_name(name).ok()?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).ok()?;
        Some(bytes)
    }

    /// Lambda's `CodeSha256`: the SHA-256 of the zip, in base64.
    pub fn code_sha256(&self) -> String {
        let digest = ring::digest::digest(&ring::digest::SHA256, &self.bytes);
        base64::engine::general_purpose::STANDARD.encode(digest.as_ref())
    }
}

/// Lambda's name of the architecture an ELF executable is built for (`x86_64`, `arm64`);
/// anything else (not ELF, another machine) is refused, naming what it is.
pub fn architecture_name(binary: &[u8]) -> anyhow::Result<&'static str> {
    if binary.len() < 20 || &binary[..4] != b"\x7fELF" {
        anyhow::bail!(
            "the stub is not a Linux executable (ELF): Lambda runs Linux; build it on Linux, or \
             cross-compile for x86_64-unknown-linux-gnu or aarch64-unknown-linux-gnu"
        );
    }
    // e_machine, little-endian (both of Lambda's architectures are).
    match u16::from_le_bytes([binary[18], binary[19]]) {
        0x3e => Ok("x86_64"),
        0xb7 => Ok("arm64"),
        other => anyhow::bail!(
            "the stub is built for ELF machine {other:#x}, which Lambda does not run: build it \
             for x86_64 or arm64"
        ),
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
    fn a_kept_zip_is_copied_whole_under_its_folder() {
        let original = Package::of_entries(
            &[
                ("bootstrap", b"#!/bin/sh\necho original", 0o755),
                ("lib/data.txt", b"data", 0o644),
            ],
            None,
        )
        .unwrap();
        let attached = Package::of_entries(
            &[("bootstrap", b"stub", 0o755)],
            Some((&original.bytes, "live-original")),
        )
        .unwrap();
        assert_eq!(attached.entry("bootstrap").unwrap(), b"stub");
        assert_eq!(
            attached.entry("live-original/bootstrap").unwrap(),
            b"#!/bin/sh\necho original"
        );
        assert_eq!(
            attached.entry("live-original/lib/data.txt").unwrap(),
            b"data"
        );
    }

    #[test]
    fn the_stubs_architecture_is_read_from_its_elf_header() {
        let mut elf = b"\x7fELF".to_vec();
        elf.resize(20, 0);
        elf[18] = 0x3e;
        assert_eq!(architecture_name(&elf).unwrap(), "x86_64");
        elf[18] = 0xb7;
        assert_eq!(architecture_name(&elf).unwrap(), "arm64");
        assert!(architecture_name(b"\xcf\xfa\xed\xfe macho binary....").is_err());
        let this = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        assert_eq!(
            architecture_name(&this).unwrap(),
            if cfg!(target_arch = "aarch64") {
                "arm64"
            } else {
                "x86_64"
            }
        );
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
