//! A picture of a history (issue 8): an SVG timeline with one lane per process, and a
//! standalone HTML page around it with the checker's findings.
//!
//! Reading a failing seed's JSON lines to find out *when* a write was lost relative to a crash
//! is slow; the timeline puts operations, faults and phases on one time axis and outlines the
//! events the checker's witnesses name, numbered as in the HTML findings table.
//!
//! Output is a pure function of its input (ordered maps only, no clock), so a report can be
//! regenerated and diffed. It stays usable for histories of a few thousand events: the time
//! axis is capped at [`MAX_PLOT_WIDTH`] pixels, concurrent operations of one process are
//! stacked on at most [`MAX_TRACKS`] tracks, and labels that would not fit their bar are
//! left to the tooltip.
//!
//! ```
//! use tidepool_sim::checker::check;
//! use tidepool_sim::history::{Op, Recorder, RunMeta, SendOp};
//! use tidepool_sim::report::{report_html, timeline_svg};
//!
//! let mut recorder = Recorder::new(RunMeta::default());
//! let send = |offset| Op::Send(SendOp {
//!     topic: "t".into(), partition: Some(0), key: None, value: Some("v".into()), offset,
//! });
//! let invoke = recorder.invoke(0, "producer", send(None));
//! recorder.ok(1, "producer", invoke, send(Some(0)));
//! let history = recorder.finish().unwrap();
//! let report = check(&history, &history.meta.config);
//! let svg = timeline_svg(&history, &report.anomalies);
//! assert!(svg.starts_with("<svg"));
//! let page = report_html("seed 7", &history, &report.anomalies, &[report.summary().to_owned()]);
//! assert!(page.contains(&svg));
//! ```

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::checker::{Anomaly, Finding, Witness};
use crate::history::{Event, EventKind, Fault, History, Op, PartitionOffset, Phase};

/// Widest the time axis gets, in pixels; longer runs are compressed to fit.
pub const MAX_PLOT_WIDTH: f64 = 4000.0;
/// Most tracks one lane stacks concurrent operations on; beyond that they overlap.
pub const MAX_TRACKS: usize = 4;

const MIN_PLOT_WIDTH: f64 = 600.0;
const PREFERRED_PX_PER_MS: f64 = 8.0;
const LANE_NAME_WIDTH: f64 = 190.0;
const LANE_NAME_CHARS: usize = 26;
const RIGHT_MARGIN: f64 = 40.0;
/// How far past the last event an unfinished operation's bar runs, so it reads as open.
const OPEN_TAIL: f64 = 14.0;
const TOP_MARGIN: f64 = 6.0;
const MARKER_LABEL_ROWS: usize = 4;
const MARKER_ROW_HEIGHT: f64 = 13.0;
const MARKER_LABEL_CHARS: usize = 48;
const AXIS_HEIGHT: f64 = 28.0;
const TICK_SPACING_PX: f64 = 90.0;
const TRACK_HEIGHT: f64 = 14.0;
const TRACK_GAP: f64 = 3.0;
/// Room above the first track for witness numbers.
const LANE_TOP_PAD: f64 = 11.0;
const LANE_BOTTOM_PAD: f64 = 4.0;
const LEGEND_HEIGHT: f64 = 34.0;
/// Approximate advance of one character of the 10 px monospace font, to decide whether a
/// label fits without measuring text (which needs a renderer).
const CHAR_WIDTH: f64 = 6.1;
const MIN_BAR_WIDTH: f64 = 2.0;
const VALUE_CHARS: usize = 12;
const MAX_SHOWN_MARKS: usize = 4;
/// Tooltips carry the event's JSON; a poll of thousands of records would bloat the file.
const TOOLTIP_JSON_CHARS: usize = 2000;

const STYLE: &str = "\
.tp-ok{fill:#7cc47f;stroke:#2e7d32}\
.tp-fail{fill:#cfcfcf;stroke:#8a8a8a}\
.tp-info{fill:#f2b84b;stroke:#b7791f}\
.tp-open{fill:url(#tp-hatch);stroke:#b7791f}\
.tp-wit{stroke:#d00000;stroke-width:2.5}\
.tp-fault{stroke:#d00000;stroke-width:1.5}\
.tp-phase{stroke:#3060c0;stroke-width:1.5;stroke-dasharray:6 4}\
.tp-hit{stroke:#000;stroke-opacity:0;stroke-width:7}\
.tp-down{fill:#d00000;fill-opacity:0.12}\
.tp-grid{stroke:#e4e4e4}\
.tp-axis{stroke:#555}\
.tp-lbl{fill:#111}\
.tp-fault-lbl{fill:#b00000}\
.tp-fault-tick{fill:#d00000}\
.tp-phase-tick{fill:#3060c0}\
.tp-phase-lbl{fill:#3060c0}\
.tp-num{fill:#d00000;font-weight:bold;font-size:9px}\
.tp-lane-even{fill:#fafafa}\
.tp-lane-odd{fill:#f0f0f0}";

/// The SVG timeline of `history`, outlining the events named by the witnesses of `findings`
/// (usually `&report.anomalies`). Witnesses are numbered in map order, then witness order,
/// from 1, as in [`report_html`]'s table.
pub fn timeline_svg(history: &History, findings: &BTreeMap<Anomaly, Finding>) -> String {
    let witnesses = numbered_witnesses(findings);
    Timeline::build(history, &witnesses).render()
}

