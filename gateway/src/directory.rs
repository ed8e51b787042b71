//! Which services exist: a service exists while its request topic does. The set is read from
//! the cluster's topic list, again only when a request names a service not in it and the last
//! look is older than `service_refresh_interval`, so made-up names cost at most one metadata
//! request per interval and never grow any map.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::Duration;

use tidepool_client::Client;

use crate::topics::request_topic;

pub(crate) struct ServiceDirectory {
    client: Client,
    refresh_interval: Duration,
    state: Mutex<State>,
    /// One look at the cluster at a time; the others wait for its result.
    refreshing: tokio::sync::Mutex<()>,
}

struct State {
    request_topics: BTreeSet<String>,
    refreshed_at: Option<Duration>,
}

impl ServiceDirectory {
    pub(crate) fn new(client: Client, refresh_interval: Duration) -> ServiceDirectory {
        ServiceDirectory {
            client,
            refresh_interval,
            state: Mutex::new(State {
                request_topics: BTreeSet::new(),
                refreshed_at: None,
            }),
            refreshing: tokio::sync::Mutex::new(()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn known(&self, topic: &str) -> (bool, bool) {
        let now = self.client.now();
        let state = self.lock();
        let stale = state
            .refreshed_at
            .is_none_or(|at| now.saturating_sub(at) >= self.refresh_interval);
        (state.request_topics.contains(topic), stale)
    }

    /// Whether `service` has a request topic.
    pub(crate) async fn exists(&self, service: &str) -> tidepool_client::Result<bool> {
        let topic = request_topic(service);
        match self.known(&topic) {
            (true, _) => return Ok(true),
            (false, false) => return Ok(false),
            (false, true) => {}
        }
        let _turn = self.refreshing.lock().await;
        // Another request may have looked while this one waited.
        match self.known(&topic) {
            (true, _) => return Ok(true),
            (false, false) => return Ok(false),
            (false, true) => {}
        }
        let topics = self.client.list_topics().await?;
        let request_topics: BTreeSet<String> = topics
            .into_iter()
            .map(|topic| topic.name)
            .filter(|name| name.ends_with(".requests"))
            .collect();
        let found = request_topics.contains(&topic);
        let mut state = self.lock();
        state.request_topics = request_topics;
        state.refreshed_at = Some(self.client.now());
        Ok(found)
    }
}
