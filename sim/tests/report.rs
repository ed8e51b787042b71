//! The HTML/SVG picture of a history: lanes, faults, phases, witnesses, escaping, and that the
//! output is well-formed XML and deterministic.

use std::collections::BTreeMap;

use tidepool_sim::checker::{Anomaly, Finding, Witness, check};
use tidepool_sim::history::{
    AssignOp, CommitOp, Fault, History, Op, PartitionOffset, Phase, PollOp, Record, Recorder,
    RunMeta, SendOp, TopicPartition,
};
use tidepool_sim::report::{MAX_PLOT_WIDTH, report_html, timeline_svg};

const NASTY: &str = "<&>\"'\u{1}";

fn send(value: &str, offset: Option<i64>) -> Op {
    Op::Send(SendOp {
        topic: "t".to_owned(),
        partition: Some(0),
        key: None,
        value: Some(value.to_owned()),
        offset,
    })
}

fn poll(records: &[(i64, &str)]) -> Op {
    Op::Poll(PollOp {
        consumer: "consumer-1".to_owned(),
        group: Some("g".to_owned()),
        generation: Some(1),
        records: records
            .iter()
            .map(|&(offset, value)| Record {
                topic: "t".to_owned(),
                partition: 0,
                offset,
                key: None,
                value: Some(value.to_owned()),
            })
            .collect(),
    })
}

/// Every kind of event once: ok / fail / info / unfinished sends (one with a value needing
/// escaping), a poll, a commit, an observation, a crash and restart, a phase. Returns the
/// history and the index of the acknowledged send's `ok`.
fn small_history() -> (History, u64) {
    let mut r = Recorder::new(RunMeta::default());
    let a = r.invoke(0, "producer-1", send(NASTY, None));
    let acked = r.ok(2, "producer-1", a, send(NASTY, Some(0)));
    let b = r.invoke(3, "producer-1", send("v1", None));
    r.fail(
        5,
        "producer-1",
        b,
        send("v1", None),
        Some(6),
        Some("NOT_LEADER".into()),
    );
    r.observe(
        6,
        "consumer-1",
        Op::Assign(AssignOp {
            consumer: "consumer-1".to_owned(),
            group: Some("g".to_owned()),
            generation: Some(1),
            partitions: vec![TopicPartition::new("t", 0)],
        }),
    );
    r.fault(
        7,
        "nemesis",
        Fault::Crash {
            host: "broker-1".to_owned(),
        },
    );
    let c = r.invoke(8, "producer-2", send("v2", None));
    r.info(
        10,
        "producer-2",
        c,
        send("v2", None),
        Some("timeout".into()),
    );
    r.invoke(10, "producer-2", send("v3", None));
    r.fault(
        11,
        "nemesis",
        Fault::Restart {
            host: "broker-1".to_owned(),
        },
    );
    r.phase(12, "sim", Phase::Heal);
    let p = r.invoke(13, "consumer-1", poll(&[]));
    r.ok(15, "consumer-1", p, poll(&[(1, "v9")]));
    let commit = Op::Commit(CommitOp {
        group: "g".to_owned(),
        generation: Some(1),
        member: "consumer-1".to_owned(),
        offsets: vec![PartitionOffset::new("t", 0, 2)],
    });
    let k = r.invoke(16, "consumer-1", commit.clone());
    r.ok(19, "consumer-1", k, commit);
    (r.finish().unwrap(), acked)
}

fn one_finding(events: Vec<u64>) -> BTreeMap<Anomaly, Finding> {
    let witness = Witness {
        events,
        partition: Some(TopicPartition::new("t", 0)),
        detail: format!("value {NASTY} lost"),
    };
    BTreeMap::from([(
        Anomaly::LostWrite,
        Finding {
            count: 1,
            allowed: false,
            allowed_because: None,
            witnesses: vec![witness],
        },
    )])
}

/// The values of `attribute` on every element that has it, in document order.
fn attribute_values(xml: &str, attribute: &str) -> Vec<String> {
    let needle = format!(" {attribute}=\"");
    xml.match_indices(&needle)
        .map(|(at, _)| {
            let rest = &xml[at + needle.len()..];
            rest[..rest.find('"').unwrap()].to_owned()
        })
        .collect()
}