/// A standalone HTML page (no external resources): `title`, the `summary_lines`, a table of
/// the witnesses of `findings`, and the timeline inline.
pub fn report_html(
    title: &str,
    history: &History,
    findings: &BTreeMap<Anomaly, Finding>,
    summary_lines: &[String],
) -> String {
    let witnesses = numbered_witnesses(findings);
    let svg = Timeline::build(history, &witnesses).render();
    let mut out = String::new();
    out.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\"/>\n");
    let _ = writeln!(out, "<title>{}</title>", escape(title));
    out.push_str(
        "<style>\
body{font-family:sans-serif;margin:1.5em;color:#111}\
table{border-collapse:collapse;margin:0.5em 0}\
th,td{border:1px solid #ccc;padding:3px 8px;text-align:left;vertical-align:top}\
th{background:#eee}\
td.num{text-align:right}\
.violation{color:#b00000;font-weight:bold}\
.allowed{color:#666}\
.meta{color:#555}\
.timeline{overflow-x:auto;border:1px solid #ddd}\
</style>\n</head>\n<body>\n",
    );
    let _ = writeln!(out, "<h1>{}</h1>", escape(title));
    let _ = writeln!(out, "<p class=\"meta\">{}</p>", escape(&run_line(history)));
    if !summary_lines.is_empty() {
        out.push_str("<ul>\n");
        for line in summary_lines {
            let _ = writeln!(out, "<li>{}</li>", escape(line));
        }
        out.push_str("</ul>\n");
    }
    out.push_str("<h2>Findings</h2>\n");
    findings_table(&mut out, findings, &witnesses);
    out.push_str("<h2>Timeline</h2>\n<div class=\"timeline\">\n");
    out.push_str(&svg);
    out.push_str("</div>\n</body>\n</html>\n");
    out
}

fn run_line(history: &History) -> String {
    let meta = &history.meta;
    let mut parts = vec![format!("{} events", history.events.len())];
    if let Some(seed) = meta.seed {
        parts.push(format!("seed {seed}"));
    }
    if let Some(source) = &meta.source {
        parts.push(format!("source {source}"));
    }
    let config = serde_json::to_string(&meta.config).unwrap_or_else(|error| error.to_string());
    parts.push(format!("config {config}"));
    parts.join(" · ")
}

fn findings_table(out: &mut String, findings: &BTreeMap<Anomaly, Finding>, witnesses: &[Numbered]) {
    if findings.is_empty() {
        out.push_str("<p>No anomalies found.</p>\n");
        return;
    }
    out.push_str(
        "<table>\n<tr><th>#</th><th>anomaly</th><th>verdict</th><th>description</th>\
<th>witness events</th><th>partition</th></tr>\n",
    );
    for (&anomaly, finding) in findings {
        let verdict = match (&finding.allowed, &finding.allowed_because) {
            (false, _) => "<td class=\"violation\">violation</td>".to_owned(),
            (true, Some(because)) => {
                format!("<td class=\"allowed\">allowed: {}</td>", escape(because))
            }
            (true, None) => "<td class=\"allowed\">allowed</td>".to_owned(),
        };
        let mine = witnesses
            .iter()
            .filter(|numbered| numbered.anomaly == anomaly);
        let mut shown = 0u64;
        for numbered in mine {
            shown += 1;
            let witness = numbered.witness;
            let events = witness
                .events
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(", ");
            let partition = witness
                .partition
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "<tr><td class=\"num\">{}</td><td>{}</td>{verdict}<td>{}</td><td>{}</td>\
<td>{}</td></tr>",
                numbered.number,
                anomaly.name(),
                escape(&witness.detail),
                escape(&events),
                escape(&partition),
            );
        }
        if finding.count > shown {
            let more = finding.count - shown;
            let _ = writeln!(
                out,
                "<tr><td class=\"num\"></td><td>{}</td>{verdict}<td>{more} more case(s) not \
kept as witnesses ({} in all)</td><td></td><td></td></tr>",
                anomaly.name(),
                finding.count,
            );
        }
    }
    out.push_str("</table>\n");
}

/// A witness with the number it carries in the picture and the table.
struct Numbered<'a> {
    number: usize,
    anomaly: Anomaly,
    allowed: bool,
    witness: &'a Witness,
}

fn numbered_witnesses(findings: &BTreeMap<Anomaly, Finding>) -> Vec<Numbered<'_>> {
    findings
        .iter()
        .flat_map(|(&anomaly, finding)| {
            finding
                .witnesses
                .iter()
                .map(move |witness| (anomaly, finding.allowed, witness))
        })
        .enumerate()
        .map(|(position, (anomaly, allowed, witness))| Numbered {
            number: position + 1,
            anomaly,
            allowed,
            witness,
        })
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Ok,
    Fail,
    Info,
    /// Invoked and never completed.
    Open,
}

impl Outcome {
    fn class(self) -> &'static str {
        match self {
            Outcome::Ok => "tp-ok",
            Outcome::Fail => "tp-fail",
            Outcome::Info => "tp-info",
            Outcome::Open => "tp-open",
        }
    }

    fn of(kind: &EventKind) -> Outcome {
        match kind {
            EventKind::Ok { .. } => Outcome::Ok,
            EventKind::Fail { .. } => Outcome::Fail,
            EventKind::Info { .. } => Outcome::Info,
            _ => Outcome::Open,
        }
    }
}

