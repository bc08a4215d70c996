//! The config fixtures, one table: every file in `tests/data/config/ok/` passes
//! `--config.check` (exit 0), and every file in `tests/data/config/bad/` fails it with
//! exit 2 and the message its first line names:
//!
//! ```yaml
//! # error: targets[0].project_id: must be 32 hex characters
//! ```
//!
//! A new case is a new file; nothing here changes. The binary runs from the crate
//! root (fixtures name their helper files relative to it, under `files/`), with no
//! credentials in the environment and no SDK credentials file. All failures are
//! reported at once.

use std::path::{Path, PathBuf};
use std::process::Command;

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/config");

fn fixtures(kind: &str) -> Vec<PathBuf> {
    let dir = Path::new(DIR).join(kind);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no fixtures in {}", dir.display());
    files
}

/// `--config.check` on `file`: (exit code, stdout, stderr).
fn check(file: &Path) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ims-exporter"))
        .args(["--config.check", "--config.file"])
        .arg(file)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("HUAWEICLOUD_SDK_AK")
        .env_remove("HUAWEICLOUD_SDK_SK")
        .env_remove("HUAWEICLOUD_SDK_SECURITY_TOKEN")
        // Never the developer's own ~/.huaweicloud/credentials.
        .env("HUAWEICLOUD_SDK_CREDENTIALS_FILE", "/nonexistent/x")
        .output()
        .expect("run ims-exporter");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn name(file: &Path) -> String {
    file.strip_prefix(DIR).unwrap_or(file).display().to_string()
}

#[test]
fn config_fixtures() {
    let mut failures = Vec::new();
    let mut cases = 0;

    for file in fixtures("ok") {
        cases += 1;
        let (code, stdout, stderr) = check(&file);
        if code != Some(0) || !stdout.contains(": OK: ") {
            failures.push(format!(
                "{}: want exit 0 and OK, got exit {code:?}\n  stdout: {stdout}\n  stderr: {stderr}",
                name(&file)
            ));
        }
    }

    for file in fixtures("bad") {
        cases += 1;
        let text = std::fs::read_to_string(&file).expect("read fixture");
        let Some(want) = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# error: "))
            .map(str::trim)
            .filter(|w| !w.is_empty())
        else {
            failures.push(format!(
                "{}: the first line must be `# error: <expected message>`",
                name(&file)
            ));
            continue;
        };
        let (code, _, stderr) = check(&file);
        let file_named = stderr.contains(&file.display().to_string());
        if code != Some(2) || !stderr.contains(want) || !file_named {
            failures.push(format!(
                "{}: want exit 2 and {want:?} with the file name on stderr, got exit {code:?}\n  stderr: {stderr}",
                name(&file)
            ));
        }
    }

    assert!(
        failures.is_empty(),
        "{} of {cases} config fixtures failed:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}
