//! Following the event journal: a reader starts from any seq and gets every later event exactly
//! once, in seq order. Live events arrive through a broadcast channel; when the reader lags (the
//! channel dropped events) or sees a gap (events committed by concurrent writers arrive out of
//! order), it reads the missing range back from the store instead of losing it.

use std::collections::VecDeque;
use std::sync::Arc;

use tokio::sync::broadcast::{self, error::RecvError};

use crate::event::StoredEvent;
use crate::ports::{Store, StoreError};

/// How many journal entries one catch-up read fetches.
const CATCH_UP_BATCH: u32 = 512;

/// A reader of the journal from a given seq on. Made by [`super::Factory::events_after`].
pub struct EventFeed {
    store: Arc<dyn Store>,
    live: broadcast::Receiver<StoredEvent>,
    backlog: VecDeque<StoredEvent>,
    after: u64,
    /// Whether the journal may hold events after `after` that the channel will not deliver.
    behind: bool,
}

impl EventFeed {
    pub(crate) fn new(
        store: Arc<dyn Store>,
        live: broadcast::Receiver<StoredEvent>,
        after: u64,
    ) -> EventFeed {
        EventFeed {
            store,
            live,
            backlog: VecDeque::new(),
            after,
            behind: true,
        }
    }

    /// The seq of the last event returned (or the starting point).
    pub fn position(&self) -> u64 {
        self.after
    }

    /// The next event, waiting for one if the journal has none yet. `None` once the factory
    /// that feeds it is dropped and every committed event was returned.
    pub async fn next(&mut self) -> Result<Option<StoredEvent>, StoreError> {
        loop {
            if let Some(event) = self.pop_backlog() {
                return Ok(Some(event));
            }
            if self.behind {
                self.catch_up().await?;
                continue;
            }
            match self.live.recv().await {
                Ok(event) if event.seq <= self.after => continue,
                Ok(event) if event.seq == self.after + 1 => {
                    self.after = event.seq;
                    return Ok(Some(event));
                }
                // A gap or a lag: the journal has what the channel did not deliver in order.
                Ok(_) | Err(RecvError::Lagged(_)) => self.behind = true,
                Err(RecvError::Closed) => {
                    self.catch_up().await?;
                    return Ok(self.pop_backlog());
                }
            }
        }
    }

    /// Every event already committed after the current position, without waiting.
    pub async fn drain(&mut self) -> Result<Vec<StoredEvent>, StoreError> {
        let mut out = Vec::new();
        loop {
            while let Some(event) = self.pop_backlog() {
                out.push(event);
            }
            self.catch_up().await?;
            if self.backlog.is_empty() {
                // What the channel holds now is already returned or will be re-read from the
                // journal by the next call, which catches up first.
                while self.live.try_recv().is_ok() {}
                self.behind = true;
                return Ok(out);
            }
        }
    }

    fn pop_backlog(&mut self) -> Option<StoredEvent> {
        let event = self.backlog.pop_front()?;
        self.after = event.seq;
        Some(event)
    }

    async fn catch_up(&mut self) -> Result<(), StoreError> {
        let batch = self.store.list_events(self.after, CATCH_UP_BATCH).await?;
        // A full batch may have more behind it; a short one reached the journal's end.
        self.behind = batch.len() == CATCH_UP_BATCH as usize;
        self.backlog.extend(batch);
        Ok(())
    }
}