/// One operation: an invoke and (unless open) its completion.
struct Bar {
    lane: usize,
    track: usize,
    start: u64,
    end: Option<u64>,
    outcome: Outcome,
    label: String,
    tooltip: String,
    marks: Vec<usize>,
}

/// An event drawn as a point: an observation, or a completion whose invoke is missing.
struct Dot {
    lane: usize,
    time: u64,
    outcome: Outcome,
    tooltip: String,
    marks: Vec<usize>,
}

/// A fault or phase change, drawn across every lane.
struct Marker {
    /// The lane of the process that recorded it, where it also gets a tick.
    lane: usize,
    time: u64,
    is_fault: bool,
    label: String,
    tooltip: String,
    marks: Vec<usize>,
}

/// A stretch during which a host was down (crash to restart).
struct Down {
    lane: usize,
    start: u64,
    end: Option<u64>,
    host: String,
}

struct Lane {
    name: String,
    tracks: usize,
    top: f64,
}

impl Lane {
    fn height(&self) -> f64 {
        let tracks = self.tracks.max(1) as f64;
        LANE_TOP_PAD + tracks * TRACK_HEIGHT + (tracks - 1.0) * TRACK_GAP + LANE_BOTTOM_PAD
    }

    fn track_top(&self, track: usize) -> f64 {
        self.top + LANE_TOP_PAD + track as f64 * (TRACK_HEIGHT + TRACK_GAP)
    }
}

/// Maps virtual time to x.
struct Scale {
    t0: u64,
    span: u64,
    px_per_ms: f64,
    width: f64,
}

impl Scale {
    fn new(history: &History) -> Scale {
        let times = history.events.iter().map(|event| event.time_ms);
        let t0 = times.clone().min().unwrap_or(0);
        let span = times.max().unwrap_or(0) - t0;
        let width = (span as f64 * PREFERRED_PX_PER_MS).clamp(MIN_PLOT_WIDTH, MAX_PLOT_WIDTH);
        let px_per_ms = if span == 0 { 0.0 } else { width / span as f64 };
        Scale {
            t0,
            span,
            px_per_ms,
            width,
        }
    }

    fn x(&self, time: u64) -> f64 {
        LANE_NAME_WIDTH + time.saturating_sub(self.t0) as f64 * self.px_per_ms
    }

    fn right(&self) -> f64 {
        LANE_NAME_WIDTH + self.width
    }

    /// A round number of milliseconds between ticks, about [`TICK_SPACING_PX`] apart.
    fn tick_step(&self) -> u64 {
        let wanted = (self.span as f64 * TICK_SPACING_PX / self.width).max(1.0);
        let mut magnitude: u64 = 1;
        loop {
            for multiple in [1, 2, 5] {
                let step = magnitude.saturating_mul(multiple);
                if step as f64 >= wanted || step == u64::MAX {
                    return step;
                }
            }
            magnitude = magnitude.saturating_mul(10);
        }
    }
}

struct Timeline {
    scale: Scale,
    lanes: Vec<Lane>,
    bars: Vec<Bar>,
    dots: Vec<Dot>,
    markers: Vec<Marker>,
    downs: Vec<Down>,
    /// Per witness number: "#n anomaly: detail", for tooltips.
    notes: BTreeMap<usize, String>,
}

