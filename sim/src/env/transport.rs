//! Sockets inside the simulation: turmoil's TCP, and a wrapper that hashes every byte a host
//! sends and receives into a trace, so two runs can be compared for determinism.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tidepool_io::{BoxFuture, BoxStream, Clock, Listener, Transport};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::entropy::{fnv1a64, fnv1a64_extend};

/// turmoil's simulated TCP. Host names resolve through turmoil's DNS (the names hosts were
/// registered under); a listener may bind only the unspecified address or loopback, which is
/// all turmoil supports.
#[derive(Debug, Clone, Copy, Default)]
pub struct SimTransport;

struct SimListener(turmoil::net::TcpListener);

impl Transport for SimTransport {
    fn bind(&self, addr: SocketAddr) -> BoxFuture<'_, io::Result<Box<dyn Listener>>> {
        Box::pin(async move {
            let listener = turmoil::net::TcpListener::bind(addr).await?;
            Ok(Box::new(SimListener(listener)) as Box<dyn Listener>)
        })
    }

    fn connect<'a>(&'a self, host: &'a str, port: u16) -> BoxFuture<'a, io::Result<BoxStream>> {
        Box::pin(async move {
            let stream = turmoil::net::TcpStream::connect((host, port)).await?;
            Ok(Box::new(stream) as BoxStream)
        })
    }
}

impl Listener for SimListener {
    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }

    fn accept(&mut self) -> BoxFuture<'_, io::Result<(BoxStream, SocketAddr)>> {
        Box::pin(async move {
            let (stream, peer) = self.0.accept().await?;
            Ok((Box::new(stream) as BoxStream, peer))
        })
    }
}

/// A running hash of network events: which connection, which direction, at what virtual
/// time, and the bytes. Two runs with equal digests saw the same bytes at the same times.
/// Clones share one hash.
#[derive(Debug, Clone, Default)]
pub struct TraceHash {
    state: Arc<Mutex<TraceState>>,
}

#[derive(Debug, Default)]
struct TraceState {
    /// `None` until the first event, so an empty trace has a recognisable digest.
    hash: Option<u64>,
    events: u64,
    bytes: u64,
    /// Every event, when asked for: to find where two runs that should agree part ways.
    log: Option<Vec<TraceEvent>>,
}

/// One recorded event: its label and the hash of its data alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceEvent {
    pub label: String,
    pub len: usize,
    pub data_hash: u64,
}

impl TraceHash {
    pub fn new() -> TraceHash {
        TraceHash::default()
    }

    /// A trace that also keeps every event (memory grows with the run): compare two logs
    /// with [`first_divergence`] to see where a run stopped being deterministic.
    pub fn logging() -> TraceHash {
        let trace = TraceHash::default();
        trace.lock().log = Some(Vec::new());
        trace
    }

    /// The events so far, if this trace keeps them.
    pub fn log(&self) -> Option<Vec<TraceEvent>> {
        self.lock().log.clone()
    }

    /// Adds an event of the caller's own (a label and its data) to the trace.
    pub fn record(&self, label: &str, data: &[u8]) {
        let mut state = self.lock();
        let mut hash = state.hash.unwrap_or_else(|| fnv1a64(b"tidepool-trace"));
        hash = fnv1a64_extend(hash, &(label.len() as u64).to_le_bytes());
        hash = fnv1a64_extend(hash, label.as_bytes());
        hash = fnv1a64_extend(hash, &(data.len() as u64).to_le_bytes());
        hash = fnv1a64_extend(hash, data);
        state.hash = Some(hash);
        state.events += 1;
        state.bytes += data.len() as u64;
        if let Some(log) = &mut state.log {
            log.push(TraceEvent {
                label: label.to_owned(),
                len: data.len(),
                data_hash: fnv1a64(data),
            });
        }
    }

    /// The hash of every event so far (0 for none).
    pub fn digest(&self) -> u64 {
        self.lock().hash.unwrap_or(0)
    }

    /// How many events and how many bytes were recorded.
    pub fn counts(&self) -> (u64, u64) {
        let state = self.lock();
        (state.events, state.bytes)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, TraceState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The index of the first event where two logs differ (or where the shorter one ends), and
/// the two events there; `None` when they are equal.
pub fn first_divergence<'a>(
    a: &'a [TraceEvent],
    b: &'a [TraceEvent],
) -> Option<(usize, Option<&'a TraceEvent>, Option<&'a TraceEvent>)> {
    let index = (0..a.len().max(b.len())).find(|index| a.get(*index) != b.get(*index))?;
    Some((index, a.get(index), b.get(index)))
}

/// Wraps a transport so every byte read or written on its connections goes into a
/// [`TraceHash`], tagged with the connection's number (in the order connections were made or
/// accepted), the direction and the clock's virtual milliseconds.
pub struct HashingTransport {
    inner: Arc<dyn Transport>,
    clock: Arc<dyn Clock>,
    trace: TraceHash,
    next_connection: Arc<AtomicU64>,
}

impl HashingTransport {
    pub fn new(inner: Arc<dyn Transport>, clock: Arc<dyn Clock>, trace: TraceHash) -> Self {
        HashingTransport {
            inner,
            clock,
            trace,
            next_connection: Arc::new(AtomicU64::new(0)),
        }
    }

