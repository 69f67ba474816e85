//! The Debian package (docs/operations.md, "Install"): `cargo deb` builds it
//! from `[package.metadata.deb]` around the binary under test, and it holds the
//! binary, the config as a conffile readable only by root and its group, and
//! the systemd unit.
//!
//! `cargo test --release` builds target/release/natbridge before the tests run,
//! so the binary under test is the one the package's assets name. In a debug
//! run (`cargo test`) the package is built from target/debug instead
//! (`--profile dev`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::common::{BIN, TempDir, run_bounded, text};

const MANIFEST_DIR: &str = env!("CARGO_MANIFEST_DIR");

/// The cargo-deb arguments that select the profile `BIN` was built with.
fn profile_args() -> Vec<&'static str> {
    let bin = Path::new(BIN);
    let profile_dir = bin
        .parent()
        .and_then(Path::file_name)
        .and_then(|n| n.to_str())
        .unwrap_or_else(|| panic!("cannot tell the build profile from {BIN}"));
    match profile_dir {
        // The assets name target/release/natbridge: exactly BIN.
        "release" => Vec::new(),
        // cargo-deb maps target/release/ in asset paths to the profile's dir.
        "debug" => vec!["--profile", "dev"],
        other => panic!(
            "the binary under test ({BIN}) was built in profile directory {other:?}; \
             run this test with `cargo test --release --test it ops_package` (the package \
             is built from target/release/natbridge)"
        ),
    }
}

/// One `dpkg-deb -c` line: (mode, owner, size, path).
fn listing(deb: &Path) -> Vec<(String, String, u64, String)> {
    let out = run_bounded(
        Command::new("dpkg-deb").arg("-c").arg(deb),
        Duration::from_secs(60),
        "dpkg-deb is not installed: install the `dpkg` package",
    );
    assert!(
        out.status.success(),
        "dpkg-deb -c failed: {}",
        text(&out.stderr)
    );
    text(&out.stdout)
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            assert!(f.len() >= 6, "unexpected dpkg-deb -c line: {l:?}");
            let size = f[2]
                .parse()
                .unwrap_or_else(|e| panic!("size in {l:?}: {e}"));
            (f[0].to_string(), f[1].to_string(), size, f[5..].join(" "))
        })
        .collect()
}

#[test]
fn cargo_deb_builds_the_documented_package() {
    assert!(
        Path::new(BIN).is_file(),
        "the binary under test {BIN} does not exist; run `cargo test --release --test it ops_package`"
    );
    let out_dir = TempDir::new("deb");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let manifest = format!("{MANIFEST_DIR}/Cargo.toml");
    let mut cmd = Command::new(&cargo);
    cmd.current_dir(MANIFEST_DIR)
        .args([
            "deb",
            "--no-build",
            "--no-strip",
            "--fast",
            "--manifest-path",
        ])
        .arg(&manifest)
        .args(profile_args())
        .arg("--output")
        .arg(&out_dir.path);
    let out = run_bounded(&mut cmd, Duration::from_secs(600), "cargo is not runnable");
    let stderr = text(&out.stderr);
    if !out.status.success() && stderr.contains("no such command") {
        panic!(
            "cargo-deb is not installed: `cargo install cargo-deb` (scripts/test.sh installs it)\n{stderr}"
        );
    }
    assert!(
        out.status.success(),
        "cargo deb failed ({}):\nstdout:\n{}\nstderr:\n{stderr}",
        out.status,
        text(&out.stdout)
    );
    let debs: Vec<PathBuf> = std::fs::read_dir(&out_dir.path)
        .expect("read the output dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "deb"))
        .collect();
    assert_eq!(
        debs.len(),
        1,
        "expected one .deb in {}: {debs:?}\ncargo deb said:\n{}{stderr}",
        out_dir.path.display(),
        text(&out.stdout)
    );
    let deb = &debs[0];
    let name = deb.file_name().and_then(|n| n.to_str()).unwrap_or("");
    assert!(
        name.starts_with(&format!("natbridge_{}", env!("CARGO_PKG_VERSION"))),
        "package file name {name:?} should be natbridge_<version>_<arch>.deb"
    );

    // Contents.
    let files = listing(deb);
    let find = |path: &str| {
        files
            .iter()
            .find(|(_, _, _, p)| p == path)
            .unwrap_or_else(|| {
                panic!(
                    "the package lacks {path}; it holds:\n{}",
                    files
                        .iter()
                        .map(|f| f.3.as_str())
                        .collect::<Vec<_>>()
                        .join("\n")
                )
            })
    };
    let (bin_mode, bin_owner, bin_size, _) = find("./usr/bin/natbridge");
    let (conf_mode, conf_owner, _, _) = find("./etc/natbridge/config.toml");
    let (unit_mode, _, _, _) = find("./lib/systemd/system/natbridge.service");
    for doc in ["README.md", "operations.md", "protocol.md"] {
        find(&format!("./usr/share/doc/natbridge/{doc}"));
    }
    assert_eq!(bin_mode, "-rwxr-xr-x", "mode of /usr/bin/natbridge");
    assert_eq!(
        conf_mode, "-rw-r-----",
        "/etc/natbridge/config.toml holds secrets: it should be 640"
    );
    assert_eq!(unit_mode, "-rw-r--r--", "mode of the unit");
    for owner in [bin_owner, conf_owner] {
        assert!(
            owner == "root/root" || owner == "0/0",
            "files should be owned by root in the archive, got {owner}"
        );
    }
    let bin_len = std::fs::metadata(BIN).expect("stat the binary").len();
    assert_eq!(
        *bin_size, bin_len,
        "with --no-strip the packaged binary should be the binary under test ({BIN})"
    );

    // Control: conffiles lists the config.
    let info = run_bounded(
        Command::new("dpkg-deb").arg("-I").arg(deb),
        Duration::from_secs(60),
        "dpkg-deb is not installed: install the `dpkg` package",
    );
    assert!(info.status.success(), "dpkg-deb -I: {}", text(&info.stderr));
    let info_text = text(&info.stdout);
    assert!(
        info_text
            .lines()
            .any(|l| l.split_whitespace().any(|w| w == "conffiles")),
        "the package has no conffiles member:\n{info_text}"
    );
    assert!(
        info_text.contains("Package: natbridge"),
        "control should name the package:\n{info_text}"
    );
    let conffiles = run_bounded(
        Command::new("dpkg-deb").arg("-I").arg(deb).arg("conffiles"),
        Duration::from_secs(60),
        "dpkg-deb is not installed: install the `dpkg` package",
    );
    assert!(
        conffiles.status.success(),
        "dpkg-deb -I conffiles: {}",
        text(&conffiles.stderr)
    );
    let conffiles = text(&conffiles.stdout);
    assert!(
        conffiles
            .lines()
            .any(|l| l.trim() == "/etc/natbridge/config.toml"),
        "conffiles should list /etc/natbridge/config.toml:\n{conffiles}"
    );
    assert!(
        info_text.contains("postinst"),
        "the package should carry the postinst that creates the natbridge user:\n{info_text}"
    );
}
