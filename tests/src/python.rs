//! The Python environment the tests use: a virtual environment under the target directory
//! with `tests/requirements.txt` installed, created on first use by whichever test or task
//! needs it first (a file lock keeps parallel test processes from racing).

use std::fs::File;
use std::path::PathBuf;
use std::process::Command;

/// The virtual environment's `python`, ready with `tests/requirements.txt` installed.
pub fn python() -> PathBuf {
    let root = crate::workspace_root();
    let venv = crate::target_dir().join("live-test-venv");
    let python = venv.join("bin").join("python");
    let requirements = root.join("tests").join("requirements.txt");
    let wanted = std::fs::read_to_string(&requirements).expect("tests/requirements.txt");
    let stamp = venv.join("requirements.installed");
    std::fs::create_dir_all(crate::target_dir()).expect("target dir");
    let lock = File::create(crate::target_dir().join("live-test-venv.lock")).expect("lock file");
    lock.lock().expect("lock the venv");
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(wanted.as_str()) && python.exists() {
        return python;
    }
    if !python.exists() {
        run(Command::new("python3").args(["-m", "venv"]).arg(&venv));
    }
    run(Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "-r",
        ])
        .arg(&requirements));
    std::fs::write(&stamp, wanted).expect("write stamp");
    python
}

fn run(cmd: &mut Command) {
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("could not run {cmd:?}: {e}; is python3 installed?"));
    assert!(status.success(), "{cmd:?} failed: {status}");
}
