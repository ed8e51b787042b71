//! Scenarios: lists of steps, each one request at a pinned version, run the same way against
//! each broker. A step's request is built from the scenario's context, which holds the run's
//! names and every earlier step's raw (not normalised) answer on the same broker, so a step can
//! use the member id or producer id that broker handed out.

use std::collections::HashMap;
use std::time::Duration;

use kafka_protocol::messages::{ApiKey, GroupId, RequestKind, TopicName};
use kafka_protocol::protocol::{Request, StrBytes};
use serde_json::{Value, json};

use super::normalise::{Placeholders, normalise};
use super::raw::{Answer, Conn};
use super::tree;

/// How often, and how far apart, a polling step tries its condition (about 20 s in all).
const POLL_ATTEMPTS: u32 = 200;
const POLL_INTERVAL: Duration = Duration::from_millis(100);

pub struct Ctx {
    /// Prepended to every topic and group name: unique per run, so a long-running Kafka never
    /// sees a name twice. Stripped from every answer before comparing.
    pub prefix: String,
    /// Record timestamps are offsets from this (a recent wall-clock time, the same for both
    /// brokers), so retention never touches them and timestamp look-ups compare exactly.
    pub base_ms: i64,
    raw: HashMap<String, Value>,
}

impl Ctx {
    pub fn name(&self, logical: &str) -> String {
        format!("{}{logical}", self.prefix)
    }

    pub fn str(&self, logical: &str) -> StrBytes {
        StrBytes::from_string(self.name(logical))
    }

    pub fn topic(&self, logical: &str) -> TopicName {
        TopicName(self.str(logical))
    }

    pub fn group(&self, logical: &str) -> GroupId {
        GroupId(self.str(logical))
    }

    /// A value from an earlier step's raw answer, by JSON pointer.
    pub fn get(&self, step: &str, pointer: &str) -> &Value {
        self.raw
            .get(step)
            .unwrap_or_else(|| panic!("no answer recorded for step {step:?}"))
            .pointer(pointer)
            .unwrap_or_else(|| panic!("step {step:?} has no {pointer}"))
    }

    pub fn i64(&self, step: &str, pointer: &str) -> i64 {
        self.get(step, pointer).as_i64().unwrap_or(-1)
    }

    pub fn text(&self, step: &str, pointer: &str) -> StrBytes {
        StrBytes::from_string(self.get(step, pointer).as_str().unwrap_or("").to_owned())
    }

    /// A string from an earlier answer, e.g. a topic id: `ctx.string(..).parse().unwrap()`
    /// gives the `Uuid` a request field wants (the test names no uuid crate).
    pub fn string(&self, step: &str, pointer: &str) -> String {
        self.get(step, pointer).as_str().unwrap_or("").to_owned()
    }
}

type Build = Box<dyn Fn(&Ctx) -> RequestKind>;
type Until = Box<dyn Fn(&Value) -> bool>;

pub enum Action {
    /// Send on connection `conn`; read the answer now unless `defer` (then an
    /// [`Action::Await`] on the same connection reads it).
    Call {
        conn: usize,
        api: ApiKey,
        version: i16,
        build: Build,
        defer: bool,
        until: Option<Until>,
    },
    Await {
        conn: usize,
    },
    Sleep(Duration),
    /// Several steps as one (flattened when the scenario is built).
    Group(Vec<Step>),
}

pub struct Step {
    pub name: String,
    pub action: Action,
    /// Compared between the brokers (set-up steps and waits are not, unless they fail).
    pub compare: bool,
}

pub struct Scenario {
    pub name: &'static str,
    pub steps: Vec<Step>,
}

pub fn scenario(name: &'static str, steps: Vec<Step>) -> Scenario {
    fn flatten(steps: Vec<Step>, into: &mut Vec<Step>) {
        for step in steps {
            match step.action {
                Action::Group(inner) => flatten(inner, into),
                _ => into.push(step),
            }
        }
    }
    let mut flat = Vec::new();
    flatten(steps, &mut flat);
    Scenario { name, steps: flat }
}

/// Several steps used as one.
pub fn group(steps: Vec<Step>) -> Step {
    Step {
        name: String::new(),
        action: Action::Group(steps),
        compare: false,
    }
}