#[test]
fn small_history_has_a_lane_per_process_and_every_mark() {
    let (history, acked) = small_history();
    let svg = timeline_svg(&history, &one_finding(vec![0, acked]));
    assert_well_formed(&svg);

    let lanes = attribute_values(&svg, "data-process");
    assert_eq!(
        lanes,
        [
            "broker-1",
            "consumer-1",
            "nemesis",
            "producer-1",
            "producer-2",
            "sim"
        ]
    );

    for text in [
        ">crash broker-1<",
        ">restart broker-1<",
        ">heal<",
        "send v1<",
        ">poll 1<",
        ">commit p0@2<",
        "send v3<",
        "broker-1 down from 7 ms to 11 ms",
        "witness #1 lost-write: value &lt;&amp;&gt;&quot;&#39;\u{FFFD} lost",
    ] {
        assert!(svg.contains(text), "missing {text:?} in\n{svg}");
    }
    for class in [
        "tp-ok", "tp-fail", "tp-info", "tp-open", "tp-fault", "tp-phase",
    ] {
        assert!(
            svg.contains(&format!("class=\"{class}")),
            "no element of class {class}"
        );
    }
    // The observation is a diamond, not a bar.
    assert_eq!(svg.matches("<g class=\"tp-obs\">").count(), 1);
    assert_eq!(svg.matches("<g class=\"tp-op\">").count(), 6);

    // One operation is a witness: outlined and numbered.
    assert_eq!(svg.matches("<g class=\"tp-op\"><title>").count(), 6);
    let outlined: Vec<&str> = svg
        .split("<g class=\"tp-op\">")
        .skip(1)
        .map(|op| &op[..op.find("</g>").unwrap()])
        .filter(|op| op.contains(" tp-wit\""))
        .collect();
    assert_eq!(outlined.len(), 1, "{outlined:?}");
    assert!(outlined[0].contains("class=\"tp-ok tp-wit\""));
    assert!(outlined[0].contains("<text class=\"tp-num\""));
    assert!(outlined[0].contains(">1</text>"));

    // The nasty value appears only escaped.
    assert!(svg.contains("&lt;&amp;&gt;&quot;"));
    assert!(!svg.contains(NASTY));
    assert!(!svg.contains('\u{1}'));
}

#[test]
fn output_is_deterministic() {
    let (history, acked) = small_history();
    let findings = one_finding(vec![acked]);
    assert_eq!(
        timeline_svg(&history, &findings),
        timeline_svg(&history.clone(), &findings.clone())
    );
    let lines = vec!["INVALID: lost-write 1".to_owned()];
    assert_eq!(
        report_html("seed 1", &history, &findings, &lines),
        report_html("seed 1", &history, &findings, &lines)
    );
}

#[test]
fn empty_history_gives_a_valid_svg() {
    let svg = timeline_svg(&History::default(), &BTreeMap::new());
    assert_well_formed(&svg);
    assert!(svg.starts_with("<svg "));
    assert!(svg.contains("empty history"));
    assert!(attribute_values(&svg, "data-process").is_empty());
    assert_well_formed(&report_html(
        "empty",
        &History::default(),
        &BTreeMap::new(),
        &[],
    ));
}

#[test]
fn html_page_is_standalone_and_lists_the_findings() {
    let (history, acked) = small_history();
    let findings = one_finding(vec![0, acked]);
    let lines = vec![format!("summary with {NASTY}")];
    let page = report_html("run <7> & co", &history, &findings, &lines);
    assert!(page.starts_with("<!DOCTYPE html>"));
    assert_well_formed(&page);
    assert!(page.contains("<title>run &lt;7&gt; &amp; co</title>"));
    assert!(page.contains("<li>summary with &lt;&amp;&gt;&quot;&#39;\u{FFFD}</li>"));
    assert!(page.contains("<td>lost-write</td><td class=\"violation\">violation</td>"));
    assert!(page.contains(&format!("<td>0, {acked}</td><td>t/0</td>")));
    assert!(page.contains(&timeline_svg(&history, &findings)));
    for external in ["src=", "href=", "@import", "url(http"] {
        assert!(!page.contains(external), "external resource: {external}");
    }
}

