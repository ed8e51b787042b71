//! The control plane over HTTP (`tidepool serve --control ADDR`, `tidepool up --control ADDR`):
//! the broker's [`Control`] as JSON, so a test in any language can inject faults and read the
//! request log. The routes, their bodies and answers are described by [`openapi`], served at
//! `/openapi.json`; README's "Control plane" section has curl and Python examples.
//!
//! Bad input is a 400 with `{"error": reason}`; an unknown interception, node, topic or group
//! a 404; an action the broker's state refuses (a node already down) a 409.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use serde::Deserialize;
use serde_json::{Value, json};
use tidepool_broker::control::{PlaneError, api_key_named};
use tidepool_broker::{
    Control, ControlError, InjectedError, InterceptAction, Interception, InterceptionId,
};

/// Largest JSON body a control request may have.
const BODY_BYTES_MAX: usize = 64 * 1024;
/// Error codes a request may name at once.
const ERRORS_PER_CALL_MAX: usize = 10_000;

/// The control routes over `control`.
pub fn router(control: Control) -> Router {
    Router::new()
        .route("/openapi.json", get(openapi_json))
        .route("/state", get(state))
        .route("/interceptions", post(add_interception).get(interceptions))
        .route("/interceptions/{id}", delete(remove_interception))
        .route("/interceptions/{id}/observed", get(observed))
        .route("/errors", post(push_errors))
        .route("/partition-errors", post(push_partition_errors))
        .route("/nodes/{node}/round-trip", put(set_round_trip))
        .route("/nodes/{node}/down", post(node_down))
        .route("/nodes/{node}/up", post(node_up))
        .route("/partitions/{topic}/{partition}/leader", post(move_leader))
        .route("/partitions/{topic}/{partition}/roll", post(roll))
        .route("/partitions/{topic}/{partition}/clean", post(clean))
        .route("/groups/{group}/coordinator", post(move_coordinator))
        .route("/groups/{group}/rebalance", post(force_rebalance))
        .route("/version-cap", put(cap_versions))
        .route("/requests", get(requests))
        .route("/actions", get(actions))
        .route("/reset", post(reset))
        .layer(axum::extract::DefaultBodyLimit::max(BODY_BYTES_MAX))
        .with_state(control)
}

/// Serves the control routes on `listener` until the task is dropped.
pub async fn serve(listener: tokio::net::TcpListener, control: Control) -> std::io::Result<()> {
    axum::serve(listener, router(control)).await
}

/// Binds `address` and serves the control routes on it; returns the bound address.
pub async fn start(
    address: SocketAddr,
    control: Control,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<std::io::Result<()>>)> {
    let listener = tokio::net::TcpListener::bind(address).await?;
    let bound = listener.local_addr()?;
    Ok((bound, tokio::spawn(serve(listener, control))))
}

struct Failure(StatusCode, String);

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

fn bad(reason: impl Into<String>) -> Failure {
    Failure(StatusCode::BAD_REQUEST, reason.into())
}

impl From<PlaneError> for Failure {
    fn from(error: PlaneError) -> Failure {
        let status = match error {
            PlaneError::UnknownInterception(_) => StatusCode::NOT_FOUND,
            PlaneError::TooManyInterceptions(_) | PlaneError::TooManyErrors(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            PlaneError::UnknownRelease(..) | PlaneError::UnknownApi(_) => StatusCode::BAD_REQUEST,
        };
        Failure(status, error.to_string())
    }
}

impl From<ControlError> for Failure {
    fn from(error: ControlError) -> Failure {
        use tidepool_broker::cluster::LeadershipError;
        let status = match &error {
            ControlError::Leadership(
                LeadershipError::UnknownTopic(_)
                | LeadershipError::UnknownPartition { .. }
                | LeadershipError::UnknownNode(_),
            ) => StatusCode::NOT_FOUND,
            ControlError::Leadership(_)
            | ControlError::AlreadyThere(..)
            | ControlError::NoRebalance(..) => StatusCode::CONFLICT,
            ControlError::Coordinator(_) => StatusCode::SERVICE_UNAVAILABLE,
            ControlError::Storage(_) | ControlError::Rebind { .. } => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        Failure(status, error.to_string())
    }
}

type Answer = Result<Json<Value>, Failure>;

/// A JSON body, or a 400 that says what is wrong with it.
struct Body<T>(T);

impl<S, T> axum::extract::FromRequest<S> for Body<T>
where
    S: Send + Sync,
    T: serde::de::DeserializeOwned,
{
    type Rejection = Failure;

    async fn from_request(request: axum::extract::Request, state: &S) -> Result<Self, Failure> {
        let bytes = axum::body::Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                Failure(rejection.status(), format!("unreadable body: {rejection}"))
            })?;
        if bytes.is_empty() {
            return serde_json::from_slice(b"{}")
                .map(Body)
                .map_err(|error| bad(format!("a JSON body is required: {error}")));
        }
        serde_json::from_slice(&bytes)
            .map(Body)
            .map_err(|error| bad(format!("invalid JSON body: {error}")))
    }
}

