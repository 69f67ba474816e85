//! `[log]`: the level and the format of the daemon's log.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSection {
    /// A level name or a tracing `EnvFilter` directive string.
    pub level: String,
    pub format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

impl Default for LogSection {
    fn default() -> LogSection {
        LogSection {
            level: "info".to_owned(),
            format: LogFormat::Text,
        }
    }
}
