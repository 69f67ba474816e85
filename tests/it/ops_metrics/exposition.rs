//! A strict parser for the Prometheus text exposition format (version
//! 0.0.4), and scraping `/metrics` with it.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use crate::common::http::{HttpResponse, http_get};

#[derive(Debug, Clone)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

#[derive(Debug, Default)]
pub struct Family {
    pub help: Option<String>,
    pub kind: Option<String>,
    pub samples: Vec<Sample>,
}

#[derive(Debug, Default)]
pub struct Exposition {
    pub families: BTreeMap<String, Family>,
}

impl Exposition {
    pub fn samples(&self) -> impl Iterator<Item = &Sample> {
        self.families.values().flat_map(|f| f.samples.iter())
    }

    /// The value of the series `name` with exactly these labels; None if absent.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let want: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.samples()
            .find(|s| s.name == name && s.labels == want)
            .map(|s| s.value)
    }

    /// The sum over the series of `name` whose labels include `labels`.
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples()
            .filter(|s| {
                s.name == name
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|s| s.value)
            .sum()
    }
}

fn valid_metric_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn valid_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !s.starts_with("__")
}

fn parse_value(s: &str) -> Result<f64, String> {
    match s {
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => s
            .parse::<f64>()
            .map_err(|e| format!("bad sample value {s:?}: {e}")),
    }
}

/// Parses `{k="v",...}` at the start of `s`; returns the labels and the rest.
fn parse_labels(s: &str) -> Result<(BTreeMap<String, String>, &str), String> {
    let mut labels = BTreeMap::new();
    let mut rest = s.strip_prefix('{').ok_or("labels must start with {")?;
    loop {
        if let Some(r) = rest.strip_prefix('}') {
            return Ok((labels, r));
        }
        let eq = rest.find('=').ok_or("label without =")?;
        let name = &rest[..eq];
        if !valid_label_name(name) {
            return Err(format!("invalid label name {name:?}"));
        }
        rest = rest[eq + 1..]
            .strip_prefix('"')
            .ok_or_else(|| format!("label {name} value not quoted"))?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next() {
                None => return Err(format!("unterminated value for label {name}")),
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    Some((_, 'n')) => value.push('\n'),
                    other => return Err(format!("bad escape {other:?} in label {name}")),
                },
                Some((_, '\n')) => return Err(format!("raw newline in label {name}")),
                Some((_, c)) => value.push(c),
            }
        };
        if labels.insert(name.to_string(), value).is_some() {
            return Err(format!("label {name} repeated"));
        }
        rest = &rest[end + 1..];
        if let Some(r) = rest.strip_prefix(',') {
            rest = r;
        } else if !rest.starts_with('}') {
            return Err(format!("expected , or }} after label {name}"));
        }
    }
}

/// The family a sample name belongs to, given the TYPEs seen so far.
fn family_of(name: &str, families: &BTreeMap<String, Family>) -> String {
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix)
            && families
                .get(base)
                .and_then(|f| f.kind.as_deref())
                .is_some_and(|k| k == "histogram" || k == "summary")
        {
            return base.to_string();
        }
    }
    name.to_string()
}