#[test]
fn checker_findings_are_outlined() {
    let mut r = Recorder::new(RunMeta::default());
    for (offset, value) in ["v0", "v1", "v2"].into_iter().enumerate() {
        let time = offset as u64 * 2;
        let invoke = r.invoke(time, "producer-1", send(value, None));
        r.ok(
            time + 1,
            "producer-1",
            invoke,
            send(value, Some(offset as i64)),
        );
    }
    let p = r.invoke(10, "consumer-1", poll(&[]));
    r.ok(11, "consumer-1", p, poll(&[(0, "v0")]));
    let p = r.invoke(12, "consumer-1", poll(&[]));
    r.ok(13, "consumer-1", p, poll(&[(2, "v2")]));
    let history = r.finish().unwrap();
    let report = check(&history, &history.meta.config);
    assert!(!report.is_valid(), "{}", report.summary());
    let svg = timeline_svg(&history, &report.anomalies);
    assert_well_formed(&svg);
    assert!(svg.contains(" tp-wit\""));
    let page = report_html(
        "lost",
        &history,
        &report.anomalies,
        &[report.summary().to_owned()],
    );
    assert_well_formed(&page);
    for anomaly in report.anomalies.keys() {
        assert!(page.contains(&format!("<td>{anomaly}</td>")));
    }
}