/// An error code as a number (6) or a Kafka name ("NOT_LEADER_OR_FOLLOWER", any case).
#[derive(Deserialize)]
#[serde(untagged)]
enum Code {
    Number(i16),
    Name(String),
}

fn error_code(code: &Code) -> Result<i16, Failure> {
    match code {
        Code::Number(number) => Ok(*number),
        Code::Name(name) => code_named(name).ok_or_else(|| {
            bad(format!(
                "unknown error {name:?}: give a number or a Kafka error name such as NOT_LEADER_OR_FOLLOWER"
            ))
        }),
    }
}

/// The Kafka error called `name`, compared without case or underscores.
pub fn code_named(name: &str) -> Option<i16> {
    let wanted: String = name
        .chars()
        .filter(|c| *c != '_')
        .flat_map(char::to_lowercase)
        .collect();
    if wanted == "none" {
        return Some(0);
    }
    (-1..=200).find(|&code| {
        kafka_protocol::ResponseError::try_from_code(code).is_some_and(|error| {
            !matches!(error, kafka_protocol::ResponseError::Unknown(_))
                && error.to_string().to_lowercase() == wanted
        })
    })
}

fn error_name(code: i16) -> String {
    match kafka_protocol::ResponseError::try_from_code(code) {
        None => "NONE".to_owned(),
        Some(kafka_protocol::ResponseError::Unknown(code)) => format!("UNKNOWN_{code}"),
        Some(error) => screaming_snake(&error.to_string()),
    }
}

fn screaming_snake(camel: &str) -> String {
    let mut out = String::new();
    for (index, c) in camel.chars().enumerate() {
        if c.is_uppercase() && index > 0 {
            out.push('_');
        }
        out.extend(c.to_uppercase());
    }
    out
}

fn api(name: &str) -> Result<kafka_protocol::messages::ApiKey, Failure> {
    api_key_named(name).map_err(Failure::from)
}

async fn openapi_json() -> Json<Value> {
    Json(openapi())
}

async fn state(State(control): State<Control>) -> Json<Value> {
    Json(json!({
        "interceptions": interception_list(&control),
        "version_cap": control.version_cap(),
        "releases": tidepool_broker::control::RELEASES.iter().map(|release| release.name).collect::<Vec<_>>(),
    }))
}