impl Timeline {
    fn build(history: &History, witnesses: &[Numbered]) -> Timeline {
        let scale = Scale::new(history);
        let mut by_event: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
        let mut notes = BTreeMap::new();
        for numbered in witnesses {
            for &event in &numbered.witness.events {
                by_event.entry(event).or_default().push(numbered.number);
            }
            let allowed = if numbered.allowed { " (allowed)" } else { "" };
            notes.insert(
                numbered.number,
                format!(
                    "witness #{} {}{allowed}: {}",
                    numbered.number, numbered.anomaly, numbered.witness.detail
                ),
            );
        }
        let marks_of = |indices: &[u64]| -> Vec<usize> {
            let mut marks: Vec<usize> = indices
                .iter()
                .filter_map(|index| by_event.get(index))
                .flatten()
                .copied()
                .collect();
            marks.sort_unstable();
            marks.dedup();
            marks
        };

        let lane_names = lane_names(history);
        let lane_of: BTreeMap<&str, usize> = lane_names
            .iter()
            .enumerate()
            .map(|(lane, name)| (name.as_str(), lane))
            .collect();

        let mut bars = Vec::new();
        let mut dots = Vec::new();
        let mut markers = Vec::new();
        let mut downs = Vec::new();
        // Open invokes by index, each with its position in `bars`.
        let mut open: BTreeMap<u64, usize> = BTreeMap::new();
        let mut down_since: BTreeMap<&str, u64> = BTreeMap::new();
        for event in &history.events {
            let lane = lane_of[event.process.as_str()];
            match &event.kind {
                EventKind::Invoke { op } => {
                    open.insert(event.index, bars.len());
                    bars.push(Bar {
                        lane,
                        track: 0,
                        start: event.time_ms,
                        end: None,
                        outcome: Outcome::Open,
                        label: op_label(op, Outcome::Open),
                        tooltip: format!(
                            "#{} {} invoked at {} ms, never completed\n{}",
                            event.index,
                            event.process,
                            event.time_ms,
                            event_json(event)
                        ),
                        marks: marks_of(&[event.index]),
                    });
                }
                EventKind::Ok { op, .. }
                | EventKind::Fail { op, .. }
                | EventKind::Info { op, .. } => {
                    let outcome = Outcome::of(&event.kind);
                    let invoke = event.invoke_index();
                    match invoke.and_then(|invoke| open.remove(&invoke).map(|bar| (invoke, bar))) {
                        Some((invoke, position)) => {
                            let bar = &mut bars[position];
                            bar.end = Some(event.time_ms);
                            bar.outcome = outcome;
                            bar.label = op_label(op, outcome);
                            bar.tooltip = format!(
                                "#{invoke} invoke at {} ms → #{} {} at {} ms ({} ms)\n{}",
                                bar.start,
                                event.index,
                                event.type_name(),
                                event.time_ms,
                                event.time_ms.abs_diff(bar.start),
                                event_json(event)
                            );
                            bar.marks = marks_of(&[invoke, event.index]);
                        }
                        None => {
                            let what = match invoke {
                                None => "observation".to_owned(),
                                Some(invoke) => format!("completes #{invoke}, which is missing"),
                            };
                            dots.push(Dot {
                                lane,
                                time: event.time_ms,
                                outcome,
                                tooltip: format!(
                                    "#{} {} {} at {} ms ({what})\n{}",
                                    event.index,
                                    event.process,
                                    event.type_name(),
                                    event.time_ms,
                                    event_json(event)
                                ),
                                marks: marks_of(&[event.index]),
                            });
                        }
                    }
                }
                EventKind::Fault { fault } => {
                    markers.push(Marker {
                        lane,
                        time: event.time_ms,
                        is_fault: true,
                        label: shorten(&fault_label(fault), MARKER_LABEL_CHARS),
                        tooltip: format!(
                            "#{} fault at {} ms by {}\n{}",
                            event.index,
                            event.time_ms,
                            event.process,
                            event_json(event)
                        ),
                        marks: marks_of(&[event.index]),
                    });
                    track_downtime(fault, event.time_ms, &lane_of, &mut down_since, &mut downs);
                }
                EventKind::Phase { phase } => {
                    markers.push(Marker {
                        lane,
                        time: event.time_ms,
                        is_fault: false,
                        label: phase_name(*phase).to_owned(),
                        tooltip: format!(
                            "#{} phase {} at {} ms by {}",
                            event.index,
                            phase_name(*phase),
                            event.time_ms,
                            event.process
                        ),
                        marks: marks_of(&[event.index]),
                    });
                }
            }
        }
        for (host, start) in down_since {
            downs.push(Down {
                lane: lane_of[host],
                start,
                end: None,
                host: host.to_owned(),
            });
        }
        downs.sort_by_key(|down| (down.lane, down.start));

        let mut lanes: Vec<Lane> = lane_names
            .into_iter()
            .map(|name| Lane {
                name,
                tracks: 1,
                top: 0.0,
            })
            .collect();
        assign_tracks(&scale, &mut bars, &mut lanes);
        let mut top = lanes_top();
        for lane in &mut lanes {
            lane.top = top;
            top += lane.height();
        }
        Timeline {
            scale,
            lanes,
            bars,
            dots,
            markers,
            downs,
            notes,
        }
    }

    fn lanes_bottom(&self) -> f64 {
        self.lanes
            .last()
            .map_or(lanes_top() + TRACK_HEIGHT, |lane| lane.top + lane.height())
    }

    fn bar_extent(&self, bar: &Bar) -> (f64, f64) {
        let x1 = self.scale.x(bar.start);
        let x2 = match bar.end {
            Some(end) => self.scale.x(end),
            None => self.scale.right() + OPEN_TAIL,
        };
        let (x1, x2) = if x2 < x1 { (x2, x1) } else { (x1, x2) };
        (x1, x2.max(x1 + MIN_BAR_WIDTH))
    }

    fn render(&self) -> String {
        let placed = self.place_marker_labels();
        let label_right = placed
            .iter()
            .flatten()
            .map(|&(x, _, ref label)| x + text_width(label))
            .fold(0.0, f64::max);
        let width = (self.scale.right() + RIGHT_MARGIN)
            .max(label_right + 8.0)
            .ceil();
        let bottom = self.lanes_bottom();
        let height = (bottom + LEGEND_HEIGHT).ceil();

        let mut out = String::new();
        let _ = writeln!(
            out,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" \
viewBox=\"0 0 {width} {height}\" font-family=\"monospace\" font-size=\"10\">"
        );
        let _ = writeln!(out, "<style>{STYLE}</style>");
        out.push_str(
            "<defs><pattern id=\"tp-hatch\" patternUnits=\"userSpaceOnUse\" width=\"6\" \
height=\"6\" patternTransform=\"rotate(45)\"><rect width=\"6\" height=\"6\" fill=\"#fbe3b0\"/>\
<line x1=\"0\" y1=\"0\" x2=\"0\" y2=\"6\" stroke=\"#d99a1e\" stroke-width=\"2.5\"/></pattern>\
</defs>\n",
        );
        out.push_str("<rect width=\"100%\" height=\"100%\" fill=\"#fff\"/>\n");
        self.render_lanes(&mut out, width);
        self.render_axis(&mut out, bottom);
        self.render_downs(&mut out);
        self.render_bars(&mut out);
        self.render_dots(&mut out);
        self.render_markers(&mut out, &placed, bottom);
        if self.lanes.is_empty() {
            let _ = writeln!(
                out,
                "<text class=\"tp-lbl\" x=\"{}\" y=\"{}\">empty history</text>",
                num(LANE_NAME_WIDTH + 4.0),
                num(lanes_top() + 11.0)
            );
        }
        render_legend(&mut out, bottom + 12.0);
        out.push_str("</svg>\n");
        out
    }

