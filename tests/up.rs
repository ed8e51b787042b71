//! `tidepool up` as a user runs it (issue 9 item 8, issue 10 item 7): one process with a
//! broker, the collector and the three stages, the gateway and its example services; one ready
//! line; events posted over HTTP reach every stage; an order created through the gateway can be
//! read back; SIGTERM stops it cleanly.

use std::process::Stdio;
use std::time::Duration;

use tidepool_io::{Clock, SystemClock};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::Command;

const STEP_TIMEOUT: Duration = Duration::from_secs(30);

/// One HTTP/1.1 exchange; returns the status and the body.
async fn http(authority: &str, request_line: &str, body: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(authority).await.unwrap();
    let request = format!(
        "{request_line}\r\nHost: {authority}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).await.unwrap();
    let status = raw
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let body = raw
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    (status, body)
}

#[tokio::test]
async fn up_serves_the_pipeline_until_sigterm() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tidepool"))
        .args([
            "up",
            "--listen",
            "127.0.0.1:0",
            "--collector",
            "127.0.0.1:0",
            "--gateway",
            "127.0.0.1:0",
            "--control",
            "127.0.0.1:0",
            "--partitions",
            "2",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("starts tidepool up");
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let ready = tokio::time::timeout(STEP_TIMEOUT, lines.next_line())
        .await
        .expect("ready in time")
        .unwrap()
        .expect("a ready line");
    let fields: Vec<&str> = ready.split(' ').collect();
    assert_eq!(&fields[..2], ["tidepool", "up"], "{ready}");
    assert_eq!(fields[2], "ready", "{ready}");
    assert!(fields[3].starts_with("bootstrap=127.0.0.1:"), "{ready}");
    let collector = fields[4]
        .strip_prefix("collector=http://")
        .unwrap_or_else(|| panic!("{ready}"))
        .to_owned();
    let gateway = fields[5]
        .strip_prefix("gateway=http://")
        .unwrap_or_else(|| panic!("{ready}"))
        .to_owned();
    let control = fields[6]
        .strip_prefix("control=http://")
        .unwrap_or_else(|| panic!("{ready}"))
        .to_owned();
    let (status, body) = http(&control, "GET /openapi.json HTTP/1.1", "").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"/interceptions\""), "{body}");

    let events = r#"[{"id":"u1","tenant":"acme","type":"click","timestamp":1714564800000,"payload":{}},
                     {"id":"u2","tenant":"beta","type":"view","timestamp":1714564800000,"payload":{}}]"#;
    let (status, body) = http(&collector, "POST /v1/events HTTP/1.1", events).await;
    assert_eq!(status, 202, "{body}");
    assert!(body.contains("u1") && body.contains("u2"), "{body}");

    let clock = SystemClock::new();
    let deadline = clock.now() + STEP_TIMEOUT;
    loop {
        let (_, metrics) = http(&collector, "GET /metrics HTTP/1.1", "").await;
        let processed = ["enrichment", "analytics", "persister"]
            .iter()
            .all(|stage| {
                metrics.contains(&format!(
                    "tidepool_stage_processed_total{{stage=\"{stage}\"}} 2"
                ))
            });
        if processed {
            break;
        }
        assert!(
            clock.now() < deadline,
            "stages did not process both events:\n{metrics}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The gateway answers 503 until its node owns a response partition.
    let deadline = clock.now() + STEP_TIMEOUT;
    let created = loop {
        let (status, body) = http(
            &gateway,
            "POST /api/orders HTTP/1.1",
            r#"{"item":"kettle","quantity":1}"#,
        )
        .await;
        if status != 503 {
            break (status, body);
        }
        assert!(
            clock.now() < deadline,
            "the gateway never became ready: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(created.0, 201, "{}", created.1);
    let order: serde_json::Value = serde_json::from_str(&created.1).unwrap();
    let id = order["id"].as_str().expect("the order has an id");
    let (status, body) = http(&gateway, &format!("GET /api/orders/{id} HTTP/1.1"), "").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).unwrap(),
        order
    );

    let pid = child.id().expect("running").to_string();
    let sent = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    assert!(sent.success());
    let status = tokio::time::timeout(STEP_TIMEOUT, child.wait())
        .await
        .expect("exits in time after SIGTERM")
        .unwrap();
    assert!(
        status.success(),
        "a SIGTERM stop exits successfully: {status}"
    );
}
