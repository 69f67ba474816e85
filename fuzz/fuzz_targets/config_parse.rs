//! Configuration parsing and validation (`Config::parse`) on arbitrary TOML:
//! an error or a configuration, never a panic; and a configuration that
//! parsed renders back to TOML that parses to the same rendering (what
//! `natbridge check-config` prints is a valid config file).
#![no_main]

use libfuzzer_sys::fuzz_target;
use natbridge::config::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Config::parse(text, "fuzz.toml") {
        Ok(cfg) => {
            let rendered = cfg.to_toml();
            let again = Config::parse(&rendered, "rendered.toml")
                .unwrap_or_else(|e| panic!("rendered config does not parse: {e}\n{rendered}"));
            assert_eq!(again.to_toml(), rendered, "rendering is not stable");
            let redacted = cfg.to_toml_redacted();
            if let Err(e) = Config::parse(&redacted, "redacted.toml") {
                panic!("redacted config does not parse: {e}\n{redacted}");
            }
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
