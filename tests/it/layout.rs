//! Rules of the workspace's shape that a build would not catch by itself.

use std::process::Command;

/// The deployed stub is built alone (`cargo build -p stub`); the embedded broker must not be
/// compiled into it.
#[test]
fn the_stub_built_alone_does_not_compile_the_broker() {
    let tree = cargo_tree(&["-p", "stub", "-e", "normal", "--prefix", "none"]);
    assert!(
        tree.contains("bridge v"),
        "the stub depends on the bridge:\n{tree}"
    );
    assert!(
        !tree.contains("tokio-tungstenite"),
        "the stub pulls the broker's WebSocket server:\n{tree}"
    );
}

/// `cargo tree` for `args`, offline.
fn cargo_tree(args: &[&str]) -> String {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .arg("tree")
        .args(args)
        .arg("--offline")
        .current_dir(tests::workspace_root())
        .output()
        .expect("cargo tree runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// One crypto provider in the whole tree, ring: never aws-lc-rs (which rumqttc's and the AWS
/// SDK's default TLS would bring, with its C and assembly build), so every TLS connection and
/// signature uses the same code.
#[test]
fn the_tree_has_one_crypto_provider_ring() {
    let tree = cargo_tree(&["--workspace", "-e", "normal", "--prefix", "none"]);
    let has = |name: &str| tree.lines().any(|l| l.starts_with(name));
    assert!(
        !has("aws-lc-sys v") && !has("aws-lc-rs v"),
        "aws-lc-rs is in the tree:\n{}",
        cargo_tree(&["-i", "aws-lc-sys", "--workspace", "-e", "normal"])
    );
    assert!(has("ring v"), "no ring in the tree: TLS has no provider");
    let duplicates = cargo_tree(&["-d", "--workspace", "-e", "normal"]);
    let rings = duplicates
        .lines()
        .filter(|l| l.starts_with("ring v"))
        .count();
    assert!(rings == 0, "two versions of ring:\n{duplicates}");
}

/// The stub starts on Amazon Linux 2023 (`provided.al2023`, and the managed runtimes built on
/// it): it needs no glibc symbol newer than that system's 2.34, whatever the build machine has.
#[test]
fn the_stub_needs_no_glibc_newer_than_amazon_linux_2023s() {
    let out = std::process::Command::new("objdump")
        .arg("-T")
        .arg(tests::bin("bootstrap"))
        .output()
        .expect("objdump (binutils) runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let newest = text
        .split("GLIBC_")
        .skip(1)
        .filter_map(|rest| {
            let version: String = rest
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == '.')
                .collect();
            let mut parts = version.split('.').map(|p| p.parse::<u32>().ok());
            Some((parts.next()??, parts.next().flatten().unwrap_or(0)))
        })
        .max()
        .expect("the stub links glibc");
    assert!(
        newest <= (2, 34),
        "the stub needs GLIBC_{}.{}",
        newest.0,
        newest.1
    );
}

/// The CLI's modules depend one way: `cloud`, `function` and `stage` never use `dev`, `stage`
/// never uses `cloud`, and `dev` uses `cloud` only through its public API.
#[test]
fn cli_modules_depend_one_way() {
    let src = tests::workspace_root().join("cli/src");
    let uses = |folder: &str, needle: &str| -> Vec<String> {
        let mut found = Vec::new();
        for entry in std::fs::read_dir(src.join(folder)).expect("folder") {
            let path = entry.expect("entry").path();
            let text = std::fs::read_to_string(&path).expect("source");
            if text.contains(needle) {
                found.push(path.display().to_string());
            }
        }
        found
    };
    for folder in ["cloud", "function", "stage"] {
        let found = uses(folder, "crate::dev");
        assert!(found.is_empty(), "{folder} uses dev: {found:?}");
    }
    let found = uses("stage", "crate::cloud");
    assert!(found.is_empty(), "stage uses cloud: {found:?}");
    let found = uses("dev", "cloud::emulator");
    assert!(found.is_empty(), "dev reaches into the emulator: {found:?}");
}

/// ARCHITECTURE.md's code map names every source file of the three crates (by its path, or in
/// its folder's row), and every path it names exists.
#[test]
fn the_code_map_matches_the_tree() {
    let root = tests::workspace_root();
    let doc = std::fs::read_to_string(root.join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    let start = doc.find("## Code map").expect("a code map");
    let end = start
        + doc[start..]
            .find("\n## ")
            .expect("a section after the code map");
    let rows: Vec<&str> = doc[start..end]
        .lines()
        .filter(|l| l.starts_with("| `"))
        .collect();
    // Every path the first column names exists.
    for row in &rows {
        let first = row.split(" | ").next().unwrap_or_default();
        for path in first.split('`').skip(1).step_by(2) {
            assert!(
                root.join(path).exists(),
                "the code map names {path}, which is gone"
            );
        }
    }
    // Every source file is named.
    let mut files = Vec::new();
    let mut folders = vec![
        root.join("bridge/src"),
        root.join("stub/src"),
        root.join("cli/src"),
    ];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).expect("folder") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                folders.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path.strip_prefix(&root).expect("inside").to_path_buf());
            }
        }
    }
    for file in files {
        let full = format!("`{}`", file.display());
        let folder = format!("`{}/`", file.parent().expect("parent").display());
        let name = format!("`{}", file.file_name().expect("name").to_string_lossy());
        let named = rows.iter().any(|row| {
            let first = row.split(" | ").next().unwrap_or_default();
            first.contains(&full) || (first.contains(&folder) && row.contains(&name))
        });
        assert!(
            named,
            "ARCHITECTURE.md's code map does not name {}",
            file.display()
        );
    }
}