    fn render_lanes(&self, out: &mut String, width: f64) {
        for (position, lane) in self.lanes.iter().enumerate() {
            let stripe = if position % 2 == 0 {
                "tp-lane-even"
            } else {
                "tp-lane-odd"
            };
            let _ = writeln!(
                out,
                "<g class=\"tp-lane\" data-process=\"{name}\"><title>{name}</title>\
<rect class=\"{stripe}\" x=\"0\" y=\"{y}\" width=\"{width}\" height=\"{h}\"/>\
<text class=\"tp-lbl\" x=\"6\" y=\"{ty}\">{short}</text></g>",
                name = escape(&lane.name),
                y = num(lane.top),
                h = num(lane.height()),
                ty = num(lane.track_top(0) + 10.5),
                short = escape(&shorten(&lane.name, LANE_NAME_CHARS)),
            );
        }
    }

    fn render_axis(&self, out: &mut String, bottom: f64) {
        let scale = &self.scale;
        let axis_y = lanes_top() - 4.0;
        let caption = if scale.t0 == 0 {
            "time (ms)".to_owned()
        } else {
            format!("ms after {}", scale.t0)
        };
        let _ = writeln!(
            out,
            "<text class=\"tp-lbl\" x=\"6\" y=\"{}\">{}</text>\
<line class=\"tp-axis\" x1=\"{}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\"/>",
            num(axis_y - 8.0),
            escape(&caption),
            num(LANE_NAME_WIDTH),
            num(scale.right()),
            y = num(axis_y),
        );
        let step = scale.tick_step();
        let mut offset: u64 = 0;
        loop {
            let x = num(scale.x(scale.t0.saturating_add(offset)));
            let _ = writeln!(
                out,
                "<line class=\"tp-grid\" x1=\"{x}\" y1=\"{}\" x2=\"{x}\" y2=\"{}\"/>\
<line class=\"tp-axis\" x1=\"{x}\" y1=\"{}\" x2=\"{x}\" y2=\"{}\"/>\
<text class=\"tp-lbl\" x=\"{x}\" y=\"{}\" text-anchor=\"middle\">{offset}</text>",
                num(axis_y),
                num(bottom),
                num(axis_y - 4.0),
                num(axis_y),
                num(axis_y - 8.0),
            );
            match offset.checked_add(step) {
                Some(next) if next <= scale.span => offset = next,
                _ => break,
            }
        }
    }

    fn render_downs(&self, out: &mut String) {
        for down in &self.downs {
            let lane = &self.lanes[down.lane];
            let x1 = self.scale.x(down.start);
            let x2 = down
                .end
                .map_or(self.scale.right() + OPEN_TAIL, |end| self.scale.x(end));
            let until = down
                .end
                .map_or_else(|| "the end".to_owned(), |end| format!("{end} ms"));
            let _ = writeln!(
                out,
                "<rect class=\"tp-down\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\">\
<title>{} down from {} ms to {}</title></rect>",
                num(x1),
                num(lane.top),
                num((x2 - x1).max(MIN_BAR_WIDTH)),
                num(lane.height()),
                escape(&down.host),
                down.start,
                escape(&until),
            );
        }
    }

    fn render_bars(&self, out: &mut String) {
        for bar in &self.bars {
            let lane = &self.lanes[bar.lane];
            let (x1, x2) = self.bar_extent(bar);
            let y = lane.track_top(bar.track);
            let class = if bar.marks.is_empty() {
                bar.outcome.class().to_owned()
            } else {
                format!("{} tp-wit", bar.outcome.class())
            };
            let _ = write!(
                out,
                "<g class=\"tp-op\"><title>{}</title>\
<rect class=\"{class}\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" rx=\"2\"/>",
                escape(&self.tooltip(&bar.tooltip, &bar.marks)),
                num(x1),
                num(y),
                num(x2 - x1),
                num(TRACK_HEIGHT),
            );
            if text_width(&bar.label) + 6.0 <= x2 - x1 {
                let _ = write!(
                    out,
                    "<text class=\"tp-lbl\" x=\"{}\" y=\"{}\">{}</text>",
                    num(x1 + 3.0),
                    num(y + 10.5),
                    escape(&bar.label),
                );
            }
            self.render_numbers(out, x1, y - 2.0, &bar.marks);
            out.push_str("</g>\n");
        }
    }

    fn render_dots(&self, out: &mut String) {
        for dot in &self.dots {
            let lane = &self.lanes[dot.lane];
            let x = self.scale.x(dot.time);
            let y = lane.track_top(0) + TRACK_HEIGHT / 2.0;
            let class = if dot.marks.is_empty() {
                dot.outcome.class().to_owned()
            } else {
                format!("{} tp-wit", dot.outcome.class())
            };
            let r = TRACK_HEIGHT / 2.0 - 1.0;
            let _ = write!(
                out,
                "<g class=\"tp-obs\"><title>{}</title><path class=\"{class}\" \
d=\"M{} {}L{} {}L{} {}L{} {}Z\"/>",
                escape(&self.tooltip(&dot.tooltip, &dot.marks)),
                num(x),
                num(y - r),
                num(x + r),
                num(y),
                num(x),
                num(y + r),
                num(x - r),
                num(y),
            );
            self.render_numbers(out, x + r, y - r, &dot.marks);
            out.push_str("</g>\n");
        }
    }