#[test]
fn long_histories_stay_bounded_and_elide_labels() {
    let mut r = Recorder::new(RunMeta::default());
    for i in 0..2000u64 {
        let process = format!("producer-{}", i % 7);
        let value = format!("value-{i}");
        let invoke = r.invoke(i * 50, process.as_str(), send(&value, None));
        r.ok(
            i * 50 + 30,
            process.as_str(),
            invoke,
            send(&value, Some(i as i64)),
        );
        if i % 100 == 0 {
            r.fault(i * 50 + 10, "nemesis", Fault::Heal);
        }
    }
    let history = r.finish().unwrap();
    let svg = timeline_svg(&history, &BTreeMap::new());
    assert_well_formed(&svg);
    let width: f64 = attribute_values(&svg, "width")[0].parse().unwrap();
    assert!(width <= MAX_PLOT_WIDTH + 400.0, "width {width}");
    let bars = svg.matches("<g class=\"tp-op\">").count();
    assert_eq!(bars, 2000);
    let labels = svg.matches("<text class=\"tp-lbl\" x=").count();
    assert!(labels < bars / 2, "{labels} labels for {bars} bars");
    assert_eq!(
        attribute_values(&svg, "data-process"),
        [
            "nemesis",
            "producer-0",
            "producer-1",
            "producer-2",
            "producer-3",
            "producer-4",
            "producer-5",
            "producer-6"
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// A small XML well-formedness check: tags nest and match, attributes are quoted and unique,
// `<` never appears in text or values, every `&` starts a known reference, no control
// characters, one root element. Enough to catch broken escaping or nesting.

fn assert_well_formed(xml: &str) {
    if let Err(error) = well_formed(xml) {
        panic!("not well-formed: {error}\n{xml}");
    }
}

fn well_formed(xml: &str) -> Result<(), String> {
    let mut stack: Vec<&str> = Vec::new();
    let mut roots = 0;
    let mut rest = xml;
    loop {
        let lt = rest.find('<').unwrap_or(rest.len());
        let text = &rest[..lt];
        check_text(text)?;
        if stack.is_empty() && !text.trim().is_empty() {
            return Err(format!("text outside the root: {text:?}"));
        }
        rest = &rest[lt..];
        if rest.is_empty() {
            break;
        }
        if let Some(comment) = rest.strip_prefix("<!--") {
            let end = comment.find("-->").ok_or("unterminated comment")?;
            rest = &comment[end + 3..];
        } else if rest.starts_with("<!DOCTYPE") || rest.starts_with("<?") {
            if !stack.is_empty() || roots > 0 {
                return Err("declaration after the root started".into());
            }
            rest = &rest[rest.find('>').ok_or("unterminated declaration")? + 1..];
        } else if let Some(close) = rest.strip_prefix("</") {
            let end = close.find('>').ok_or("unterminated end tag")?;
            let name = close[..end].trim_end();
            match stack.pop() {
                Some(open) if open == name => {}
                other => return Err(format!("</{name}> closes {other:?}")),
            }
            rest = &close[end + 1..];
        } else {
            let (name, after, self_closing) = start_tag(&rest[1..])?;
            if stack.is_empty() {
                roots += 1;
            }
            if !self_closing {
                stack.push(name);
            }
            rest = after;
        }
    }
    if let Some(open) = stack.last() {
        return Err(format!("<{open}> never closed"));
    }
    if roots != 1 {
        return Err(format!("{roots} root elements"));
    }
    Ok(())
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | ':' | '.')
}

/// Parses `name attr="v" ...>` or `.../>`; returns the name, what follows, and whether the
/// element closed itself.
fn start_tag(tag: &str) -> Result<(&str, &str, bool), String> {
    let name_end = tag.find(|c| !is_name_char(c)).ok_or("unterminated tag")?;
    let name = &tag[..name_end];
    if name.is_empty() {
        return Err(format!("bad tag at {:?}", &tag[..tag.len().min(20)]));
    }
    let mut rest = &tag[name_end..];
    let mut seen: Vec<&str> = Vec::new();
    loop {
        let trimmed = rest.trim_start();
        if let Some(after) = trimmed.strip_prefix("/>") {
            return Ok((name, after, true));
        }
        if let Some(after) = trimmed.strip_prefix('>') {
            return Ok((name, after, false));
        }
        if trimmed.len() == rest.len() {
            return Err(format!("<{name}>: no space before attribute"));
        }
        let attr_end = trimmed
            .find(|c| !is_name_char(c))
            .ok_or("unterminated attribute")?;
        let attribute = &trimmed[..attr_end];
        if attribute.is_empty() {
            return Err(format!(
                "<{name}>: bad attribute at {:?}",
                &trimmed[..trimmed.len().min(20)]
            ));
        }
        if seen.contains(&attribute) {
            return Err(format!("<{name}>: duplicate attribute {attribute}"));
        }
        seen.push(attribute);
        let value = trimmed[attr_end..]
            .strip_prefix('=')
            .ok_or_else(|| format!("<{name}>: {attribute} has no value"))?;
        let quote = value.chars().next().filter(|&c| c == '"' || c == '\'');
        let quote = quote.ok_or_else(|| format!("<{name}>: {attribute} unquoted"))?;
        let body = &value[1..];
        let end = body.find(quote).ok_or("unterminated attribute value")?;
        let content = &body[..end];
        if content.contains('<') {
            return Err(format!("<{name}>: `<` in {attribute}"));
        }
        check_text(content)?;
        rest = &body[end + 1..];
    }
}

fn check_text(text: &str) -> Result<(), String> {
    if let Some(c) = text
        .chars()
        .find(|&c| c < ' ' && !matches!(c, '\t' | '\n' | '\r'))
    {
        return Err(format!("control character {c:?}"));
    }
    let mut rest = text;
    while let Some(at) = rest.find('&') {
        let reference = &rest[at + 1..];
        let end = reference.find(';').ok_or("`&` without `;`")?;
        let name = &reference[..end];
        let known = matches!(name, "amp" | "lt" | "gt" | "quot" | "apos")
            || name
                .strip_prefix("#x")
                .is_some_and(|hex| !hex.is_empty() && hex.chars().all(|c| c.is_ascii_hexdigit()))
            || name
                .strip_prefix('#')
                .is_some_and(|dec| !dec.is_empty() && dec.chars().all(|c| c.is_ascii_digit()));
        if !known {
            return Err(format!("unknown reference &{name};"));
        }
        rest = &reference[end + 1..];
    }
    Ok(())
}

#[test]
fn the_well_formedness_check_rejects_broken_xml() {
    for bad in [
        "<a><b></a></b>",
        "<a x=\"1\" x=\"2\"/>",
        "<a>1 < 2</a>",
        "<a>Tom & Jerry</a>",
        "<a x=1/>",
        "<a/><b/>",
        "<a>\u{1}</a>",
        "<a>",
    ] {
        assert!(well_formed(bad).is_err(), "accepted {bad:?}");
    }
    assert!(well_formed("<!DOCTYPE html>\n<a x='&lt;'><b/>t&amp;&#39;</a>\n").is_ok());
}
