//! The outcome of a batch, shared by the futures of its records.
//!
//! One allocation per batch rather than one channel per record: every record of a batch
//! succeeds or fails together, and a record's offset is the batch's base offset plus its index.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll, Waker};

use super::RecordMetadata;
use crate::error::{Error, Result};

/// Where the broker put a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ack {
    /// -1 when unknown (acks=0, or a duplicate whose first placement the broker forgot).
    pub base_offset: i64,
    /// -1 unless the topic stamps LogAppendTime.
    pub log_append_time: i64,
}

impl Ack {
    pub(crate) const UNKNOWN: Ack = Ack {
        base_offset: -1,
        log_append_time: -1,
    };
}

pub(crate) struct Outcome {
    topic: Arc<str>,
    partition: i32,
    result: OnceLock<Result<Ack>>,
    /// Futures waiting for the result; taken (and woken) once it is set.
    wakers: Mutex<Vec<Waker>>,
}

impl Outcome {
    pub(crate) fn new(topic: Arc<str>, partition: i32) -> Arc<Outcome> {
        Arc::new(Outcome {
            topic,
            partition,
            result: OnceLock::new(),
            wakers: Mutex::new(Vec::new()),
        })
    }

    /// Settles the batch; later calls are ignored (a batch is settled once).
    pub(crate) fn settle(&self, result: Result<Ack>) {
        if self.result.set(result).is_err() {
            return;
        }
        // Set before the wakers are taken: a future that registers after the take sees the
        // result under the same lock and never waits.
        let wakers = std::mem::take(&mut *self.lock());
        for waker in wakers {
            waker.wake();
        }
    }

    pub(crate) fn is_settled(&self) -> bool {
        self.result.get().is_some()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Waker>> {
        self.wakers.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Resolves when the record's batch is acknowledged or has failed.
///
/// Dropping it does not cancel the send; the record is delivered all the same.
#[must_use = "a delivery future tells whether the record was written"]
pub struct DeliveryFuture {
    outcome: Arc<Outcome>,
    index: i64,
    timestamp: i64,
    /// Our slot in the outcome's waker list, once registered.
    slot: Option<usize>,
}

impl std::fmt::Debug for DeliveryFuture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeliveryFuture")
            .field("topic", &self.outcome.topic)
            .field("partition", &self.outcome.partition)
            .field("index", &self.index)
            .field("settled", &self.outcome.is_settled())
            .finish()
    }
}

impl DeliveryFuture {
    pub(crate) fn new(outcome: Arc<Outcome>, index: usize, timestamp: i64) -> DeliveryFuture {
        DeliveryFuture {
            outcome,
            index: i64::try_from(index).unwrap_or(i64::MAX),
            timestamp,
            slot: None,
        }
    }

    fn metadata(&self, result: &Result<Ack>) -> Result<RecordMetadata> {
        let ack = result.as_ref().map_err(Error::clone)?;
        Ok(RecordMetadata {
            topic: self.outcome.topic.to_string(),
            partition: self.outcome.partition,
            offset: if ack.base_offset < 0 {
                -1
            } else {
                ack.base_offset + self.index
            },
            timestamp: if ack.log_append_time >= 0 {
                ack.log_append_time
            } else {
                self.timestamp
            },
        })
    }
}

impl Future for DeliveryFuture {
    type Output = Result<RecordMetadata>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if let Some(result) = this.outcome.result.get() {
            return Poll::Ready(this.metadata(result));
        }
        let mut wakers = this.outcome.lock();
        if let Some(result) = this.outcome.result.get() {
            drop(wakers);
            return Poll::Ready(this.metadata(result));
        }
        match this.slot {
            Some(slot) if wakers[slot].will_wake(cx.waker()) => {}
            Some(slot) => wakers[slot] = cx.waker().clone(),
            None => {
                this.slot = Some(wakers.len());
                wakers.push(cx.waker().clone());
            }
        }
        Poll::Pending
    }
}