    fn render_markers(&self, out: &mut String, placed: &[Option<(f64, f64, String)>], bottom: f64) {
        for (marker, label) in self.markers.iter().zip(placed) {
            let x = num(self.scale.x(marker.time));
            let (group, line_class, label_class, tick_class) = if marker.is_fault {
                ("tp-fault-mark", "tp-fault", "tp-fault-lbl", "tp-fault-tick")
            } else {
                ("tp-phase-mark", "tp-phase", "tp-phase-lbl", "tp-phase-tick")
            };
            let top = label.as_ref().map_or(lanes_top(), |&(_, y, _)| y + 2.0);
            let line_class = if marker.marks.is_empty() {
                line_class.to_owned()
            } else {
                format!("{line_class} tp-wit")
            };
            let _ = write!(
                out,
                "<g class=\"{group}\"><title>{}</title>\
<line class=\"{line_class}\" x1=\"{x}\" y1=\"{t}\" x2=\"{x}\" y2=\"{b}\"/>\
<line class=\"tp-hit\" x1=\"{x}\" y1=\"{t}\" x2=\"{x}\" y2=\"{b}\"/>",
                escape(&self.tooltip(&marker.tooltip, &marker.marks)),
                t = num(top),
                b = num(bottom),
            );
            let lane = &self.lanes[marker.lane];
            let _ = write!(
                out,
                "<rect class=\"{tick_class}\" x=\"{}\" y=\"{}\" width=\"4\" height=\"{}\"/>",
                num(self.scale.x(marker.time) - 2.0),
                num(lane.track_top(0)),
                num(TRACK_HEIGHT),
            );
            if let Some((label_x, label_y, text)) = label {
                let _ = write!(
                    out,
                    "<text class=\"{label_class}\" x=\"{}\" y=\"{}\">{}</text>",
                    num(*label_x),
                    num(*label_y),
                    escape(text),
                );
            }
            self.render_numbers(
                out,
                self.scale.x(marker.time) + 3.0,
                lanes_top() + 9.0,
                &marker.marks,
            );
            out.push_str("</g>\n");
        }
    }

    fn render_numbers(&self, out: &mut String, x: f64, y: f64, marks: &[usize]) {
        if marks.is_empty() {
            return;
        }
        // A long list would run over the neighbouring bars; the tooltip names them all.
        let mut text = marks
            .iter()
            .take(MAX_SHOWN_MARKS)
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join(",");
        if marks.len() > MAX_SHOWN_MARKS {
            let _ = write!(text, ",+{}", marks.len() - MAX_SHOWN_MARKS);
        }
        let _ = write!(
            out,
            "<text class=\"tp-num\" x=\"{}\" y=\"{}\">{text}</text>",
            num(x),
            num(y)
        );
    }

    fn tooltip(&self, base: &str, marks: &[usize]) -> String {
        let mut text = base.to_owned();
        for mark in marks {
            if let Some(note) = self.notes.get(mark) {
                text.push('\n');
                text.push_str(note);
            }
        }
        text
    }

    /// Where each marker's label goes: rows above the axis, first fit left to right. A label
    /// that fits no row is dropped (its line keeps the tooltip): many faults close together
    /// would otherwise print on top of each other.
    fn place_marker_labels(&self) -> Vec<Option<(f64, f64, String)>> {
        let mut order: Vec<usize> = (0..self.markers.len()).collect();
        order.sort_by_key(|&position| (self.markers[position].time, position));
        let mut row_ends = [f64::NEG_INFINITY; MARKER_LABEL_ROWS];
        let mut placed = vec![None; self.markers.len()];
        for position in order {
            let marker = &self.markers[position];
            let x = self.scale.x(marker.time) + 2.0;
            let free = row_ends.iter().position(|&end| end + 4.0 <= x);
            if let Some(row) = free {
                row_ends[row] = x + text_width(&marker.label);
                let y = TOP_MARGIN + (row as f64 + 1.0) * MARKER_ROW_HEIGHT - 3.0;
                placed[position] = Some((x, y, marker.label.clone()));
            }
        }
        placed
    }
}

fn render_legend(out: &mut String, y: f64) {
    let entries: [(&str, &str); 9] = [
        ("bar", "tp-ok"),
        ("bar", "tp-fail"),
        ("bar", "tp-info"),
        ("bar", "tp-open"),
        ("dot", "tp-ok"),
        ("bar", "tp-down"),
        ("line", "tp-fault"),
        ("line", "tp-phase"),
        ("bar", "tp-ok tp-wit"),
    ];
    let names = [
        "ok",
        "fail",
        "info (unknown)",
        "never completed",
        "observation",
        "host down",
        "fault",
        "phase",
        "witness (numbered)",
    ];
    out.push_str("<g class=\"tp-legend\">");
    let mut x = 8.0;
    for ((shape, class), name) in entries.iter().zip(names) {
        match *shape {
            "bar" => {
                let _ = write!(
                    out,
                    "<rect class=\"{class}\" x=\"{}\" y=\"{}\" width=\"18\" height=\"10\" rx=\"2\"/>",
                    num(x),
                    num(y)
                );
            }
            "dot" => {
                let _ = write!(
                    out,
                    "<path class=\"{class}\" d=\"M{} {}L{} {}L{} {}L{} {}Z\"/>",
                    num(x + 9.0),
                    num(y - 1.0),
                    num(x + 15.0),
                    num(y + 5.0),
                    num(x + 9.0),
                    num(y + 11.0),
                    num(x + 3.0),
                    num(y + 5.0),
                );
            }
            _ => {
                let _ = write!(
                    out,
                    "<line class=\"{class}\" x1=\"{x1}\" y1=\"{}\" x2=\"{x1}\" y2=\"{}\"/>",
                    num(y - 1.0),
                    num(y + 11.0),
                    x1 = num(x + 9.0),
                );
            }
        }
        let _ = write!(
            out,
            "<text class=\"tp-lbl\" x=\"{}\" y=\"{}\">{name}</text>",
            num(x + 22.0),
            num(y + 9.0)
        );
        x += 22.0 + text_width(name) + 16.0;
    }
    out.push_str("</g>\n");
}

