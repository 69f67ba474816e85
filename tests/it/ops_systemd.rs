//! The systemd unit (docs/operations.md, "systemd"): `systemd-analyze verify`
//! passes and `systemd-analyze security --offline=yes` rates it OK or better.
//! The unit is copied with ExecStart pointing at the binary under test.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use crate::common::{BIN, TempDir, run_bounded, text};

const UNIT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/systemd/natbridge.service");

/// Runs `systemd-analyze ARGS`, bounded; fails (not skips) when it is missing.
fn systemd_analyze(args: &[&str], cwd: &Path) -> Output {
    run_bounded(
        Command::new("systemd-analyze")
            .args(args)
            .current_dir(cwd)
            .env("SYSTEMD_COLORS", "0")
            .env("SYSTEMD_PAGER", "")
            .env("PAGER", "cat"),
        Duration::from_secs(60),
        "systemd-analyze is not installed: install the `systemd` package \
         (apt-get install systemd); scripts/test.sh installs it",
    )
}

/// A copy of the unit, named natbridge.service, with ExecStart's binary
/// replaced by `exe`.
fn unit_copy(dir: &TempDir, exe: &str) -> PathBuf {
    let text = std::fs::read_to_string(UNIT).unwrap_or_else(|e| panic!("read {UNIT}: {e}"));
    let mut replaced = 0;
    let lines: Vec<String> = text
        .lines()
        .map(|l| match l.strip_prefix("ExecStart=") {
            Some(cmd) => {
                replaced += 1;
                let args = cmd.split_once(' ').map_or("", |(_, a)| a);
                assert_eq!(
                    cmd.split(' ').next(),
                    Some("/usr/bin/natbridge"),
                    "ExecStart should run the packaged binary /usr/bin/natbridge: {l}"
                );
                format!("ExecStart={exe} {args}")
            }
            None => l.to_string(),
        })
        .collect();
    assert_eq!(replaced, 1, "the unit should have exactly one ExecStart=");
    dir.file("natbridge.service", &(lines.join("\n") + "\n"))
}

#[test]
fn unit_passes_systemd_analyze_verify() {
    let dir = TempDir::new("unit-verify");
    let unit = unit_copy(&dir, BIN);
    let unit_s = unit.to_str().expect("utf-8 path");
    let out = systemd_analyze(&["verify", unit_s], &dir.path);
    let stderr = text(&out.stderr);
    assert!(
        out.status.success(),
        "systemd-analyze verify {unit_s} failed ({}):\nstdout:\n{}\nstderr:\n{stderr}",
        out.status,
        text(&out.stdout)
    );
    let problems: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("natbridge.service"))
        .collect();
    assert!(
        problems.is_empty(),
        "systemd-analyze verify reports problems with the unit:\n{}",
        problems.join("\n")
    );

    // The check has teeth: a unit whose binary is missing fails it.
    let broken_dir = TempDir::new("unit-verify-broken");
    let broken = unit_copy(&broken_dir, "/nonexistent/natbridge");
    let out = systemd_analyze(
        &["verify", broken.to_str().expect("utf-8 path")],
        &broken_dir.path,
    );
    assert!(
        !out.status.success() || text(&out.stderr).contains("natbridge.service"),
        "systemd-analyze verify should complain about a missing ExecStart binary; \
         stdout:\n{}\nstderr:\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

#[test]
fn unit_security_exposure_is_ok_or_better() {
    let dir = TempDir::new("unit-security");
    let unit = unit_copy(&dir, BIN);
    let unit_s = unit.to_str().expect("utf-8 path");
    let out = systemd_analyze(&["security", "--offline=yes", unit_s], &dir.path);
    let stdout = text(&out.stdout);
    let stderr = text(&out.stderr);
    let prefix = "Overall exposure level for natbridge.service:";
    let line = stdout
        .lines()
        .chain(stderr.lines())
        .find_map(|l| l.split_once(prefix).map(|(_, rest)| rest.trim().to_string()))
        .unwrap_or_else(|| {
            panic!(
                "no \"{prefix}\" line from systemd-analyze security ({}):\nstdout:\n{stdout}\nstderr:\n{stderr}",
                out.status
            )
        });
    let mut words = line.split_whitespace();
    let score: f64 = words
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no exposure score in {line:?}"));
    let rating = words
        .next()
        .unwrap_or_else(|| panic!("no rating in {line:?}"));
    assert!(
        ["SAFE", "OK"].contains(&rating),
        "the unit's exposure is {score} {rating}; it should rate SAFE or OK.\n{stdout}"
    );
    assert!(
        (0.0..=10.0).contains(&score),
        "exposure score out of range: {line:?}"
    );
}