/// Parses and checks the exposition: syntax, HELP and TYPE for every family
/// (before its samples), a family's lines together, no duplicate series.
pub fn parse_exposition(text: &str) -> Result<Exposition, String> {
    if !text.is_empty() && !text.ends_with('\n') {
        return Err("the exposition must end with a newline".into());
    }
    let mut exp = Exposition::default();
    let mut finished: BTreeSet<String> = BTreeSet::new();
    let mut current: Option<String> = None;
    let mut series: BTreeSet<String> = BTreeSet::new();
    for (i, line) in text.lines().enumerate() {
        let at = |e: String| format!("line {}: {e}: {line:?}", i + 1);
        let mut switch_to = |name: &str, current: &mut Option<String>| -> Result<(), String> {
            if current.as_deref() != Some(name) {
                if finished.contains(name) {
                    return Err(format!("family {name} appears in two places"));
                }
                if let Some(c) = current.take() {
                    finished.insert(c);
                }
                *current = Some(name.to_string());
            }
            Ok(())
        };
        if line.trim().is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            let comment = comment.trim_start();
            let mut parts = comment.splitn(3, ' ');
            let keyword = parts.next().unwrap_or("");
            if keyword != "HELP" && keyword != "TYPE" {
                continue; // a plain comment
            }
            let name = parts.next().ok_or_else(|| at("no metric name".into()))?;
            if !valid_metric_name(name) {
                return Err(at(format!("invalid metric name {name:?}")));
            }
            let arg = parts.next().unwrap_or("").to_string();
            switch_to(name, &mut current).map_err(at)?;
            let fam = exp.families.entry(name.to_string()).or_default();
            if keyword == "HELP" {
                if fam.help.replace(arg).is_some() {
                    return Err(at(format!("second HELP for {name}")));
                }
            } else {
                if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&arg.as_str())
                {
                    return Err(at(format!("unknown TYPE {arg:?}")));
                }
                if !fam.samples.is_empty() {
                    return Err(at(format!("TYPE for {name} after its samples")));
                }
                if fam.kind.replace(arg).is_some() {
                    return Err(at(format!("second TYPE for {name}")));
                }
            }
            continue;
        }
        let name_end = line.find(['{', ' ']).ok_or_else(|| at("no value".into()))?;
        let name = &line[..name_end];
        if !valid_metric_name(name) {
            return Err(at(format!("invalid metric name {name:?}")));
        }
        let (labels, rest) = if line[name_end..].starts_with('{') {
            parse_labels(&line[name_end..]).map_err(at)?
        } else {
            (BTreeMap::new(), &line[name_end..])
        };
        let rest = rest
            .strip_prefix(' ')
            .ok_or_else(|| at("expected a space before the value".into()))?;
        let mut fields = rest.split(' ');
        let value = parse_value(fields.next().unwrap_or("")).map_err(at)?;
        if let Some(ts) = fields.next() {
            ts.parse::<i64>()
                .map_err(|e| at(format!("bad timestamp {ts:?}: {e}")))?;
        }
        if fields.next().is_some() {
            return Err(at("trailing fields".into()));
        }
        let family = family_of(name, &exp.families);
        switch_to(&family, &mut current).map_err(at)?;
        let key = format!("{name}{labels:?}");
        if !series.insert(key) {
            return Err(at("duplicate series".into()));
        }
        exp.families
            .entry(family)
            .or_default()
            .samples
            .push(Sample {
                name: name.to_string(),
                labels,
                value,
            });
    }
    for (name, fam) in &exp.families {
        if fam.help.as_deref().is_none_or(str::is_empty) {
            return Err(format!("family {name} has no HELP text"));
        }
        let kind = fam
            .kind
            .as_deref()
            .ok_or_else(|| format!("family {name} has no TYPE"))?;
        if kind == "counter" && !name.ends_with("_total") {
            return Err(format!("counter {name} should end in _total"));
        }
        if kind == "counter" {
            for s in &fam.samples {
                if !(s.value >= 0.0 && s.value.is_finite()) {
                    return Err(format!("counter sample {s:?} is not a finite non-negative"));
                }
            }
        }
    }
    Ok(exp)
}

/// Fetches and parses /metrics from `http`; panics with the body on any flaw.
pub async fn scrape(http: SocketAddr) -> Exposition {
    let r = http_get(http, "/metrics", &[]).await;
    check_response(&r)
}

pub fn check_response(r: &HttpResponse) -> Exposition {
    assert_eq!(r.status, 200, "/metrics answered {}: {}", r.status, r.body);
    let ct = r.header("content-type").unwrap_or("");
    assert!(
        ct.starts_with("text/plain") && ct.contains("version=0.0.4"),
        "/metrics Content-Type should be the Prometheus text format \
         (text/plain; version=0.0.4), got {ct:?}"
    );
    parse_exposition(&r.body).unwrap_or_else(|e| {
        panic!(
            "/metrics is not valid Prometheus text format: {e}\n{}",
            r.body
        )
    })
}

#[test]
fn parser_rejects_bad_expositions() {
    let good = "# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"1\"} 3\n";
    assert!(parse_exposition(good).is_ok());
    for bad in [
        "a_total 3\n",                                                 // no HELP/TYPE
        "# HELP a_total A.\n# TYPE a_total counter\na_total{x=1} 3\n", // unquoted
        "# HELP a_total A.\n# TYPE a_total counter\na_total 3 4 5\n",  // trailing
        "# HELP a_total A.\n# TYPE a_total counter\n1a 3\n",           // bad name
        "# HELP a_total A.\n# TYPE a_total counter\na_total x\n",      // bad value
        "# HELP a A.\n# TYPE a gauge\na 1\n# HELP b B.\n# TYPE b gauge\nb 1\na 2\n", // split
        "# HELP a_total A.\n# TYPE a_total counter\na_total 1\na_total 2\n", // duplicate
    ] {
        assert!(parse_exposition(bad).is_err(), "accepted {bad:?}");
    }
}
