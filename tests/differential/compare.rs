//! Comparing two normalised answers, the allow-list, and the report.

use std::fmt::Write as _;

use kafka_protocol::ResponseError;
use serde_json::Value;

pub const ABSENT: &str = "<absent>";

#[derive(Debug, Clone)]
pub struct Difference {
    pub scenario: String,
    pub step: String,
    pub path: String,
    pub tidepool: Value,
    pub kafka: Value,
}

impl Difference {
    /// Error messages are compared, but a different wording is the softer class: reported,
    /// never failing. Error codes are compared exactly.
    pub fn is_message(&self) -> bool {
        self.path.ends_with("/error_message")
    }
}

/// Every leaf where the two trees differ, depth first, objects by key.
pub fn diff(tidepool: &Value, kafka: &Value, path: &str, out: &mut Vec<(String, Value, Value)>) {
    match (tidepool, kafka) {
        (Value::Object(a), Value::Object(b)) => {
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort();
            keys.dedup();
            for key in keys {
                let child = format!("{path}/{key}");
                match (a.get(key), b.get(key)) {
                    (Some(x), Some(y)) => diff(x, y, &child, out),
                    (x, y) => out.push((child, or_absent(x), or_absent(y))),
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            for index in 0..a.len().max(b.len()) {
                let child = format!("{path}/{index}");
                match (a.get(index), b.get(index)) {
                    (Some(x), Some(y)) => diff(x, y, &child, out),
                    (x, y) => out.push((child, or_absent(x), or_absent(y))),
                }
            }
        }
        (x, y) if x != y => out.push((path.to_owned(), x.clone(), y.clone())),
        _ => {}
    }
}

fn or_absent(value: Option<&Value>) -> Value {
    value
        .cloned()
        .unwrap_or_else(|| Value::String(ABSENT.to_owned()))
}

/// One accepted difference, from tests/differential/allowed.json.
#[derive(Debug)]
pub struct Allowed {
    pub scenario: String,
    pub step: String,
    pub path: String,
    /// When present, the difference must also show exactly these values.
    pub tidepool: Option<Value>,
    pub kafka: Option<Value>,
    pub reason: String,
    pub used: usize,
}

pub fn parse_allow_list(text: &str) -> Vec<Allowed> {
    let entries: Vec<Value> = serde_json::from_str(text).expect("allowed.json is a JSON list");
    entries
        .into_iter()
        .map(|entry| {
            let field = |name: &str| {
                entry[name]
                    .as_str()
                    .unwrap_or_else(|| panic!("allowed.json: entry without {name:?}: {entry}"))
                    .to_owned()
            };
            let reason = field("reason");
            assert!(
                reason.trim().len() >= 10,
                "allowed.json: give a real reason: {entry}"
            );
            Allowed {
                scenario: field("scenario"),
                step: field("step"),
                path: field("path"),
                tidepool: entry.get("tidepool").cloned(),
                kafka: entry.get("kafka").cloned(),
                reason,
                used: 0,
            }
        })
        .collect()
}

impl Allowed {
    pub fn matches(&self, difference: &Difference) -> bool {
        glob(&self.scenario, &difference.scenario)
            && glob(&self.step, &difference.step)
            && glob(&self.path, &difference.path)
            && self
                .tidepool
                .as_ref()
                .is_none_or(|value| *value == difference.tidepool)
            && self
                .kafka
                .as_ref()
                .is_none_or(|value| *value == difference.kafka)
    }
}

/// `*` matches any run of characters, `/` included; everything else literally.
pub fn glob(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || text.len() < first.len() + last.len() || !text.ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for middle in &parts[1..parts.len() - 1] {
        match rest.find(middle) {
            Some(at) => rest = &rest[at + middle.len()..],
            None => return false,
        }
    }
    true
}

/// A value for the report; error codes with their names.
pub fn show(path: &str, value: &Value) -> String {
    if path.ends_with("error_code")
        && let Some(code) = value.as_i64()
    {
        let name = i16::try_from(code)
            .ok()
            .and_then(ResponseError::try_from_code)
            .map(|error| format!("{error:?}"))
            .unwrap_or_else(|| {
                if code == 0 {
                    "NONE".to_owned()
                } else {
                    "?".to_owned()
                }
            });
        return format!("{code} ({name})");
    }
    let text = value.to_string();
    if text.chars().count() > 300 {
        let head: String = text.chars().take(300).collect();
        format!("{head}… ({} chars)", text.len())
    } else {
        text
    }
}

pub struct Verdict {
    pub report: String,
    pub failures: usize,
}

/// The report: every difference (allowed ones marked with their reason, message differences
/// as their own class), then stale allow-list entries.
pub fn report(
    scenarios: &[String],
    differences: &[Difference],
    allowed: &mut [Allowed],
) -> Verdict {
    let mut out = String::new();
    let mut failures = 0;
    let (mut allowed_count, mut messages) = (0, 0);
    let _ = writeln!(
        out,
        "differential: Tidepool vs Apache Kafka, {} scenarios, {} differences",
        scenarios.len(),
        differences.len()
    );
    for scenario in scenarios {
        let here: Vec<&Difference> = differences
            .iter()
            .filter(|difference| &difference.scenario == scenario)
            .collect();
        let _ = writeln!(out, "\n== {scenario}: {} differences", here.len());
        for difference in here {
            let line = format!(
                "{} / {} / {}: tidepool={} kafka={}",
                difference.scenario,
                difference.step,
                difference.path,
                show(&difference.path, &difference.tidepool),
                show(&difference.path, &difference.kafka)
            );
            if let Some(entry) = allowed.iter_mut().find(|entry| entry.matches(difference)) {
                entry.used += 1;
                allowed_count += 1;
                let _ = writeln!(out, "  allowed  {line}\n           ({})", entry.reason);
            } else if difference.is_message() {
                messages += 1;
                let _ = writeln!(out, "  message  {line}");
            } else {
                failures += 1;
                let _ = writeln!(out, "  DIFFERS  {line}");
            }
        }
    }
    let stale: Vec<&Allowed> = allowed.iter().filter(|entry| entry.used == 0).collect();
    if !stale.is_empty() {
        let _ = writeln!(out, "\n== stale allow-list entries (matched nothing)");
        for entry in &stale {
            failures += 1;
            let _ = writeln!(
                out,
                "  STALE    {} / {} / {} ({})",
                entry.scenario, entry.step, entry.path, entry.reason
            );
        }
    }
    let _ = writeln!(
        out,
        "\nsummary: {} differences: {failures} failing (not allowed, or stale entries: {}), \
         {allowed_count} allowed, {messages} error-message wordings",
        differences.len(),
        stale.len()
    );
    Verdict {
        report: out,
        failures,
    }
}
