//! The event: what clients post to the collector and what `events.raw` carries.
//!
//! On the wire it is a JSON object `{"id", "tenant", "type", "timestamp", "payload"}`. The
//! timestamp is the time the event happened, in epoch milliseconds; the collector also accepts
//! an RFC 3339 string (`2024-05-01T12:00:00.250Z`, any offset) and stores it converted, so every
//! consumer only ever sees an integer. Sub-millisecond digits are truncated; a leap second (`:60`)
//! is refused rather than guessed at.
//!
//! Two levels of checking:
//! - [`Event::validate`]: the shape every stored event has, independent of any configuration,
//!   so a stage can tell a poison record from a real event whatever the collector's settings.
//! - [`Event::validate_with`]: what the collector admits, given [`EventLimits`] and the current
//!   wall clock (payload size, timestamps not absurdly old or in the future).
//!
//! Parsing a request body ([`parse_batch`]) goes through `serde_json::Value` field by field
//! rather than serde's derive, to name every problem of every event with its index; unknown
//! fields are refused there, since the collector re-serialises events and would otherwise drop
//! them without a word. Deserialising an [`Event`] from a record (consumers) tolerates unknown
//! fields, so adding a field later does not turn older stages' input into poison.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

/// Longest event id, in bytes.
pub const ID_BYTES_MAX: usize = 128;
/// Longest tenant, in bytes.
pub const TENANT_BYTES_MAX: usize = 64;
/// Longest type, in bytes.
pub const TYPE_BYTES_MAX: usize = 64;
/// 9999-12-31T23:59:59.999Z: the last instant RFC 3339 can write, so every stored timestamp
/// has a textual form.
pub const TIMESTAMP_MS_MAX: i64 = 253_402_300_799_999;

const FIELDS: [&str; 5] = ["id", "tenant", "type", "timestamp", "payload"];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Unique per event: consumers deduplicate on it, which is what makes a client's retry of
    /// a refused or failed request safe.
    pub id: String,
    /// The record key: one tenant's events stay in order on one partition.
    pub tenant: String,
    #[serde(rename = "type")]
    pub kind: String,
    /// When the event happened, epoch milliseconds (the record's own timestamp is the time
    /// the collector received it).
    #[serde(deserialize_with = "timestamp_ms")]
    pub timestamp: i64,
    /// Always a JSON object.
    pub payload: Value,
}

/// What the collector admits beyond an event's shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventLimits {
    /// The payload's size as compact JSON.
    pub payload_bytes_max: usize,
    /// Earliest timestamp admitted (epoch ms).
    pub timestamp_min_ms: i64,
    /// How far past the collector's wall clock a timestamp may be: clients' clocks drift, but
    /// an event from next year is a bug.
    pub timestamp_future_max_ms: i64,
}

impl Default for EventLimits {
    fn default() -> EventLimits {
        EventLimits {
            payload_bytes_max: 64 << 10,
            // 2000-01-01T00:00:00Z: earlier is almost always a seconds/milliseconds mix-up
            // or a zero that was never set.
            timestamp_min_ms: 946_684_800_000,
            timestamp_future_max_ms: 60 * 60 * 1000,
        }
    }
}

impl Event {
    /// Checks the shape every stored event has; the reason names each field that is wrong.
    pub fn validate(&self) -> Result<(), String> {
        join(self.shape_problems())
    }

    /// Checks the event as the collector admits it: its shape, then `limits` against `now_ms`
    /// (the collector's wall clock).
    pub fn validate_with(&self, limits: &EventLimits, now_ms: i64) -> Result<(), String> {
        let mut problems = self.shape_problems();
        if (0..=TIMESTAMP_MS_MAX).contains(&self.timestamp) {
            if self.timestamp < limits.timestamp_min_ms {
                problems.push(format!(
                    "timestamp {} is before the earliest admitted ({}); it must be epoch \
                     milliseconds, not seconds",
                    self.timestamp, limits.timestamp_min_ms
                ));
            }
            let latest = now_ms.saturating_add(limits.timestamp_future_max_ms);
            if self.timestamp > latest {
                problems.push(format!(
                    "timestamp {} is more than {} ms ahead of the collector's clock ({now_ms})",
                    self.timestamp, limits.timestamp_future_max_ms
                ));
            }
        }
        if self.payload.is_object() {
            let bytes = payload_bytes(&self.payload);
            if bytes > limits.payload_bytes_max {
                problems.push(format!(
                    "payload is {bytes} bytes as JSON, more than the {} allowed",
                    limits.payload_bytes_max
                ));
            }
        }
        join(problems)
    }

