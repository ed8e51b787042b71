//! Requests waiting for their response: a bounded map from correlation id to the waiting HTTP
//! handler's channel and deadline.
//!
//! **Invariant:** a response reaches a request only through the entry of its own correlation
//! id, and an entry is removed by whichever comes first — its response, its deadline, or its
//! HTTP client going away — so each request gets at most one answer and a response never
//! reaches another request. Ids that finished are remembered (a bounded FIFO) to tell a late
//! or duplicate response from one nobody here ever asked for.
//!
//! A request that waits for a state (`?wait=STATE`, crate docs "Waiting for a state") is parked
//! the same way, in the same bound, and answered by the same entry: its service's 2xx reply is
//! held until an event brings the state ([`Parked::deliver_event`]), and an event that comes
//! first is held until the reply does (or the deadline: the state was reached, so it answers
//! 200 rather than 504). Any other reply (an error) answers at once: no event will follow it.

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

/// An entity's new state, as read from a service's events topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub state: String,
    /// The entity never leaves this state: a request waiting for another state ends here.
    pub terminal: bool,
    pub content_type: Option<String>,
    pub body: Bytes,
}

/// The header that tells which state a waiting request's answer comes from.
pub const STATE_HEADER: &str = "x-state";

/// What became of an event handed to [`Parked::deliver_event`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventDelivery {
    /// The awaited state: the request is answered.
    Reached,
    /// The awaited state, before the service's reply: held until the reply comes.
    Held,
    /// A terminal other state: the request is answered with a conflict.
    Ended,
    /// Nobody here waits for a state of this id, or not for this one.
    Ignored,
    /// Its request's deadline passed.
    Late,
}

/// What became of a response handed to [`Parked::deliver`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Given to the request waiting for it (for a request waiting for a state, possibly held
    /// until the state is reached).
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

enum Answered {
    Yes,
    Late,
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
    wait: Option<Wait>,
}

/// What a request parked with `?wait=STATE` has seen so far.
struct Wait {
    state: String,
    /// The service's 2xx reply, held until the state is reached.
    reply: Option<Reply>,
    /// The event that reached the state, held until the reply comes.
    reached: Option<Event>,
}

/// The answer of a request whose state was reached: the reply's status and headers (a 201
/// stays a 201, a `Location` stays) with the event's body, and which state it is.
fn reached(reply: Option<Reply>, event: Event) -> Reply {
    let (status, mut headers) =
        reply.map_or((200, Vec::new()), |reply| (reply.status, reply.headers));
    if let Some(content_type) = event.content_type {
        headers.retain(|(name, _)| name != crate::headers::CONTENT_TYPE);
        headers.push((crate::headers::CONTENT_TYPE.to_owned(), content_type));
    }
    headers.push((STATE_HEADER.to_owned(), event.state));
    Reply {
        status,
        headers,
        body: event.body,
    }
}