fn lanes_top() -> f64 {
    TOP_MARGIN + MARKER_LABEL_ROWS as f64 * MARKER_ROW_HEIGHT + AXIS_HEIGHT
}

/// Every process that recorded an event, and every host a fault stopped (so its downtime has
/// a lane), in natural order (`producer-2` before `producer-10`).
fn lane_names(history: &History) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for event in &history.events {
        names.push(event.process.clone());
        if let EventKind::Fault { fault } = &event.kind
            && let Some(host) = fault.stopped_host()
        {
            names.push(host.to_owned());
        }
    }
    names.sort_by(|a, b| natural_cmp(a, b));
    names.dedup();
    names
}

/// Compares digit runs by value, the rest by code point; ties broken by plain comparison so
/// the order is total.
fn natural_cmp(a: &str, b: &str) -> Ordering {
    let (mut left, mut right) = (a, b);
    loop {
        match (left.is_empty(), right.is_empty()) {
            (true, true) => return a.cmp(b),
            (true, false) => return Ordering::Less,
            (false, true) => return Ordering::Greater,
            (false, false) => {}
        }
        let (left_run, left_rest) = split_run(left);
        let (right_run, right_rest) = split_run(right);
        let both_digits = left_run.starts_with(|c: char| c.is_ascii_digit())
            && right_run.starts_with(|c: char| c.is_ascii_digit());
        let order = if both_digits {
            let left_digits = left_run.trim_start_matches('0');
            let right_digits = right_run.trim_start_matches('0');
            left_digits
                .len()
                .cmp(&right_digits.len())
                .then_with(|| left_digits.cmp(right_digits))
        } else {
            left_run.cmp(right_run)
        };
        if order != Ordering::Equal {
            return order;
        }
        (left, right) = (left_rest, right_rest);
    }
}

/// Splits off the leading run of digits, or of non-digits.
fn split_run(text: &str) -> (&str, &str) {
    let digits = text.starts_with(|c: char| c.is_ascii_digit());
    let end = text
        .find(|c: char| c.is_ascii_digit() != digits)
        .unwrap_or(text.len());
    text.split_at(end)
}

/// Puts each bar on the first track of its lane free at its start, so a pipelining producer's
/// overlapping sends stay apart.
fn assign_tracks(scale: &Scale, bars: &mut [Bar], lanes: &mut [Lane]) {
    let mut order: Vec<usize> = (0..bars.len()).collect();
    order.sort_by_key(|&position| (bars[position].lane, bars[position].start, position));
    let mut ends: Vec<Vec<f64>> = vec![Vec::new(); lanes.len()];
    for position in order {
        let bar = &bars[position];
        let x1 = scale.x(bar.start);
        let x2 = bar.end.map_or(scale.right() + OPEN_TAIL, |end| {
            scale.x(end).max(x1 + MIN_BAR_WIDTH)
        });
        let tracks = &mut ends[bar.lane];
        let track = match tracks.iter().position(|&end| end <= x1) {
            Some(track) => track,
            None if tracks.len() < MAX_TRACKS => {
                tracks.push(f64::NEG_INFINITY);
                tracks.len() - 1
            }
            None => {
                let mut earliest = 0;
                for (track, &end) in tracks.iter().enumerate() {
                    if end < tracks[earliest] {
                        earliest = track;
                    }
                }
                earliest
            }
        };
        tracks[track] = tracks[track].max(x2 + 1.0);
        bars[position].track = track;
    }
    for (lane, tracks) in lanes.iter_mut().zip(&ends) {
        lane.tracks = tracks.len().max(1);
    }
}

/// A crash takes its host down until the next restart of it; a restart of a host that was up
/// is a bounce, shown by its marker alone.
fn track_downtime<'h>(
    fault: &'h Fault,
    time: u64,
    lane_of: &BTreeMap<&str, usize>,
    down_since: &mut BTreeMap<&'h str, u64>,
    downs: &mut Vec<Down>,
) {
    match fault {
        Fault::Crash { host } | Fault::CrashPoint { host, .. } => {
            down_since.entry(host.as_str()).or_insert(time);
        }
        Fault::Restart { host } => {
            if let Some(start) = down_since.remove(host.as_str()) {
                downs.push(Down {
                    lane: lane_of[host.as_str()],
                    start,
                    end: Some(time),
                    host: host.clone(),
                });
            }
        }
        _ => {}
    }
}