    fn shape_problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if let Err(reason) = check_name(&self.id, ID_BYTES_MAX) {
            problems.push(format!("id {reason}"));
        }
        if let Err(reason) = check_name(&self.tenant, TENANT_BYTES_MAX) {
            problems.push(format!("tenant {reason}"));
        }
        if let Err(reason) = check_kind(&self.kind) {
            problems.push(format!("type {reason}"));
        }
        if !(0..=TIMESTAMP_MS_MAX).contains(&self.timestamp) {
            problems.push(format!(
                "timestamp {} is outside 0..={TIMESTAMP_MS_MAX} (epoch ms, 1970 to 9999)",
                self.timestamp
            ));
        }
        if !self.payload.is_object() {
            problems.push(format!(
                "payload must be a JSON object, not {}",
                json_kind(&self.payload)
            ));
        }
        problems
    }

    /// The event as `events.raw` stores it: compact JSON, timestamp as an integer.
    pub fn to_json(&self) -> Vec<u8> {
        // Serialising strings, an integer and a Value cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

fn join(problems: Vec<String>) -> Result<(), String> {
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

fn payload_bytes(payload: &Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    // Counted rather than collected: a payload is measured before we know it fits.
    let mut count = Count(0);
    let _ = serde_json::to_writer(&mut count, payload);
    count.0
}

/// Ids and tenants become record keys, header values and store keys: a small, unambiguous
/// alphabet keeps them safe in all three (and in logs).
fn check_name(value: &str, max: usize) -> Result<(), String> {
    if value.is_empty() {
        return Err("must not be empty".to_owned());
    }
    if value.len() > max {
        return Err(format!("is {} bytes, more than {max}", value.len()));
    }
    if let Some(bad) = value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-')))
    {
        return Err(format!(
            "contains {bad:?}; only A-Z a-z 0-9 . _ : - are allowed"
        ));
    }
    Ok(())
}

fn check_kind(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err("must not be empty".to_owned());
    }
    if value.len() > TYPE_BYTES_MAX {
        return Err(format!(
            "is {} bytes, more than {TYPE_BYTES_MAX}",
            value.len()
        ));
    }
    if value.chars().any(char::is_control) {
        return Err("must not contain control characters".to_owned());
    }
    Ok(())
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn timestamp_ms<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
    match Value::deserialize(deserializer)? {
        Value::Number(number) => number.as_i64().ok_or_else(|| {
            serde::de::Error::custom(format!("timestamp {number} is not an integer"))
        }),
        Value::String(text) => parse_rfc3339_ms(&text).map_err(serde::de::Error::custom),
        other => Err(serde::de::Error::custom(format!(
            "timestamp must be epoch milliseconds or an RFC 3339 string, not {}",
            json_kind(&other)
        ))),
    }
}

/// One event's problems, as the collector reports them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EventError {
    /// Position in the request (0 for a single object).
    pub index: usize,
    /// The id as sent, when it was a string.
    pub id: Option<String>,
    pub reason: String,
}

/// Why a request body was refused as a whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchError {
    /// Not JSON at all.
    Malformed(String),
    /// JSON, but neither an object nor an array.
    NotEvents(&'static str),
    Empty,
    TooMany {
        count: usize,
        max: usize,
    },
    /// Some events are invalid; every problem, by index.
    Invalid(Vec<EventError>),
}

impl fmt::Display for BatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BatchError::Malformed(reason) => write!(f, "the body is not valid JSON: {reason}"),
            BatchError::NotEvents(kind) => write!(
                f,
                "the body must be an event object or an array of them, not {kind}"
            ),
            BatchError::Empty => write!(f, "the request holds no events"),
            BatchError::TooMany { count, max } => write!(
                f,
                "the request holds {count} events, more than the {max} allowed per request"
            ),
            BatchError::Invalid(errors) => {
                write!(
                    f,
                    "{} event(s) are invalid; none was accepted",
                    errors.len()
                )
            }
        }
    }
}

impl std::error::Error for BatchError {}

