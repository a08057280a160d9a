//! What frontends read: status, epics, tasks, mail, decisions and the event journal. Frontends
//! call these and never the store, so a server and the CLI show the same thing.

use serde::Serialize;

use crate::agent::Agent;
use crate::decision::{Decision, DecisionFilter};
use crate::epic::{Epic, EpicId};
use crate::event::StoredEvent;
use crate::mail::{Mail, MailFilter, MailId};
use crate::ports::StoreError;
use crate::spec::SpecId;
use crate::task::Task;

use super::{EventFeed, Factory, OrchestrateError};

/// Epics, their tasks and the agents: what `factory status` shows.
#[derive(Debug, Clone, Serialize)]
pub struct StatusReport {
    /// Every epic with its tasks, oldest first.
    pub epics: Vec<EpicStatus>,
    /// Every agent.
    pub agents: Vec<Agent>,
}

/// One epic and its tasks.
#[derive(Debug, Clone, Serialize)]
pub struct EpicStatus {
    /// The epic.
    pub epic: Epic,
    /// Its tasks by spec id.
    pub tasks: Vec<Task>,
}

impl Factory {
    /// A task by numeric id or spec id (`3`, `003-add-greeting`, or the unique prefix `003`).
    pub async fn find_task(&self, id: &str) -> Result<Task, OrchestrateError> {
        let unknown = || OrchestrateError::UnknownTask(id.to_owned());
        if let Ok(spec) = id.parse::<SpecId>() {
            return match self.store_ref().task_by_spec(&spec).await {
                Err(StoreError::NotFound { .. }) => Err(unknown()),
                other => Ok(other?),
            };
        }
        let tasks = self.store_ref().list_tasks(None).await?;
        if let Ok(n) = id.parse::<i64>()
            && let Some(t) = tasks.iter().find(|t| t.id.0 == n)
        {
            return Ok(t.clone());
        }
        let mut matching = tasks
            .into_iter()
            .filter(|t| t.spec_id.to_string().starts_with(id) && !id.is_empty());
        match (matching.next(), matching.next()) {
            (Some(t), None) => Ok(t),
            _ => Err(unknown()),
        }
    }

    /// An epic by numeric id.
    pub async fn find_epic(&self, id: &str) -> Result<Epic, OrchestrateError> {
        let unknown = || OrchestrateError::UnknownEpic(id.to_owned());
        let n: i64 = id.trim().parse().map_err(|_| unknown())?;
        match self.store_ref().epic(EpicId(n)).await {
            Err(StoreError::NotFound { .. }) => Err(unknown()),
            other => Ok(other?),
        }
    }

    /// Epics, tasks and agents.
    pub async fn status(&self) -> Result<StatusReport, OrchestrateError> {
        let store = self.store_ref();
        let mut tasks = store.list_tasks(None).await?;
        let epics = store
            .list_epics()
            .await?
            .into_iter()
            .map(|epic| {
                let (mine, rest): (Vec<Task>, Vec<Task>) =
                    tasks.drain(..).partition(|t| t.epic_id == epic.id);
                tasks = rest;
                EpicStatus { epic, tasks: mine }
            })
            .collect();
        Ok(StatusReport {
            epics,
            agents: store.list_agents().await?,
        })
    }

    /// Every epic, oldest first.
    pub async fn epics(&self) -> Result<Vec<Epic>, OrchestrateError> {
        Ok(self.store_ref().list_epics().await?)
    }

    /// Every task, by spec id.
    pub async fn tasks(&self) -> Result<Vec<Task>, OrchestrateError> {
        Ok(self.store_ref().list_tasks(None).await?)
    }

    /// Messages matching `filter`, oldest first.
    pub async fn mail(&self, filter: MailFilter) -> Result<Vec<Mail>, OrchestrateError> {
        Ok(self.store_ref().list_mail(filter).await?)
    }

    /// Marks messages read (the human read them).
    pub async fn mark_read(&self, ids: &[MailId]) -> Result<(), OrchestrateError> {
        for id in ids {
            self.store_ref().mark_mail_read(*id).await?;
        }
        Ok(())
    }

    /// Decisions matching `filter`, oldest first.
    pub async fn decisions(
        &self,
        filter: DecisionFilter,
    ) -> Result<Vec<Decision>, OrchestrateError> {
        Ok(self.store_ref().list_decisions(filter).await?)
    }

    /// Journal entries with `seq > after`, at most `limit`.
    pub async fn journal(
        &self,
        after: u64,
        limit: u32,
    ) -> Result<Vec<StoredEvent>, OrchestrateError> {
        Ok(self.store_ref().list_events(after, limit).await?)
    }

    /// A reader of every event with `seq > after`: those already in the journal, then live ones
    /// as they are committed. A reader that falls behind catches up from the journal.
    pub fn events_after(&self, after: u64) -> EventFeed {
        EventFeed::new(
            self.inner.ports.store.clone(),
            self.inner.events.subscribe(),
            after,
        )
    }

    /// The journal's last seq (0 when empty): where a reader of "from now on" starts.
    pub async fn journal_head(&self) -> Result<u64, OrchestrateError> {
        Ok(self.store_ref().journal_head().await?)
    }
}
