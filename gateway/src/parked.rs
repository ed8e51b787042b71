//! Requests waiting for their response: a bounded map from correlation id to the waiting HTTP
//! handler's channel and deadline.
//!
//! **Invariant:** a response reaches a request only through the entry of its own correlation
//! id, and an entry is removed by whichever comes first — its response, its deadline, or its
//! HTTP client going away — so each request gets at most one answer and a response never
//! reaches another request. Ids that finished are remembered (a bounded FIFO) to tell a late
//! or duplicate response from one nobody here ever asked for.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use metrics::Gauge;
use tokio::sync::oneshot;

/// A service's answer, as the gateway returns it over HTTP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

/// What became of a response handed to [`Parked::deliver`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Given to the request waiting for it.
    Delivered,
    /// Its request already timed out (504) or its client went away.
    Late,
    /// Its request was already answered (a redelivered reply).
    Duplicate,
    /// No request here ever had this id (another node's, an earlier incarnation's, garbage).
    Unknown,
}

impl Delivery {
    /// The `reason` label of the dropped-responses counter.
    pub fn reason(self) -> &'static str {
        match self {
            Delivery::Delivered => "delivered",
            Delivery::Late => "late",
            Delivery::Duplicate => "duplicate",
            Delivery::Unknown => "unknown",
        }
    }
}

/// Why a request cannot be parked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ParkError {
    /// The map is at its bound.
    #[error("{max} requests are already waiting for their response")]
    Full { max: usize },
    /// The gateway is shutting down.
    #[error("the gateway is shutting down")]
    Closed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Finished {
    Answered,
    Expired,
}

struct Entry {
    sender: oneshot::Sender<Reply>,
    /// On the Clock seam's monotonic time.
    deadline: Duration,
}

struct State {
    /// Set when the gateway shuts down: nothing is parked any more.
    closed: bool,
    waiting: BTreeMap<String, Entry>,
    finished: BTreeMap<String, Finished>,
    /// `finished`'s ids, oldest first, to forget the oldest at the bound.
    finished_order: VecDeque<String>,
}

/// The parked requests of one gateway node. Clones share the map.
#[derive(Clone)]
pub struct Parked {
    state: Arc<Mutex<State>>,
    max: usize,
    remembered_max: usize,
    gauge: Gauge,
}