fn op_label(op: &Op, outcome: Outcome) -> String {
    match op {
        Op::Send(send) => {
            let value = send
                .value
                .as_deref()
                .map_or_else(|| "∅".to_owned(), |value| shorten(value, VALUE_CHARS));
            match send.offset {
                Some(offset) => format!("send {value}→{offset}"),
                None => format!("send {value}"),
            }
        }
        // An invoke carries no records, so only a successful poll has a count worth showing.
        Op::Poll(poll) if outcome == Outcome::Ok => format!("poll {}", poll.records.len()),
        Op::Poll(_) => "poll".to_owned(),
        Op::Commit(commit) => format!("commit {}", offsets_label(&commit.offsets)),
        Op::Assign(assign) => {
            let mut parts: Vec<String> = assign
                .partitions
                .iter()
                .take(3)
                .map(|tp| format!("p{}", tp.partition))
                .collect();
            if assign.partitions.len() > 3 {
                parts.push(format!("+{}", assign.partitions.len() - 3));
            }
            format!("assign {}", parts.join(","))
        }
        Op::Reset(reset) => format!("reset {}", offsets_label(&reset.offsets)),
        Op::DeleteGroup(delete) => format!("delete {}", shorten(&delete.group, VALUE_CHARS)),
    }
}

fn offsets_label(offsets: &[PartitionOffset]) -> String {
    match offsets {
        [] => "-".to_owned(),
        [only] => format!("p{}@{}", only.partition, only.offset),
        [first, rest @ ..] => format!("p{}@{} +{}", first.partition, first.offset, rest.len()),
    }
}

fn fault_label(fault: &Fault) -> String {
    match fault {
        Fault::Crash { host } => format!("crash {host}"),
        Fault::Restart { host } => format!("restart {host}"),
        Fault::CrashPoint { host, point, hit } => format!("crash {host} at {point}#{hit}"),
        Fault::Partition { left, right } => {
            format!("partition {} | {}", left.join(","), right.join(","))
        }
        Fault::Hold { a, b } => format!("hold {a}~{b}"),
        Fault::Release { a, b } => format!("release {a}~{b}"),
        Fault::Heal => "heal links".to_owned(),
        Fault::LeaderMove {
            topic,
            partition,
            to,
        } => match to {
            Some(to) => format!("leader {topic}/{partition}→{to}"),
            None => format!("leader {topic}/{partition} moved"),
        },
        Fault::CoordinatorMove { group, to } => match to {
            Some(to) => format!("coordinator {group}→{to}"),
            None => format!("coordinator {group} moved"),
        },
        Fault::ClockJump { host, delta_ms } => format!("clock {host} {delta_ms:+}ms"),
        Fault::Injected { action } => action.clone(),
        Fault::Other { name, .. } => name.clone(),
    }
}

fn phase_name(phase: Phase) -> &'static str {
    match phase {
        Phase::Safety => "safety",
        Phase::Heal => "heal",
        Phase::Drained => "drained",
    }
}

fn event_json(event: &Event) -> String {
    let json = serde_json::to_string(event).unwrap_or_else(|error| error.to_string());
    shorten(&json, TOOLTIP_JSON_CHARS)
}

/// At most `chars` characters, the last an ellipsis if anything was cut.
fn shorten(text: &str, chars: usize) -> String {
    if text.chars().count() <= chars {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(chars.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

fn text_width(text: &str) -> f64 {
    text.chars().count() as f64 * CHAR_WIDTH
}

/// Coordinates with one decimal: enough for a screen, and stable across platforms.
fn num(value: f64) -> String {
    // Adding zero turns a negative zero into a positive one, which prints without a sign.
    let rounded = (value * 10.0).round() / 10.0 + 0.0;
    if rounded == rounded.trunc() {
        format!("{rounded:.0}")
    } else {
        format!("{rounded:.1}")
    }
}

/// Escapes text for XML content and attribute values. Characters XML 1.0 cannot carry at all
/// (control characters other than tab and newlines), even as references, become U+FFFD.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if c < ' ' || c == '\u{FFFE}' || c == '\u{FFFF}' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn natural_order_compares_numbers_by_value() {
        let mut names = vec![
            "producer-10",
            "producer-2",
            "nemesis",
            "broker-1",
            "producer-1",
        ];
        names.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(
            names,
            [
                "broker-1",
                "nemesis",
                "producer-1",
                "producer-2",
                "producer-10"
            ]
        );
        assert_eq!(natural_cmp("a01", "a1"), "a01".cmp("a1"));
    }

    #[test]
    fn escape_covers_markup_and_control_characters() {
        assert_eq!(escape("<a&b>\"'"), "&lt;a&amp;b&gt;&quot;&#39;");
        assert_eq!(escape("x\u{1}y\n"), "x\u{FFFD}y\n");
    }

    #[test]
    fn ticks_are_round_and_about_evenly_spaced() {
        let scale = |span: u64| {
            let width = (span as f64 * PREFERRED_PX_PER_MS).clamp(MIN_PLOT_WIDTH, MAX_PLOT_WIDTH);
            Scale {
                t0: 0,
                span,
                px_per_ms: width / span.max(1) as f64,
                width,
            }
        };
        assert_eq!(scale(0).tick_step(), 1);
        assert_eq!(scale(30).tick_step(), 5);
        assert_eq!(scale(60_000).tick_step(), 2000);
        assert!(scale(u64::MAX).tick_step() > 0);
    }

    #[test]
    fn numbers_have_at_most_one_decimal() {
        assert_eq!(num(3.0), "3");
        assert_eq!(num(2.345_67), "2.3");
        assert_eq!(num(-0.04), "0");
    }
}