/// Parses a request body: one event object, or an array of them. Every event is checked with
/// [`Event::validate_with`], ids must be unique within the request, and either all events are
/// returned or none.
pub fn parse_batch(
    body: &[u8],
    limits: &EventLimits,
    now_ms: i64,
    events_max: usize,
) -> Result<Vec<Event>, BatchError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|error| BatchError::Malformed(error.to_string()))?;
    let items = match value {
        Value::Array(items) => items,
        object @ Value::Object(_) => vec![object],
        other => return Err(BatchError::NotEvents(json_kind(&other))),
    };
    if items.is_empty() {
        return Err(BatchError::Empty);
    }
    if items.len() > events_max {
        return Err(BatchError::TooMany {
            count: items.len(),
            max: events_max,
        });
    }
    let mut events = Vec::with_capacity(items.len());
    let mut errors = Vec::new();
    let mut first_index_of: BTreeMap<String, usize> = BTreeMap::new();
    for (index, item) in items.into_iter().enumerate() {
        let id = item.get("id").and_then(Value::as_str).map(str::to_owned);
        let mut problems = Vec::new();
        match event_from_value(item) {
            Ok(event) => {
                if let Err(reason) = event.validate_with(limits, now_ms) {
                    problems.push(reason);
                }
                match first_index_of.get(&event.id) {
                    Some(first) => problems.push(format!(
                        "duplicate id: event {first} of this request has it too"
                    )),
                    None => {
                        first_index_of.insert(event.id.clone(), index);
                    }
                }
                events.push(event);
            }
            Err(reasons) => problems.extend(reasons),
        }
        if !problems.is_empty() {
            errors.push(EventError {
                index,
                id,
                reason: problems.join("; "),
            });
        }
    }
    if errors.is_empty() {
        Ok(events)
    } else {
        Err(BatchError::Invalid(errors))
    }
}

/// The fields of one event, or every field problem found.
fn event_from_value(value: Value) -> Result<Event, Vec<String>> {
    let Value::Object(mut object) = value else {
        return Err(vec![format!(
            "an event must be a JSON object, not {}",
            json_kind(&value)
        )]);
    };
    let mut problems: Vec<String> = object
        .keys()
        .filter(|key| !FIELDS.contains(&key.as_str()))
        .map(|key| format!("unknown field {key:?} (fields: {})", FIELDS.join(", ")))
        .collect();
    let id = take_string(&mut object, "id", &mut problems);
    let tenant = take_string(&mut object, "tenant", &mut problems);
    let kind = take_string(&mut object, "type", &mut problems);
    let timestamp = match object.remove("timestamp") {
        None => {
            problems.push("timestamp is missing".to_owned());
            None
        }
        Some(Value::Number(number)) => match number.as_i64() {
            Some(ms) => Some(ms),
            None => {
                problems.push(format!(
                    "timestamp {number} is not an integer number of epoch milliseconds"
                ));
                None
            }
        },
        Some(Value::String(text)) => match parse_rfc3339_ms(&text) {
            Ok(ms) => Some(ms),
            Err(reason) => {
                problems.push(reason);
                None
            }
        },
        Some(other) => {
            problems.push(format!(
                "timestamp must be epoch milliseconds or an RFC 3339 string, not {}",
                json_kind(&other)
            ));
            None
        }
    };
    let payload = object.remove("payload");
    if payload.is_none() {
        problems.push("payload is missing (an object, possibly empty)".to_owned());
    }
    match (id, tenant, kind, timestamp, payload) {
        (Some(id), Some(tenant), Some(kind), Some(timestamp), Some(payload))
            if problems.is_empty() =>
        {
            Ok(Event {
                id,
                tenant,
                kind,
                timestamp,
                payload,
            })
        }
        _ => Err(problems),
    }
}

fn take_string(
    object: &mut Map<String, Value>,
    field: &str,
    problems: &mut Vec<String>,
) -> Option<String> {
    match object.remove(field) {
        Some(Value::String(text)) => Some(text),
        None => {
            problems.push(format!("{field} is missing"));
            None
        }
        Some(other) => {
            problems.push(format!(
                "{field} must be a string, not {}",
                json_kind(&other)
            ));
            None
        }
    }
}