fn interception_list(control: &Control) -> Vec<Value> {
    control
        .interceptions()
        .into_iter()
        .map(|(id, description)| json!({ "id": id.0, "description": description }))
        .collect()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewInterception {
    /// API name or key; absent: every API.
    api: Option<String>,
    node: Option<i32>,
    times: Option<u32>,
    /// observe | error | delay | drop | close
    action: String,
    error: Option<Code>,
    delay_ms: Option<u64>,
}

async fn add_interception(
    State(control): State<Control>,
    Body(body): Body<NewInterception>,
) -> Result<(StatusCode, Json<Value>), Failure> {
    let action = match body.action.as_str() {
        "observe" => InterceptAction::Observe,
        "drop" => InterceptAction::Drop,
        "close" => InterceptAction::CloseConnection,
        "error" => {
            let code = body
                .error
                .as_ref()
                .ok_or_else(|| bad("action \"error\" needs \"error\": a code or a name"))?;
            InterceptAction::Error(error_code(code)?)
        }
        "delay" => {
            let delay_ms = body
                .delay_ms
                .ok_or_else(|| bad("action \"delay\" needs \"delay_ms\""))?;
            InterceptAction::Delay(Duration::from_millis(delay_ms))
        }
        other => {
            return Err(bad(format!(
                "unknown action {other:?}: observe, error, delay, drop or close"
            )));
        }
    };
    if body.times == Some(0) {
        return Err(bad(
            "\"times\" must be at least 1 (leave it out for until removed)",
        ));
    }
    let rule = Interception {
        api_key: body.api.as_deref().map(api).transpose()?,
        node: body.node,
        times: body.times,
        action,
    };
    let id = control.intercept(rule)?;
    Ok((StatusCode::CREATED, Json(json!({ "id": id.0 }))))
}

async fn interceptions(State(control): State<Control>) -> Json<Value> {
    Json(json!(interception_list(&control)))
}

async fn remove_interception(State(control): State<Control>, Path(id): Path<u64>) -> Answer {
    control.remove_interception(InterceptionId(id))?;
    Ok(Json(json!({ "removed": id })))
}

async fn observed(State(control): State<Control>, Path(id): Path<u64>) -> Answer {
    let seen = control.observed(InterceptionId(id)).ok_or_else(|| {
        Failure(
            StatusCode::NOT_FOUND,
            format!("no interception {id} (removed, used up or never added)"),
        )
    })?;
    Ok(Json(json!(seen)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PushErrors {
    api: String,
    node: Option<i32>,
    errors: Vec<Code>,
    /// Each injected answer waits this long first.
    delay_ms: Option<u64>,
}

async fn push_errors(State(control): State<Control>, Body(body): Body<PushErrors>) -> Answer {
    let api_key = api(&body.api)?;
    if body.errors.is_empty() || body.errors.len() > ERRORS_PER_CALL_MAX {
        return Err(bad(format!(
            "\"errors\" must list 1 to {ERRORS_PER_CALL_MAX} codes"
        )));
    }
    let delay = Duration::from_millis(body.delay_ms.unwrap_or(0));
    let errors = body
        .errors
        .iter()
        .map(|code| error_code(code).map(|code| InjectedError { code, delay }))
        .collect::<Result<Vec<_>, _>>()?;
    control.push_errors(api_key, body.node, &errors)?;
    Ok(Json(json!({ "pushed": errors.len() })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PushPartitionErrors {
    topic: String,
    partition: i32,
    api: Option<String>,
    errors: Vec<Code>,
}

async fn push_partition_errors(
    State(control): State<Control>,
    Body(body): Body<PushPartitionErrors>,
) -> Answer {
    let api_key = body.api.as_deref().map(api).transpose()?;
    if let Some(key) = api_key
        && !tidepool_broker::control::inject::has_partition_errors(key)
    {
        return Err(bad(format!(
            "{key:?} has no partition-level errors: use Produce, Fetch, ListOffsets or OffsetCommit"
        )));
    }
    if body.errors.is_empty() || body.errors.len() > ERRORS_PER_CALL_MAX {
        return Err(bad(format!(
            "\"errors\" must list 1 to {ERRORS_PER_CALL_MAX} codes"
        )));
    }
    let codes = body
        .errors
        .iter()
        .map(error_code)
        .collect::<Result<Vec<_>, _>>()?;
    control.push_partition_errors(&body.topic, body.partition, api_key, &codes)?;
    Ok(Json(json!({ "pushed": codes.len() })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RoundTrip {
    delay_ms: u64,
}

async fn set_round_trip(
    State(control): State<Control>,
    Path(node): Path<i32>,
    Body(body): Body<RoundTrip>,
) -> Answer {
    if !control.nodes().contains(&node) {
        return Err(Failure(StatusCode::NOT_FOUND, format!("no node {node}")));
    }
    control.set_round_trip(node, Duration::from_millis(body.delay_ms));
    Ok(Json(json!({ "node": node, "delay_ms": body.delay_ms })))
}

async fn node_down(State(control): State<Control>, Path(node): Path<i32>) -> Answer {
    control.node_down(node).await?;
    Ok(Json(json!({ "node": node, "up": false })))
}

async fn node_up(State(control): State<Control>, Path(node): Path<i32>) -> Answer {
    control.node_up(node).await?;
    Ok(Json(json!({ "node": node, "up": true })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ToNode {
    node: i32,
}

async fn move_leader(
    State(control): State<Control>,
    Path((topic, partition)): Path<(String, i32)>,
    Body(body): Body<ToNode>,
) -> Answer {
    let epoch = control.move_leader(&topic, partition, body.node)?;
    Ok(Json(
        json!({ "topic": topic, "partition": partition, "leader": body.node, "leader_epoch": epoch }),
    ))
}

async fn move_coordinator(
    State(control): State<Control>,
    Path(group): Path<String>,
    Body(body): Body<ToNode>,
) -> Answer {
    let epoch = control.move_group_coordinator(&group, body.node)?;
    Ok(Json(
        json!({ "group": group, "coordinator": body.node, "leader_epoch": epoch }),
    ))
}

async fn force_rebalance(State(control): State<Control>, Path(group): Path<String>) -> Answer {
    control.force_rebalance(&group)?;
    Ok(Json(json!({ "group": group, "rebalancing": true })))
}

async fn roll(
    State(control): State<Control>,
    Path((topic, partition)): Path<(String, i32)>,
) -> Answer {
    control.roll(&topic, partition)?;
    Ok(Json(
        json!({ "topic": topic, "partition": partition, "rolled": true }),
    ))
}

async fn clean(
    State(control): State<Control>,
    Path((topic, partition)): Path<(String, i32)>,
) -> Answer {
    let report = control.clean_now(&topic, partition)?;
    Ok(Json(json!({
        "topic": topic,
        "partition": partition,
        "cleaned": report.is_some(),
        "report": report.map(|report| format!("{report:?}")),
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VersionCap {
    /// "2.8", "3.7", "4.0"…; null lifts the cap.
    release: Option<String>,
}

async fn cap_versions(State(control): State<Control>, Body(body): Body<VersionCap>) -> Answer {
    control.cap_versions(body.release.as_deref())?;
    Ok(Json(json!({ "version_cap": control.version_cap() })))
}

#[derive(Deserialize)]
struct Since {
    since: Option<u64>,
}

async fn requests(State(control): State<Control>, Query(query): Query<Since>) -> Json<Value> {
    let log = control.request_log(query.since.unwrap_or(0));
    Json(Value::Array(
        log.into_iter()
            .map(|entry| {
                let names: Vec<String> = entry.error_codes.iter().map(|c| error_name(*c)).collect();
                let mut value = json!(entry);
                value["error_names"] = json!(names);
                value
            })
            .collect(),
    ))
}

async fn actions(State(control): State<Control>) -> Json<Value> {
    Json(json!(control.actions()))
}

async fn reset(State(control): State<Control>) -> Json<Value> {
    control.reset();
    Json(json!({ "reset": true }))
}

/// The OpenAPI 3.0 description of the routes above.
pub fn openapi() -> Value {
    let ok = |description: &str| json!({ "200": { "description": description } });
    let node =
        json!({ "name": "node", "in": "path", "required": true, "schema": { "type": "integer" } });
    let topic =
        json!({ "name": "topic", "in": "path", "required": true, "schema": { "type": "string" } });
    let partition = json!({ "name": "partition", "in": "path", "required": true, "schema": { "type": "integer" } });
    let group =
        json!({ "name": "group", "in": "path", "required": true, "schema": { "type": "string" } });
    let id =
        json!({ "name": "id", "in": "path", "required": true, "schema": { "type": "integer" } });
    let body = |schema: Value| json!({ "required": true, "content": { "application/json": { "schema": schema } } });
    let code = json!({ "oneOf": [ { "type": "integer" }, { "type": "string", "example": "NOT_LEADER_OR_FOLLOWER" } ] });
    let to_node = json!({ "type": "object", "required": ["node"], "properties": { "node": { "type": "integer" } } });
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "Tidepool control plane",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Fault injection and inspection of a running Tidepool broker. Errors are {\"error\": reason} with 400 (bad input), 404 (unknown thing), 409 (refused by the broker's state) or 503 (a control bound reached)."
        },
        "paths": {
            "/openapi.json": { "get": { "summary": "This document", "responses": ok("OpenAPI document") } },
            "/state": { "get": { "summary": "Active interceptions, the version cap and the releases it can take", "responses": ok("state") } },
            "/interceptions": {
                "get": { "summary": "Active interceptions", "responses": ok("[{id, description}]") },
                "post": {
                    "summary": "Intercept requests by API key and node",
                    "requestBody": body(json!({
                        "type": "object", "required": ["action"],
                        "properties": {
                            "api": { "type": "string", "description": "API name (Produce, Fetch, …) or key; absent: every API" },
                            "node": { "type": "integer", "description": "absent: every node" },
                            "times": { "type": "integer", "minimum": 1, "description": "absent: until removed" },
                            "action": { "type": "string", "enum": ["observe", "error", "delay", "drop", "close"] },
                            "error": code.clone(),
                            "delay_ms": { "type": "integer", "minimum": 0 }
                        }
                    })),
                    "responses": { "201": { "description": "{id}" }, "400": { "description": "bad rule" } }
                }
            },
            "/interceptions/{id}": { "delete": { "summary": "Remove an interception", "parameters": [id.clone()], "responses": ok("removed") } },
            "/interceptions/{id}/observed": { "get": { "summary": "Requests an interception matched", "parameters": [id], "responses": ok("request log entries") } },
            "/errors": { "post": {
                "summary": "Answer the next requests of an API (on a node, or any) with these errors, one each",
                "requestBody": body(json!({
                    "type": "object", "required": ["api", "errors"],
                    "properties": {
                        "api": { "type": "string" }, "node": { "type": "integer" },
                        "errors": { "type": "array", "items": code.clone() },
                        "delay_ms": { "type": "integer", "minimum": 0 }
                    }
                })),
                "responses": ok("{pushed}")
            } },
            "/partition-errors": { "post": {
                "summary": "Answer one partition of the next requests naming it with these errors (Produce, Fetch, ListOffsets, OffsetCommit)",
                "requestBody": body(json!({
                    "type": "object", "required": ["topic", "partition", "errors"],
                    "properties": {
                        "topic": { "type": "string" }, "partition": { "type": "integer" },
                        "api": { "type": "string" },
                        "errors": { "type": "array", "items": code }
                    }
                })),
                "responses": ok("{pushed}")
            } },
            "/nodes/{node}/round-trip": { "put": {
                "summary": "Delay every request to a node (0 removes the delay)",
                "parameters": [node.clone()],
                "requestBody": body(json!({ "type": "object", "required": ["delay_ms"], "properties": { "delay_ms": { "type": "integer", "minimum": 0 } } })),
                "responses": ok("set")
            } },
            "/nodes/{node}/down": { "post": { "summary": "Take a node down as if it crashed", "parameters": [node.clone()], "responses": ok("down") } },
            "/nodes/{node}/up": { "post": { "summary": "Bring a node back", "parameters": [node], "responses": ok("up") } },
            "/partitions/{topic}/{partition}/leader": { "post": {
                "summary": "Move a partition's leadership to a live replica",
                "parameters": [topic.clone(), partition.clone()],
                "requestBody": body(to_node.clone()),
                "responses": ok("{leader_epoch}")
            } },
            "/partitions/{topic}/{partition}/roll": { "post": { "summary": "Roll the active segment", "parameters": [topic.clone(), partition.clone()], "responses": ok("rolled") } },
            "/partitions/{topic}/{partition}/clean": { "post": { "summary": "Run the compaction cleaner now", "parameters": [topic, partition], "responses": ok("cleaner report") } },
            "/groups/{group}/coordinator": { "post": {
                "summary": "Move a group's coordinator to a node",
                "parameters": [group.clone()],
                "requestBody": body(to_node),
                "responses": ok("moved")
            } },
            "/groups/{group}/rebalance": { "post": { "summary": "Force a rebalance of a group with members", "parameters": [group], "responses": ok("rebalancing") } },
            "/version-cap": { "put": {
                "summary": "Advertise only the API versions of an Apache Kafka release (null lifts the cap)",
                "requestBody": body(json!({ "type": "object", "properties": { "release": { "type": "string", "nullable": true, "example": "2.8" } } })),
                "responses": ok("{version_cap}")
            } },
            "/requests": { "get": {
                "summary": "The request log (API, version, client id, node, error codes, outcome)",
                "parameters": [ { "name": "since", "in": "query", "schema": { "type": "integer" }, "description": "first seq to return" } ],
                "responses": ok("request log entries")
            } },
            "/actions": { "get": { "summary": "Every control action with its time", "responses": ok("actions") } },
            "/reset": { "post": { "summary": "Remove interceptions, injected errors, delays and the version cap", "responses": ok("reset") } }
        }
    })
}
