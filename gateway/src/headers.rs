//! The record headers of requests and replies: the wire contract between the gateway and the
//! services, which any Kafka client in any language can speak.
//!
//! # Request records (gateway → `{service}.requests`)
//! Key: the correlation id. Value: the HTTP body (possibly empty). Headers:
//!
//! | header | value |
//! |---|---|
//! | `correlation-id` | the correlation id (also the key) |
//! | `reply-to` | the topic to answer on (the deployment's response topic) |
//! | `method` | the HTTP method, e.g. `POST` |
//! | `path` | the path after `/api/{service}`, starting with `/` (`/` when nothing follows) |
//! | `query` | the raw query string without `?`; absent when there is none |
//! | `content-type` | the request's Content-Type, when it has one |
//! | `accept` | the request's Accept, when it has one |
//! | `deadline-ms` | epoch ms after which the gateway no longer waits for the answer |
//! | `x-*` | every `x-` request header, name lowercased (at most `forwarded_headers_max`) |
//!
//! # Reply records (service → `reply-to`)
//! Key: the correlation id (so the default murmur2 partitioner places it on the partition of
//! the node that parked the request). Value: the HTTP body. Headers: `correlation-id`,
//! `status` (decimal HTTP status), and headers copied to the HTTP answer: `content-type`,
//! `location`, `cache-control`, `etag` and any `x-*`.

pub const CORRELATION_ID: &str = "correlation-id";
pub const REPLY_TO: &str = "reply-to";
pub const METHOD: &str = "method";
pub const PATH: &str = "path";
pub const QUERY: &str = "query";
pub const CONTENT_TYPE: &str = "content-type";
pub const ACCEPT: &str = "accept";
pub const DEADLINE_MS: &str = "deadline-ms";
pub const STATUS: &str = "status";

/// Whether a request's HTTP header travels to the service.
pub fn is_forwarded_request_header(name: &str) -> bool {
    name.starts_with("x-")
}

/// Whether a reply's record header becomes a header of the HTTP answer.
pub fn is_passed_reply_header(name: &str) -> bool {
    matches!(name, CONTENT_TYPE | "location" | "cache-control" | "etag") || name.starts_with("x-")
}

/// The last value of `key` among record headers, as text.
pub fn find<'a>(headers: &'a [tidepool_client::Header], key: &str) -> Option<&'a str> {
    headers
        .iter()
        .rev()
        .find(|header| header.key == key)
        .and_then(|header| header.value.as_deref())
        .and_then(|value| std::str::from_utf8(value).ok())
}
