use std::time::Duration;

use async_trait::async_trait;

use crate::IllegalTransition;
use crate::agent::{Agent, AgentEvent, AgentId, AgentRole};
use crate::decision::{Decision, DecisionFilter, NewDecision};
use crate::epic::{Epic, EpicChanges, EpicEvent, EpicId, NewEpic};
use crate::event::{DomainEvent, StoredEvent};
use crate::lease::{LeaseHolder, RunLease};
use crate::mail::{Mail, MailFilter, MailId, NewMail};
use crate::plan::Plan;
use crate::spec::SpecId;
use crate::task::{Task, TaskChanges, TaskEvent, TaskId};

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
    /// The run lease is held by someone else and has not expired.
    #[error("the repository is already being run by {}", .0.holder)]
    LeaseHeld(Box<RunLease>),
    /// The caller's run lease was taken over (it expired and another run acquired it).
    #[error("the run lease (token {token}) was lost to another run")]
    LeaseLost {
        /// The caller's token.
        token: u64,
    },
    /// The value cannot be stored as given (e.g. a number too large for the column).
    #[error("invalid input: {0}")]
    Invalid(String),
    /// The database failed.
    #[error("database error: {0}")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// A write and the journal entries committed in the same transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct Committed<T> {
    /// What was written, as it is now stored.
    pub value: T,
    /// The events appended with it, in seq order (possibly none).
    pub events: Vec<StoredEvent>,
}

/// An epic and the tasks its plan created.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedEpic {
    /// The epic, now `InProgress`.
    pub epic: Epic,
    /// Its tasks, in plan order.
    pub tasks: Vec<Task>,
}

/// Durable state. The store persists and compare-and-sets; it has no domain rules of its own:
/// inputs arrive validated ([`NewEpic`], [`Plan`]), next states are computed by the domain's
/// `apply`, and the events a change announces by [`crate::event::journal`].
///
/// Every state change is a compare-and-set on (state, version): the store reads the record,
/// refuses if the caller's `expected_version` is not current ([`StoreError::Stale`]), computes
/// the next record, and writes it and its journal entries in one transaction. Journal sequence
/// numbers are gap-free and in commit order.
#[async_trait]
pub trait Store: Send + Sync {
    /// Adds an epic in `Planning`, with `epic.created`.
    async fn create_epic(&self, new: NewEpic) -> Result<Committed<Epic>, StoreError>;
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
    ) -> Result<Committed<Epic>, StoreError>;

    /// Records an epic's plan in one transaction: its tasks (in `Pending`, spec numbers
    /// continuing after both the highest in the store and `min_spec_number - 1`), the epic's
    /// move `Planning → InProgress` (compare-and-set on `expected_version`, so a plan is
    /// recorded at most once), the decision, and every event.
    async fn record_plan(
        &self,
        epic: EpicId,
        expected_version: u64,
        plan: &Plan,
        min_spec_number: u32,
        decision: NewDecision,
    ) -> Result<Committed<PlannedEpic>, StoreError>;
    /// One task.
    async fn task(&self, id: TaskId) -> Result<Task, StoreError>;
    /// One task by spec id.
    async fn task_by_spec(&self, spec: &SpecId) -> Result<Task, StoreError>;
    /// Tasks of one epic, or all; ordered by spec id.
    async fn list_tasks(&self, epic: Option<EpicId>) -> Result<Vec<Task>, StoreError>;
    /// Every task not completed (cancelled ones included), of every epic; ordered by spec id.
    /// What a run loop looks at each turn, however many tasks are long merged.
    async fn list_unfinished_tasks(&self) -> Result<Vec<Task>, StoreError>;
    /// Compare-and-set write of a task.
    async fn update_task(
        &self,
        id: TaskId,
        expected_version: u64,
        event: Option<TaskEvent>,
        changes: TaskChanges,
    ) -> Result<Committed<Task>, StoreError>;

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

    /// Stores a message, with `mail.sent`.
    async fn send_mail(&self, new: NewMail) -> Result<Committed<Mail>, StoreError>;
    /// Messages matching `filter`, oldest first.
    async fn list_mail(&self, filter: MailFilter) -> Result<Vec<Mail>, StoreError>;
    /// Marks a message read (idempotent).
    async fn mark_mail_read(&self, id: MailId) -> Result<(), StoreError>;

    /// Appends to the decision log.
    async fn record_decision(&self, new: NewDecision) -> Result<Decision, StoreError>;
    /// Decisions matching `filter`, oldest first.
    async fn list_decisions(&self, filter: DecisionFilter) -> Result<Vec<Decision>, StoreError>;

    /// Appends an event that accompanies no state change (an agent started, a verify ran).
    async fn append_event(&self, event: &DomainEvent) -> Result<StoredEvent, StoreError>;
    /// Events with `seq > after`, at most `limit`, in order.
    async fn list_events(&self, after: u64, limit: u32) -> Result<Vec<StoredEvent>, StoreError>;
    /// The journal's highest seq, 0 when it is empty.
    async fn journal_head(&self) -> Result<u64, StoreError>;

    /// Takes the run lease for `ttl` if nobody holds a live one; refuses with
    /// [`StoreError::LeaseHeld`] otherwise. Each acquisition gets a higher token.
    async fn acquire_run_lease(
        &self,
        holder: LeaseHolder,
        ttl: Duration,
    ) -> Result<RunLease, StoreError>;
    /// Extends the caller's lease by `ttl` from now; [`StoreError::LeaseLost`] if `token` no
    /// longer holds it.
    async fn renew_run_lease(&self, token: u64, ttl: Duration) -> Result<RunLease, StoreError>;
    /// Gives the lease up if `token` still holds it (idempotent).
    async fn release_run_lease(&self, token: u64) -> Result<(), StoreError>;
    /// The current lease, live or expired, if any.
    async fn run_lease(&self) -> Result<Option<RunLease>, StoreError>;
}
