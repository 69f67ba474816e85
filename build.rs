//! Compiles the XDP fast path (bpf/relay.bpf.c) with clang when clang can
//! target BPF. Without it the build still succeeds: the program is left out,
//! `turn.xdp = "auto"` says so at start-up and `"on"` refuses to start.
//! NATBRIDGE_XDP_BUILD=off leaves it out on purpose (to test that build);
//! CLANG names another compiler.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(natbridge_xdp)");
    println!("cargo::rerun-if-changed=bpf/relay.bpf.c");
    println!("cargo::rerun-if-changed=bpf/maps.h");
    println!("cargo::rerun-if-env-changed=NATBRIDGE_XDP_BUILD");
    println!("cargo::rerun-if-env-changed=CLANG");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let object = out.join("relay.bpf.o");
    let _ = std::fs::remove_file(&object);
    if std::env::var("NATBRIDGE_XDP_BUILD").as_deref() == Ok("off") {
        return;
    }
    let clang = std::env::var("CLANG").unwrap_or_else(|_| "clang".into());
    // The UAPI headers' <asm/types.h> lives under the host's multiarch
    // directory, which a -target bpf compile does not search by itself.
    let multiarch = format!(
        "/usr/include/{}-linux-gnu",
        std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default()
    );
    let status = Command::new(&clang)
        .args(["-O2", "-g", "-target", "bpf", "-Wall"])
        .arg(format!("-I{multiarch}"))
        .args(["-c", "bpf/relay.bpf.c", "-o"])
        .arg(&object)
        .status();
    match status {
        Ok(s) if s.success() => println!("cargo::rustc-cfg=natbridge_xdp"),
        Ok(s) => println!(
            "cargo::warning=the XDP fast path was not built ({clang} exited with {s}); \
             natbridge works without it"
        ),
        Err(e) => println!(
            "cargo::warning=the XDP fast path was not built (no {clang}: {e}); \
             natbridge works without it"
        ),
    }
}