impl Parked {
    pub fn new(max: usize, remembered_max: usize, gauge: Gauge) -> Parked {
        Parked {
            state: Arc::new(Mutex::new(State {
                closed: false,
                waiting: BTreeMap::new(),
                finished: BTreeMap::new(),
                finished_order: VecDeque::new(),
            })),
            max,
            remembered_max,
            gauge,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// How many requests wait now.
    pub fn len(&self) -> usize {
        self.lock().waiting.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    #[allow(clippy::cast_precision_loss)]
    fn update_gauge(&self, state: &State) {
        self.gauge.set(state.waiting.len() as f64);
    }

    /// Parks `id` until `deadline`; the receiver gets its reply. The returned guard removes
    /// the entry when dropped, so an abandoned request never stays parked.
    pub fn park(
        &self,
        id: &str,
        deadline: Duration,
    ) -> Result<(ParkGuard, oneshot::Receiver<Reply>), ParkError> {
        let mut state = self.lock();
        if state.closed {
            return Err(ParkError::Closed);
        }
        if state.waiting.len() >= self.max {
            return Err(ParkError::Full { max: self.max });
        }
        let (sender, receiver) = oneshot::channel();
        let previous = state
            .waiting
            .insert(id.to_owned(), Entry { sender, deadline });
        assert!(previous.is_none(), "correlation ids are never reused: {id}");
        self.update_gauge(&state);
        drop(state);
        let guard = ParkGuard {
            parked: self.clone(),
            id: id.to_owned(),
        };
        Ok((guard, receiver))
    }

    /// Hands a response to the request parked under `id`, if one still waits and its deadline
    /// (`now` on the Clock seam) has not passed.
    pub fn deliver(&self, id: &str, reply: Reply, now: Duration) -> Delivery {
        let mut state = self.lock();
        let Some(entry) = state.waiting.remove(id) else {
            return match state.finished.get(id) {
                Some(Finished::Answered) => Delivery::Duplicate,
                Some(Finished::Expired) => Delivery::Late,
                None => Delivery::Unknown,
            };
        };
        self.update_gauge(&state);
        if now > entry.deadline {
            self.remember(&mut state, id, Finished::Expired);
            return Delivery::Late;
        }
        let delivered = entry.sender.send(reply).is_ok();
        let finished = if delivered {
            Finished::Answered
        } else {
            Finished::Expired
        };
        self.remember(&mut state, id, finished);
        if delivered {
            Delivery::Delivered
        } else {
            Delivery::Late
        }
    }

    /// Ends every wait and refuses new ones: each waiting request's receiver fails at once,
    /// and its handler answers 503 (see [`Parked::is_closed`]) instead of waiting out its
    /// deadline for a reply no consumer will read.
    pub fn close(&self) {
        let mut state = self.lock();
        state.closed = true;
        let ids: Vec<String> = state.waiting.keys().cloned().collect();
        state.waiting.clear();
        for id in ids {
            self.remember(&mut state, &id, Finished::Expired);
        }
        self.update_gauge(&state);
    }

    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// Ends the wait of `id` without a response (its deadline passed, or its client left).
    fn expire(&self, id: &str) {
        let mut state = self.lock();
        if state.waiting.remove(id).is_some() {
            self.update_gauge(&state);
            self.remember(&mut state, id, Finished::Expired);
        }
    }

    fn remember(&self, state: &mut State, id: &str, finished: Finished) {
        if self.remembered_max == 0 {
            return;
        }
        if state.finished.insert(id.to_owned(), finished).is_none() {
            state.finished_order.push_back(id.to_owned());
        }
        while state.finished_order.len() > self.remembered_max {
            if let Some(oldest) = state.finished_order.pop_front() {
                state.finished.remove(&oldest);
            }
        }
    }
}

/// Removes its request from the map when dropped (deadline, client gone, any early return).
pub struct ParkGuard {
    parked: Parked,
    id: String,
}

impl ParkGuard {
    pub fn id(&self) -> &str {
        &self.id
    }
}

impl Drop for ParkGuard {
    fn drop(&mut self) {
        self.parked.expire(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(status: u16) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: Bytes::new(),
        }
    }

    fn parked(max: usize) -> Parked {
        Parked::new(max, 16, Gauge::noop())
    }

    #[test]
    fn a_response_reaches_only_its_own_request() {
        let parked = parked(4);
        let (_a, mut first) = parked.park("a", Duration::from_secs(5)).unwrap();
        let (_b, mut second) = parked.park("b", Duration::from_secs(5)).unwrap();
        assert_eq!(
            parked.deliver("b", reply(201), Duration::ZERO),
            Delivery::Delivered
        );
        assert_eq!(second.try_recv().unwrap().status, 201);
        assert!(first.try_recv().is_err());
        assert_eq!(
            parked.deliver("b", reply(201), Duration::ZERO),
            Delivery::Duplicate
        );
        assert_eq!(
            parked.deliver("zz", reply(200), Duration::ZERO),
            Delivery::Unknown
        );
    }

    #[test]
    fn the_bound_refuses_and_a_dropped_guard_frees_a_place() {
        let parked = parked(1);
        let (guard, _receiver) = parked.park("a", Duration::from_secs(5)).unwrap();
        assert_eq!(
            parked.park("b", Duration::from_secs(5)).err(),
            Some(ParkError::Full { max: 1 })
        );
        drop(guard);
        assert!(parked.is_empty());
        assert_eq!(
            parked.deliver("a", reply(200), Duration::ZERO),
            Delivery::Late
        );
        assert!(parked.park("b", Duration::from_secs(5)).is_ok());
    }

    #[test]
    fn a_response_after_the_deadline_is_late() {
        let parked = parked(1);
        let (_guard, mut receiver) = parked.park("a", Duration::from_secs(1)).unwrap();
        assert_eq!(
            parked.deliver("a", reply(200), Duration::from_secs(2)),
            Delivery::Late
        );
        assert!(receiver.try_recv().is_err());
    }
}