/// One request at a pinned version.
pub fn call<R>(name: &str, version: i16, build: impl Fn(&Ctx) -> R + 'static) -> Step
where
    R: Request + Into<RequestKind>,
{
    Step {
        name: name.to_owned(),
        action: Action::Call {
            conn: 0,
            api: ApiKey::try_from(R::KEY).expect("a known API"),
            version,
            build: Box::new(move |ctx| build(ctx).into()),
            defer: false,
            until: None,
        },
        compare: true,
    }
}

pub fn await_answer(name: &str, conn: usize) -> Step {
    Step {
        name: name.to_owned(),
        action: Action::Await { conn },
        compare: true,
    }
}

pub fn sleep(millis: u64) -> Step {
    Step {
        name: format!("sleep {millis} ms"),
        action: Action::Sleep(Duration::from_millis(millis)),
        compare: false,
    }
}

impl Step {
    /// On another connection of the scenario (connections are opened on first use).
    pub fn on(mut self, connection: usize) -> Step {
        if let Action::Call { conn, .. } = &mut self.action {
            *conn = connection;
        }
        self
    }

    /// Send without reading the answer: a later [`await_answer`] reads it.
    pub fn deferred(mut self) -> Step {
        if let Action::Call { defer, .. } = &mut self.action {
            *defer = true;
        }
        self.compare = false;
        self
    }

    /// Not compared: set-up the scenario needs, whose answer may differ harmlessly.
    pub fn quiet(mut self) -> Step {
        self.compare = false;
        self
    }

    /// Repeat (on a connection of its own) until the raw answer satisfies `condition`, at
    /// most 20 s; a wait that never ends is reported as a difference. Quiet.
    pub fn until(mut self, condition: impl Fn(&Value) -> bool + 'static) -> Step {
        if let Action::Call { until, .. } = &mut self.action {
            *until = Some(Box::new(condition));
        }
        self.compare = false;
        self
    }
}

/// The answers of one broker to one scenario: (step, normalised answer), compared steps only.
pub async fn run(
    scenario: &Scenario,
    address: &str,
    prefix: &str,
    base_ms: i64,
) -> Vec<(String, Value)> {
    let mut ctx = Ctx {
        prefix: prefix.to_owned(),
        base_ms,
        raw: HashMap::new(),
    };
    let mut names = Placeholders::default();
    let mut conns: HashMap<usize, Conn> = HashMap::new();
    let mut results = Vec::new();
    for step in &scenario.steps {
        let (api, version, answer) = match &step.action {
            Action::Group(_) => unreachable!("flattened by scenario()"),
            Action::Sleep(duration) => {
                tokio::time::sleep(*duration).await;
                continue;
            }
            Action::Await { conn } => {
                let conn = conns
                    .get_mut(conn)
                    .unwrap_or_else(|| panic!("{}: await on an unused connection", step.name));
                conn.receive().await
            }
            Action::Call {
                api,
                version,
                build,
                until: Some(until),
                ..
            } => {
                let mut side = Conn::new(address);
                let mut attempts = 0u32;
                loop {
                    attempts += 1;
                    let answer = side.call(*api, *version, &build(&ctx)).await;
                    let raw = raw_tree(&answer);
                    if !matches!(answer, Answer::Response(_)) {
                        side = Conn::new(address);
                    }
                    if until(&raw) {
                        ctx.raw.insert(step.name.clone(), raw);
                        break;
                    }
                    if attempts >= POLL_ATTEMPTS {
                        results.push((
                            step.name.clone(),
                            json!({"wait": "condition not met within 20 s", "last answer": raw}),
                        ));
                        ctx.raw.insert(step.name.clone(), raw);
                        break;
                    }
                    tokio::time::sleep(POLL_INTERVAL).await;
                }
                continue;
            }
            Action::Call {
                conn,
                api,
                version,
                build,
                defer,
                until: None,
            } => {
                let request = build(&ctx);
                let conn = conns.entry(*conn).or_insert_with(|| Conn::new(address));
                if *defer {
                    conn.send(*api, *version, &request).await;
                    continue;
                }
                (*api, *version, conn.call(*api, *version, &request).await)
            }
        };
        let raw = raw_tree(&answer);
        if step.compare {
            let normalised = match &answer {
                Answer::Response(_) => {
                    normalise(api, version, raw.clone(), prefix, base_ms, &mut names)
                }
                _ => raw.clone(),
            };
            results.push((step.name.clone(), normalised));
        }
        ctx.raw.insert(step.name.clone(), raw);
    }
    results
}

fn raw_tree(answer: &Answer) -> Value {
    match answer {
        Answer::Response(response) => tree::of(response),
        Answer::Closed => json!("<the broker closed the connection>"),
        Answer::TimedOut => json!("<no answer within 20 s>"),
        Answer::Undecodable(why) => json!(format!("<undecodable answer: {why}>")),
    }
}
