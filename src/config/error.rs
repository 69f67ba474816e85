//! Configuration errors and the mapping from byte offsets and keys back to
//! lines of the file, so that every message points where the sysadmin must
//! look.

use super::validate::Problem;
use std::fmt;
use std::ops::Range;
use toml_edit::{Document, TableLike};

/// A configuration that cannot be used, and where the problem is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Dotted key path such as `turn.relay_port_min`.
    pub key: Option<String>,
    /// 1-based line in the source.
    pub line: Option<usize>,
    pub message: String,
    /// The file path, or `<built-in>`; empty from [`super::Config::validate`],
    /// which has no source.
    pub origin: String,
}

impl fmt::Display for ConfigError {
    /// `origin:line: key: message`, leaving out what is unknown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut location = self.origin.clone();
        if let Some(line) = self.line {
            if !location.is_empty() {
                location.push(':');
            }
            location.push_str(&line.to_string());
        }
        if !location.is_empty() {
            write!(f, "{location}: ")?;
        }
        if let Some(key) = &self.key {
            write!(f, "{key}: ")?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}

/// The source text, and its syntax tree when it parses, for looking up where
/// keys are.
pub(super) struct SourceMap<'a> {
    text: &'a str,
    document: Option<Document<&'a str>>,
}

impl<'a> SourceMap<'a> {
    pub(super) fn new(text: &'a str) -> SourceMap<'a> {
        SourceMap {
            text,
            document: Document::parse(text).ok(),
        }
    }

    /// 1-based line of a byte offset.
    fn line_of(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        1 + self.text.as_bytes()[..end]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
    }

    /// Turns a TOML syntax or type error into a `ConfigError` with the key at
    /// the error's position and a one-line message.
    pub(super) fn deserialize_error(&self, error: &toml::de::Error, origin: &str) -> ConfigError {
        let span = error.span();
        let key = span.as_ref().and_then(|span| {
            self.document
                .as_ref()
                .and_then(|document| key_path_at(document.as_table(), span.start))
                .or_else(|| key_path_by_text(self.text, span.start))
        });
        ConfigError {
            key,
            line: span.map(|span| self.line_of(span.start)),
            message: tidy_message(error.message()),
            origin: origin.to_owned(),
        }
    }

    /// Ties a validation problem to the line of its key (or array element).
    pub(super) fn locate(&self, problem: Problem, origin: &str) -> ConfigError {
        let mut key = problem.key;
        let mut span = self.span_of(key, problem.element);
        if span.is_none()
            && let Some(other_key) = problem.other_key
            && let Some(other_span) = self.span_of(other_key, None)
        {
            // The file leaves `key` at its default; the line that causes the
            // conflict is the other key's.
            key = other_key;
            span = Some(other_span);
        }
        ConfigError {
            key: Some(key.to_owned()),
            line: span.map(|span| self.line_of(span.start)),
            message: problem.message,
            origin: origin.to_owned(),
        }
    }

    /// Where a dotted key (or one element of its array) is written.
    fn span_of(&self, key: &str, element: Option<usize>) -> Option<Range<usize>> {
        let document = self.document.as_ref()?;
        let mut table: &dyn TableLike = document.as_table();
        let mut segments = key.split('.').peekable();
        while let Some(segment) = segments.next() {
            let (found_key, item) = table.get_key_value(segment)?;
            if segments.peek().is_some() {
                table = item.as_table_like()?;
                continue;
            }
            let element_span = element.and_then(|index| item.as_array()?.get(index)?.span());
            return element_span
                .or_else(|| found_key.span())
                .or_else(|| item.span());
        }
        None
    }
}

/// The dotted path of the deepest key whose name or value contains `offset`.
fn key_path_at(table: &dyn TableLike, offset: usize) -> Option<String> {
    let contains = |span: Option<Range<usize>>| {
        span.is_some_and(|span| span.start <= offset && offset < span.end.max(span.start + 1))
    };
    for (name, item) in table.iter() {
        if let Some(child) = item.as_table_like()
            && let Some(rest) = key_path_at(child, offset)
        {
            return Some(format!("{name}.{rest}"));
        }
        let key_span = table.get_key_value(name).and_then(|(key, _)| key.span());
        if contains(key_span) || contains(item.span()) {
            return Some(name.to_owned());
        }
    }
    None
}

/// A best guess at the key on the line holding `offset`, for text too broken
/// for toml_edit to parse: the last `[section]` header above it plus the
/// name before the `=` on that line.
fn key_path_by_text(text: &str, offset: usize) -> Option<String> {
    let end = offset.min(text.len());
    // Bytes, not str: an offset inside a multi-byte character must not panic.
    let line_start = text.as_bytes()[..end]
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    let line_end = text[line_start..]
        .find('\n')
        .map_or(text.len(), |i| line_start + i);
    let line = text.get(line_start..line_end)?.trim();
    let header_name = |line: &str| {
        let name = line.strip_prefix('[')?.trim_start_matches('[');
        let name = name.split(']').next()?.trim();
        (!name.is_empty()).then(|| name.to_owned())
    };
    if line.starts_with('[') {
        return header_name(line);
    }
    let section = text[..line_start]
        .lines()
        .rev()
        .map(str::trim)
        .find(|line| line.starts_with('['))
        .and_then(header_name);
    let key = line
        .split_once('=')
        .map(|(key, _)| key.trim().trim_matches(['"', '\'']));
    match (section, key) {
        (Some(section), Some(key)) if !key.is_empty() => Some(format!("{section}.{key}")),
        (None, Some(key)) if !key.is_empty() => Some(key.to_owned()),
        (section, _) => section,
    }
}

/// Rewrites serde's wording for a sysadmin: "unknown field `x`, expected one
/// of `a`, `b`" becomes "unknown key (expected one of a, b)", Rust type names
/// become TOML ones, and only the first line is kept.
fn tidy_message(message: &str) -> String {
    let message = message.lines().next().unwrap_or_default().trim();
    if let Some(rest) = message.strip_prefix("unknown field `") {
        let expected = rest.split_once("`, ").map(|(_, expected)| expected);
        return match expected {
            Some(expected) if expected.starts_with("expected") => {
                format!("unknown key ({})", expected.replace('`', ""))
            }
            _ => "unknown key".to_owned(),
        };
    }
    let Some((head, expected)) = message.rsplit_once(", expected ") else {
        return message.to_owned();
    };
    let expected = match expected {
        "u16" => "an integer from 0 to 65535",
        "u32" => "an integer from 0 to 4294967295",
        "u64" | "usize" => "a non-negative integer",
        "a boolean" => "true or false",
        "a sequence" => "an array",
        other if other.starts_with("struct ") => "a table",
        other => other,
    };
    format!("{head}, expected {expected}")
}
