use async_trait::async_trait;

use crate::agent::{Agent, AgentEvent, AgentId, AgentRole};
use crate::decision::{Decision, DecisionFilter, NewDecision};
use crate::epic::{Epic, EpicChanges, EpicEvent, EpicId, NewEpic};
use crate::event::DomainEvent;
use crate::mail::{Mail, MailFilter, MailId, NewMail};
use crate::spec::SpecId;
use crate::task::{NewTask, Task, TaskChanges, TaskEvent, TaskId};
use crate::{IllegalTransition, Timestamp};

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No such record.
    #[error("{kind} {id} not found")]
    NotFound {
        /// "epic", "task", "agent", "mail".
        kind: &'static str,
        /// The id that was asked for.
        id: String,
    },
    /// Someone else wrote first: the caller's version is out of date. Re-read and decide again.
    #[error("stale write to {kind} {id}: expected version {expected}, found {actual}")]
    Stale {
        /// "epic", "task", "agent".
        kind: &'static str,
        /// The record.
        id: String,
        /// The version the caller read.
        expected: u64,
        /// The version in the store.
        actual: u64,
    },
    /// The state machine refused the event; nothing was written.
    #[error(transparent)]
    IllegalTransition(#[from] IllegalTransition),
    /// The input cannot be stored as given (e.g. a plan whose `depends_on` names an unknown key,
    /// or a dependency cycle).
    #[error("invalid input: {0}")]
    Invalid(String),
    /// The database failed.
    #[error("database error: {0}")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// An event as persisted, with its sequence number.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    /// Monotonic, gap-free per store.
    pub seq: u64,
    /// When it was appended.
    pub at: Timestamp,
    /// The event.
    pub event: DomainEvent,
}

/// Durable state. Every state change is a compare-and-set on (state, version): the store reads
/// the record, refuses if the caller's `expected_version` is not current ([`StoreError::Stale`]),
/// computes the next record with the domain's `apply` (refusing illegal transitions), and writes it
/// only if state and version are still what it read.
#[async_trait]
pub trait Store: Send + Sync {
    /// Adds an epic in `Planning`.
    async fn create_epic(&self, new: NewEpic) -> Result<Epic, StoreError>;
    /// One epic.
    async fn epic(&self, id: EpicId) -> Result<Epic, StoreError>;
    /// Every epic, oldest first.
    async fn list_epics(&self) -> Result<Vec<Epic>, StoreError>;
    /// Compare-and-set write of an epic.
    async fn update_epic(
        &self,
        id: EpicId,
        expected_version: u64,
        event: Option<EpicEvent>,
        changes: EpicChanges,
    ) -> Result<Epic, StoreError>;

    /// Creates a plan's tasks in one transaction, in `Pending`. Assigns ids and spec ids (numbers
    /// continue after the highest spec number in the store) and resolves `depends_on` keys to ids.
    /// Refuses unknown keys, duplicate keys and cycles with [`StoreError::Invalid`].
    async fn create_tasks(
        &self,
        epic: EpicId,
        tasks: Vec<NewTask>,
    ) -> Result<Vec<Task>, StoreError>;
    /// One task.
    async fn task(&self, id: TaskId) -> Result<Task, StoreError>;
    /// One task by spec id.
    async fn task_by_spec(&self, spec: &SpecId) -> Result<Task, StoreError>;
    /// Tasks of one epic, or all; ordered by spec id.
    async fn list_tasks(&self, epic: Option<EpicId>) -> Result<Vec<Task>, StoreError>;
    /// Compare-and-set write of a task.
    async fn update_task(
        &self,
        id: TaskId,
        expected_version: u64,
        event: Option<TaskEvent>,
        changes: TaskChanges,
    ) -> Result<Task, StoreError>;

    /// The agent with this id, created `Idle` if absent; its task is set to `task`.
    async fn ensure_agent(
        &self,
        id: &AgentId,
        role: AgentRole,
        task: Option<TaskId>,
    ) -> Result<Agent, StoreError>;
    /// Every agent, by id.
    async fn list_agents(&self) -> Result<Vec<Agent>, StoreError>;
    /// Compare-and-set write of an agent's state.
    async fn update_agent(
        &self,
        id: &AgentId,
        expected_version: u64,
        event: AgentEvent,
    ) -> Result<Agent, StoreError>;

    /// Stores a message.
    async fn send_mail(&self, new: NewMail) -> Result<Mail, StoreError>;
    /// Messages matching `filter`, oldest first.
    async fn list_mail(&self, filter: MailFilter) -> Result<Vec<Mail>, StoreError>;
    /// Marks a message read (idempotent).
    async fn mark_mail_read(&self, id: MailId) -> Result<(), StoreError>;

    /// Appends to the decision log.
    async fn record_decision(&self, new: NewDecision) -> Result<Decision, StoreError>;
    /// Decisions matching `filter`, oldest first.
    async fn list_decisions(&self, filter: DecisionFilter) -> Result<Vec<Decision>, StoreError>;

    /// Appends a domain event to the journal; returns its sequence number.
    async fn append_event(&self, event: &DomainEvent) -> Result<u64, StoreError>;
    /// Events with `seq > after`, at most `limit`, in order.
    async fn list_events(&self, after: u64, limit: u32) -> Result<Vec<StoredEvent>, StoreError>;
}