/// The answer of a request whose entity ended in another state than the one it waited for.
fn ended(event: Event) -> Reply {
    let content_type = event
        .content_type
        .unwrap_or_else(|| "application/json".to_owned());
    Reply {
        status: 409,
        headers: vec![
            (crate::headers::CONTENT_TYPE.to_owned(), content_type),
            (STATE_HEADER.to_owned(), event.state),
        ],
        body: event.body,
    }
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
        self.park_entry(id, deadline, None)
    }

    /// Parks `id` until `deadline` or until its entity reaches `wanted`, whichever is first;
    /// it counts against the same bound as any parked request.
    pub fn park_waiting(
        &self,
        id: &str,
        deadline: Duration,
        wanted: &str,
    ) -> Result<(ParkGuard, oneshot::Receiver<Reply>), ParkError> {
        let wait = Wait {
            state: wanted.to_owned(),
            reply: None,
            reached: None,
        };
        self.park_entry(id, deadline, Some(wait))
    }

    fn park_entry(
        &self,
        id: &str,
        deadline: Duration,
        wait: Option<Wait>,
    ) -> Result<(ParkGuard, oneshot::Receiver<Reply>), ParkError> {
        let mut state = self.lock();
        if state.closed {
            return Err(ParkError::Closed);
        }
        if state.waiting.len() >= self.max {
            return Err(ParkError::Full { max: self.max });
        }
        let (sender, receiver) = oneshot::channel();
        let previous = state.waiting.insert(
            id.to_owned(),
            Entry {
                sender,
                deadline,
                wait,
            },
        );
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
        let Some(entry) = state.waiting.get_mut(id) else {
            return match state.finished.get(id) {
                Some(Finished::Answered) => Delivery::Duplicate,
                Some(Finished::Expired) => Delivery::Late,
                None => Delivery::Unknown,
            };
        };
        let mut reply = reply;
        if now <= entry.deadline
            && let Some(wait) = &mut entry.wait
            && (200..300).contains(&reply.status)
        {
            if wait.reply.is_some() {
                return Delivery::Duplicate;
            }
            match wait.reached.take() {
                Some(event) => reply = reached(Some(reply), event),
                None => {
                    wait.reply = Some(reply);
                    return Delivery::Delivered;
                }
            }
        }
        match self.answer(&mut state, id, reply, now) {
            Answered::Yes => Delivery::Delivered,
            Answered::Late => Delivery::Late,
        }
    }

    /// Hands an event about the entity created by request `id` to that request, if it waits
    /// for a state: the awaited state answers it (once its reply came), a terminal other state
    /// answers it with 409, any other state changes nothing.
    pub fn deliver_event(&self, id: &str, event: Event, now: Duration) -> EventDelivery {
        let mut state = self.lock();
        let Some(entry) = state.waiting.get_mut(id) else {
            return EventDelivery::Ignored;
        };
        let Some(wait) = &mut entry.wait else {
            return EventDelivery::Ignored;
        };
        let (answer, outcome) = if event.state == wait.state {
            if now <= entry.deadline && wait.reply.is_none() {
                wait.reached = Some(event);
                return EventDelivery::Held;
            }
            (reached(wait.reply.take(), event), EventDelivery::Reached)
        } else if event.terminal {
            (ended(event), EventDelivery::Ended)
        } else {
            return EventDelivery::Ignored;
        };
        match self.answer(&mut state, id, answer, now) {
            Answered::Yes => outcome,
            Answered::Late => EventDelivery::Late,
        }
    }

    /// At its deadline, the answer of a request whose state was reached while its reply never
    /// came: the state is what it asked for, so it gets it (200) rather than a 504.
    pub fn take_reached(&self, id: &str) -> Option<Reply> {
        let mut state = self.lock();
        let event = state.waiting.get_mut(id)?.wait.as_mut()?.reached.take()?;
        state.waiting.remove(id);
        self.update_gauge(&state);
        self.remember(&mut state, id, Finished::Answered);
        Some(reached(None, event))
    }

    /// Removes `id`'s entry and sends it `reply`, unless its deadline passed.
    fn answer(&self, state: &mut State, id: &str, reply: Reply, now: Duration) -> Answered {
        let Some(entry) = state.waiting.remove(id) else {
            return Answered::Late;
        };
        self.update_gauge(state);
        if now > entry.deadline {
            self.remember(state, id, Finished::Expired);
            return Answered::Late;
        }
        if entry.sender.send(reply).is_ok() {
            self.remember(state, id, Finished::Answered);
            Answered::Yes
        } else {
            self.remember(state, id, Finished::Expired);
            Answered::Late
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

    fn event(state: &str, terminal: bool) -> Event {
        Event {
            state: state.to_owned(),
            terminal,
            content_type: None,
            body: Bytes::from(format!("{{\"status\":\"{state}\"}}")),
        }
    }

    fn state_of(reply: &Reply) -> Option<&str> {
        reply
            .headers
            .iter()
            .find(|(name, _)| name == STATE_HEADER)
            .map(|(_, state)| state.as_str())
    }

    #[test]
    fn a_waiting_request_is_answered_by_its_state_with_its_reply_status_not_by_the_reply() {
        let parked = parked(4);
        let deadline = Duration::from_secs(5);
        let (_guard, mut answer) = parked.park_waiting("a", deadline, "validated").unwrap();
        assert_eq!(
            parked.deliver("a", reply(201), Duration::ZERO),
            Delivery::Delivered
        );
        assert!(answer.try_recv().is_err(), "the 201 alone answers nothing");
        assert_eq!(
            parked.deliver("a", reply(201), Duration::ZERO),
            Delivery::Duplicate
        );
        assert_eq!(
            parked.deliver_event("a", event("created", false), Duration::ZERO),
            EventDelivery::Ignored
        );
        assert_eq!(
            parked.deliver_event("a", event("validated", false), Duration::ZERO),
            EventDelivery::Reached
        );
        let answer = answer.try_recv().unwrap();
        assert_eq!(answer.status, 201);
        assert_eq!(state_of(&answer), Some("validated"));
        assert_eq!(answer.body, event("validated", false).body);
        assert!(parked.is_empty());
        assert_eq!(
            parked.deliver_event("a", event("validated", false), Duration::ZERO),
            EventDelivery::Ignored,
            "a redelivered event answers nobody twice"
        );
    }

    #[test]
    fn a_state_reached_before_the_reply_waits_for_it_or_answers_200_at_the_deadline() {
        let parked = parked(4);
        let deadline = Duration::from_secs(5);
        let (_a, mut first) = parked.park_waiting("a", deadline, "created").unwrap();
        assert_eq!(
            parked.deliver_event("a", event("created", false), Duration::ZERO),
            EventDelivery::Held
        );
        assert!(first.try_recv().is_err());
        assert_eq!(
            parked.deliver("a", reply(201), Duration::ZERO),
            Delivery::Delivered
        );
        assert_eq!(first.try_recv().unwrap().status, 201);

        let (_b, _second) = parked.park_waiting("b", deadline, "created").unwrap();
        assert_eq!(parked.take_reached("b"), None, "nothing reached yet");
        parked.deliver_event("b", event("created", false), Duration::ZERO);
        let answer = parked.take_reached("b").unwrap();
        assert_eq!(answer.status, 200);
        assert_eq!(state_of(&answer), Some("created"));
        assert!(parked.is_empty());
    }

    #[test]
    fn a_terminal_other_state_or_an_error_reply_ends_the_wait_at_once() {
        let parked = parked(4);
        let deadline = Duration::from_secs(5);
        let (_a, mut rejected) = parked.park_waiting("a", deadline, "validated").unwrap();
        assert_eq!(
            parked.deliver_event("a", event("rejected", true), Duration::ZERO),
            EventDelivery::Ended
        );
        let answer = rejected.try_recv().unwrap();
        assert_eq!(answer.status, 409);
        assert_eq!(state_of(&answer), Some("rejected"));

        let (_b, mut refused) = parked.park_waiting("b", deadline, "validated").unwrap();
        assert_eq!(
            parked.deliver("b", reply(400), Duration::ZERO),
            Delivery::Delivered
        );
        assert_eq!(refused.try_recv().unwrap().status, 400);

        let (_c, _late) = parked.park_waiting("c", deadline, "validated").unwrap();
        assert_eq!(
            parked.deliver_event("c", event("validated", false), Duration::from_secs(6)),
            EventDelivery::Late
        );
    }

    #[test]
    fn waits_count_against_the_same_bound() {
        let parked = parked(1);
        let _plain = parked.park("a", Duration::from_secs(5)).unwrap();
        assert_eq!(
            parked
                .park_waiting("b", Duration::from_secs(5), "validated")
                .err(),
            Some(ParkError::Full { max: 1 })
        );
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