    fn wrap(&self, stream: BoxStream) -> BoxStream {
        Box::new(HashingStream {
            inner: stream,
            connection: self.next_connection.fetch_add(1, Ordering::Relaxed),
            clock: Arc::clone(&self.clock),
            trace: self.trace.clone(),
        })
    }
}

impl Transport for HashingTransport {
    fn bind(&self, addr: SocketAddr) -> BoxFuture<'_, io::Result<Box<dyn Listener>>> {
        Box::pin(async move {
            let inner = self.inner.bind(addr).await?;
            Ok(Box::new(HashingListener {
                inner,
                transport: HashingTransport {
                    inner: Arc::clone(&self.inner),
                    clock: Arc::clone(&self.clock),
                    trace: self.trace.clone(),
                    next_connection: Arc::clone(&self.next_connection),
                },
            }) as Box<dyn Listener>)
        })
    }

    fn connect<'a>(&'a self, host: &'a str, port: u16) -> BoxFuture<'a, io::Result<BoxStream>> {
        Box::pin(async move {
            let stream = self.inner.connect(host, port).await?;
            Ok(self.wrap(stream))
        })
    }
}

struct HashingListener {
    inner: Box<dyn Listener>,
    /// Shares the connection counter and trace with the transport that bound it.
    transport: HashingTransport,
}

impl Listener for HashingListener {
    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    fn accept(&mut self) -> BoxFuture<'_, io::Result<(BoxStream, SocketAddr)>> {
        Box::pin(async move {
            let (stream, peer) = self.inner.accept().await?;
            Ok((self.transport.wrap(stream), peer))
        })
    }
}

struct HashingStream {
    inner: BoxStream,
    connection: u64,
    clock: Arc<dyn Clock>,
    trace: TraceHash,
}

impl HashingStream {
    fn record(&self, direction: &str, data: &[u8]) {
        let millis = self.clock.now().as_millis();
        let label = format!("{direction} c{} t{millis}", self.connection);
        self.trace.record(&label, data);
    }
}

impl AsyncRead for HashingStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            // An empty read is the end of the stream: worth recording too.
            self.record("recv", &buf.filled()[before..]);
        }
        polled
    }
}

impl AsyncWrite for HashingStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, data);
        if let Poll::Ready(Ok(written)) = polled {
            self.record("send", &data[..written]);
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::env::SimClock;

    /// An echo server and a client over turmoil TCP; returns the client's trace digest.
    fn echo_run(seed: u64, payload: &'static [u8]) -> (u64, (u64, u64)) {
        let mut sim = turmoil::Builder::new()
            .rng_seed(seed)
            .simulation_duration(Duration::from_secs(10))
            .build();
        sim.host("server", || async {
            let mut listener = SimTransport.bind(([0, 0, 0, 0], 7000).into()).await?;
            assert_eq!(listener.local_addr()?.port(), 7000);
            loop {
                let (mut stream, _) = listener.accept().await?;
                let mut buf = vec![0u8; 64];
                let read = stream.read(&mut buf).await?;
                stream.write_all(&buf[..read]).await?;
            }
        });
        let trace = TraceHash::new();
        let client_trace = trace.clone();
        sim.client("client", async move {
            let transport = HashingTransport::new(
                Arc::new(SimTransport),
                Arc::new(SimClock::new()),
                client_trace,
            );
            let mut stream = transport.connect("server", 7000).await?;
            stream.write_all(payload).await?;
            let mut echoed = vec![0u8; payload.len()];
            stream.read_exact(&mut echoed).await?;
            assert_eq!(echoed, payload);
            assert!(transport.connect("nowhere", 7000).await.is_err());
            Ok(())
        });
        sim.run().unwrap();
        (trace.digest(), trace.counts())
    }

    #[test]
    fn bytes_cross_the_simulated_network_and_are_traced() {
        let (digest, (events, bytes)) = echo_run(1, b"ping");
        assert_ne!(digest, 0);
        assert_eq!(events, 2, "one send, one receive");
        assert_eq!(bytes, 8);
    }

    #[test]
    fn the_same_seed_gives_the_same_trace() {
        assert_eq!(echo_run(5, b"ping"), echo_run(5, b"ping"));
        assert_ne!(echo_run(5, b"ping").0, echo_run(5, b"pong").0);
    }

    #[test]
    fn an_empty_trace_digests_to_zero() {
        let trace = TraceHash::new();
        assert_eq!(trace.digest(), 0);
        trace.record("x", b"");
        assert_ne!(trace.digest(), 0);
    }
}
