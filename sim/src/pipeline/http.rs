//! HTTP over the simulated network: the collector's axum router served on a `tidepool-io`
//! listener, and the client host's requests.
//!
//! Both go through hyper's connection-level API rather than `axum::serve`, for one reason:
//! hyper's server adds a `Date` header from the real clock, which would make the bytes (and so
//! the trace hash) of two runs of one seed differ. Turned off here; nothing else changes.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tidepool_io::{Env, Listener};

/// Serves `router` on `listener` for as long as the host lives, one task per connection.
pub async fn serve(mut listener: Box<dyn Listener>, router: axum::Router) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            // The simulated network refuses only when the host is going away.
            Err(_) => return,
        };
        let service = TowerToHyperService::new(router.clone());
        tokio::spawn(async move {
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder.auto_date_header(false);
            // A connection that breaks (a crash, a cut link) ends here; the client sees it.
            let _ = builder
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// An HTTP answer: status and body.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: Bytes,
}

/// `POST path` with a JSON body to `host:port` on a fresh connection, waiting at most
/// `timeout` (of the host's clock) for the whole answer. An error means the outcome is unknown:
/// the request may or may not have been handled.
pub async fn post_json(
    env: &Env,
    host: &str,
    port: u16,
    path: &str,
    body: Vec<u8>,
    timeout: Duration,
) -> Result<Answer, String> {
    exchange(
        env,
        hyper::Method::POST,
        (host, port),
        path,
        Some(body),
        timeout,
    )
    .await
}

/// `method path` to `host:port` on a fresh connection, with a JSON body if `body` is given,
/// waiting at most `timeout` (of the host's clock) for the whole answer. An error means the
/// outcome is unknown.
pub async fn exchange(
    env: &Env,
    method: hyper::Method,
    (host, port): (&str, u16),
    path: &str,
    body: Option<Vec<u8>>,
    timeout: Duration,
) -> Result<Answer, String> {
    let exchange = async {
        let stream = env
            .transport
            .connect(host, port)
            .await
            .map_err(|error| format!("connect: {error}"))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|error| format!("handshake: {error}"))?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, format!("{host}:{port}"));
        if body.is_some() {
            request = request.header(hyper::header::CONTENT_TYPE, "application/json");
        }
        let request = request
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|error| format!("request: {error}"))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|error| format!("send: {error}"))?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|error| format!("body: {error}"))?
            .to_bytes();
        Ok(Answer { status, body })
    };
    // Biased: tokio's unbiased select draws from a per-process random source, which would
    // make a run depend on more than its seed.
    tokio::select! {
        biased;
        answer = exchange => answer,
        () = env.clock.sleep(timeout) => Err(format!("no answer within {timeout:?}")),
    }
}