/// Epoch milliseconds of an RFC 3339 date-time: `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`; `t`,
/// `z` and a space for `T` are accepted, as RFC 3339 §5.6 allows.
pub fn parse_rfc3339_ms(text: &str) -> Result<i64, String> {
    let bad = |why: &str| {
        Err(format!(
            "timestamp {text:?} is not RFC 3339 (YYYY-MM-DDTHH:MM:SS[.fff]Z or ±HH:MM): {why}"
        ))
    };
    let bytes = text.as_bytes();
    let digits = |range: std::ops::Range<usize>| -> Option<i64> {
        let slice = bytes.get(range)?;
        if slice.is_empty() || !slice.iter().all(u8::is_ascii_digit) {
            return None;
        }
        Some(
            slice
                .iter()
                .fold(0i64, |n, digit| n * 10 + i64::from(digit - b'0')),
        )
    };
    let separators_ok = bytes.len() >= 20
        && bytes[4] == b'-'
        && bytes[7] == b'-'
        && matches!(bytes[10], b'T' | b't' | b' ')
        && bytes[13] == b':'
        && bytes[16] == b':';
    if !separators_ok {
        return bad("wrong layout");
    }
    let (Some(year), Some(month), Some(day), Some(hour), Some(minute), Some(second)) = (
        digits(0..4),
        digits(5..7),
        digits(8..10),
        digits(11..13),
        digits(14..16),
        digits(17..19),
    ) else {
        return bad("a date or time field is not digits");
    };
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return bad("no such date");
    }
    if hour > 23 || minute > 59 || second > 59 {
        return bad("no such time of day (leap seconds are not accepted)");
    }
    let mut at = 19;
    let mut millis = 0;
    if bytes[at] == b'.' {
        let start = at + 1;
        let mut end = start;
        while end < bytes.len() && bytes[end].is_ascii_digit() {
            end += 1;
        }
        if end == start {
            return bad("a fraction needs digits");
        }
        // Milliseconds are the stored precision: further digits are truncated.
        let kept = (end - start).min(3);
        let scale = [100, 10, 1][kept - 1];
        millis = digits(start..start + kept).unwrap_or(0) * scale;
        at = end;
    }
    let offset_minutes = match &bytes[at..] {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2]
            if [h1, h2, m1, m2].iter().all(|d| d.is_ascii_digit()) =>
        {
            let two = |tens: u8, units: u8| i64::from(tens - b'0') * 10 + i64::from(units - b'0');
            let (hours, minutes) = (two(*h1, *h2), two(*m1, *m2));
            if hours > 23 || minutes > 59 {
                return bad("no such offset");
            }
            let minutes = hours * 60 + minutes;
            if *sign == b'-' { -minutes } else { minutes }
        }
        _ => return bad("it must end in Z or an offset like +02:00"),
    };
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3_600 + minute * 60 + second - offset_minutes * 60;
    Ok(seconds * 1_000 + millis)
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: i64 = 1_714_564_800_000; // 2024-05-01T12:00:00Z

    fn event(id: &str) -> Value {
        json!({"id": id, "tenant": "acme", "type": "page.view", "timestamp": NOW, "payload": {}})
    }

    fn parse(body: &Value) -> Result<Vec<Event>, BatchError> {
        parse_batch(
            body.to_string().as_bytes(),
            &EventLimits::default(),
            NOW,
            10,
        )
    }

    fn reasons(body: &Value) -> Vec<(usize, String)> {
        match parse(body) {
            Err(BatchError::Invalid(errors)) => {
                errors.into_iter().map(|e| (e.index, e.reason)).collect()
            }
            other => panic!("expected per-event errors, got {other:?}"),
        }
    }

    #[test]
    fn rfc3339_timestamps_become_epoch_milliseconds() {
        assert_eq!(parse_rfc3339_ms("2024-05-01T12:00:00Z"), Ok(NOW));
        assert_eq!(parse_rfc3339_ms("2024-05-01T12:00:00.250Z"), Ok(NOW + 250));
        assert_eq!(parse_rfc3339_ms("2024-05-01t12:00:00.2509z"), Ok(NOW + 250));
        assert_eq!(parse_rfc3339_ms("2024-05-01T14:00:00+02:00"), Ok(NOW));
        assert_eq!(
            parse_rfc3339_ms("2024-05-01 09:30:00.5-02:30"),
            Ok(NOW + 500)
        );
        assert_eq!(parse_rfc3339_ms("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(
            parse_rfc3339_ms("2000-02-29T00:00:00Z"),
            Ok(951_782_400_000)
        );
        assert_eq!(
            parse_rfc3339_ms("9999-12-31T23:59:59.999Z"),
            Ok(TIMESTAMP_MS_MAX)
        );
        for bad in [
            "2024-05-01",
            "2024-05-01T12:00:00",
            "2023-02-29T00:00:00Z",
            "2024-13-01T00:00:00Z",
            "2024-05-01T24:00:00Z",
            "2024-05-01T23:59:60Z",
            "2024-05-01T12:00:00.Z",
            "2024-05-01T12:00:00+2:00",
            "2024-05-01T12:00:00+02:00x",
            "２０２４-05-01T12:00:00Z",
        ] {
            assert!(parse_rfc3339_ms(bad).is_err(), "{bad} parsed");
        }
    }

    #[test]
    fn one_object_or_an_array_parses_and_string_timestamps_are_stored_as_integers() {
        let single = parse(&event("a")).unwrap();
        assert_eq!(single.len(), 1);
        let mut second = event("b");
        second["timestamp"] = json!("2024-05-01T12:00:00.007Z");
        let both = parse(&json!([event("a"), second])).unwrap();
        assert_eq!(both[1].timestamp, NOW + 7);
        let stored: Value = serde_json::from_slice(&both[1].to_json()).unwrap();
        assert_eq!(stored["timestamp"], json!(NOW + 7));
        assert_eq!(stored["type"], json!("page.view"));
        let back: Event = serde_json::from_slice(&both[1].to_json()).unwrap();
        assert_eq!(back, both[1]);
    }

    #[test]
    fn every_problem_is_named_with_its_index() {
        let mut long_id = event(&"x".repeat(129));
        long_id["tenant"] = json!("acme corp");
        let mut no_type = event("c");
        no_type.as_object_mut().unwrap().remove("type");
        no_type["extra"] = json!(1);
        let mut seconds = event("d");
        seconds["timestamp"] = json!(NOW / 1000);
        let mut future = event("e");
        future["timestamp"] = json!(NOW + 2 * 60 * 60 * 1000);
        let mut array_payload = event("f");
        array_payload["payload"] = json!([1]);
        let body = json!([
            event("a"),
            long_id,
            no_type,
            seconds,
            future,
            array_payload,
            event("a"),
            42
        ]);
        let found = reasons(&body);
        let indexes: Vec<usize> = found.iter().map(|(i, _)| *i).collect();
        assert_eq!(indexes, vec![1, 2, 3, 4, 5, 6, 7]);
        assert!(found[0].1.contains("id is 129 bytes, more than 128"));
        assert!(found[0].1.contains("tenant contains ' '"));
        assert!(found[1].1.contains("type is missing"));
        assert!(found[1].1.contains("unknown field \"extra\""));
        assert!(found[2].1.contains("not seconds"));
        assert!(found[3].1.contains("ahead of the collector's clock"));
        assert!(
            found[4]
                .1
                .contains("payload must be a JSON object, not an array")
        );
        assert!(found[5].1.contains("duplicate id: event 0"));
        assert!(found[6].1.contains("must be a JSON object, not a number"));
    }

    #[test]
    fn whole_body_problems() {
        assert!(matches!(
            parse_batch(b"{", &EventLimits::default(), NOW, 10),
            Err(BatchError::Malformed(_))
        ));
        assert_eq!(parse(&json!("x")), Err(BatchError::NotEvents("a string")));
        assert_eq!(parse(&json!([])), Err(BatchError::Empty));
        let many: Vec<Value> = (0..11).map(|i| event(&i.to_string())).collect();
        assert_eq!(
            parse(&Value::Array(many)),
            Err(BatchError::TooMany { count: 11, max: 10 })
        );
    }

    #[test]
    fn payload_size_is_limited_by_the_collector_but_not_by_the_shape() {
        let mut big = event("big");
        big["payload"] = json!({"blob": "x".repeat(100)});
        let limits = EventLimits {
            payload_bytes_max: 50,
            ..EventLimits::default()
        };
        let event = event_from_value(big).unwrap();
        assert!(event.validate().is_ok());
        let reason = event.validate_with(&limits, NOW).unwrap_err();
        assert!(reason.contains("payload is 111 bytes"), "{reason}");
    }

    #[test]
    fn the_shape_check_is_what_a_stage_applies() {
        let mut event = event_from_value(event("ok")).unwrap();
        assert_eq!(event.validate(), Ok(()));
        event.timestamp = -1;
        event.kind = "a\nb".to_owned();
        let reason = event.validate().unwrap_err();
        assert!(reason.contains("type must not contain control characters"));
        assert!(reason.contains("timestamp -1 is outside"));
    }
}
