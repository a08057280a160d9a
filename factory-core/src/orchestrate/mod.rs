//! Orchestration: drives epics from text to merged commits through the ports only.
//!
//! The pieces, by responsibility:
//! - [`scheduler`]: a pure function from the stored tasks and what is running to what to start;
//! - `run`: the run loop around it (the run lease, jobs, stop, settling epics, the report);
//! - `planning`: the planner agent and recording its plan;
//! - `pipeline`: one task's worker → review → verify rounds;
//! - `merge`: the merge queue's step for one task; `conflict`: handing a conflict with main
//!   back to the worker;
//! - `cleanup`: a finished task's worktree and branch removed after its merge, and at start-up
//!   whatever an interrupted run left;
//! - `limits`: what a task may not merge (files over `[merge] max_file_bytes`);
//! - `agent_run`: running one agent request with its transcript and events;
//! - `gc`: `factory gc`, removing what finished or forgotten tasks left;
//! - `merge_preview`: `factory merge --dry-run`, the queue and each task's next step, read-only;
//! - `commands` and `queries`: what frontends call (add an epic, send mail, retry, cancel;
//!   status, tasks, mail, decisions, the event journal);
//! - [`feed`]: following the event journal from any seq.
//!
//! Every state change is a compare-and-set in the [`Store`], written with its events in one
//! transaction; the events are then announced to live subscribers.

mod agent_run;
mod artifacts;
mod cleanup;
mod commands;
mod conflict;
mod error;
pub mod feed;
mod gc;
mod limits;
mod merge;
mod merge_preview;
mod pipeline;
mod planning;
mod prompt;
mod queries;
mod run;
pub(crate) mod scheduler;
mod scope;
mod stop;

use std::sync::Arc;

use tokio::sync::broadcast;

use crate::agent::{AgentId, AgentRole, AgentState};
use crate::config::FactoryConfig;
use crate::decision::NewDecision;
use crate::epic::{Epic, EpicChanges, EpicEvent, EpicId};
use crate::event::{DomainEvent, StoredEvent};
use crate::layout::Layout;
use crate::mail::{HUMAN, ORCHESTRATOR};
use crate::ports::{AgentBackend, Clock, Committed, Sandbox, Store, Vcs};
use crate::task::{Task, TaskChanges, TaskEvent, TaskId};

pub use error::OrchestrateError;
pub use feed::EventFeed;
pub use gc::{GcEntry, GcKind, GcOptions, GcReport};
pub use merge_preview::{MergeQueuePreview, NextMergeStep, QueuedMerge};
pub use queries::{EpicStatus, StatusReport};
pub use run::{EpicFailure, RunHandle, RunOptions, RunReport};
pub use stop::{StopHandle, StopSignal, stop_signal};

/// The agent backend for each role.
#[derive(Clone)]
pub struct RoleBackends {
    /// Splits epics into tasks.
    pub planner: Arc<dyn AgentBackend>,
    /// Edits worktrees.
    pub worker: Arc<dyn AgentBackend>,
    /// Judges work.
    pub reviewer: Arc<dyn AgentBackend>,
}

impl RoleBackends {
    /// One backend for every role.
    pub fn same(backend: Arc<dyn AgentBackend>) -> RoleBackends {
        RoleBackends {
            planner: backend.clone(),
            worker: backend.clone(),
            reviewer: backend,
        }
    }

    fn for_role(&self, role: AgentRole) -> &Arc<dyn AgentBackend> {
        match role {
            AgentRole::Planner => &self.planner,
            AgentRole::Worker => &self.worker,
            AgentRole::Reviewer => &self.reviewer,
        }
    }
}

/// Everything orchestration talks to.
#[derive(Clone)]
pub struct Ports {
    /// Durable state.
    pub store: Arc<dyn Store>,
    /// The repository.
    pub vcs: Arc<dyn Vcs>,
    /// Where verify commands run.
    pub sandbox: Arc<dyn Sandbox>,
    /// Wall-clock time.
    pub clock: Arc<dyn Clock>,
    /// Who plays which role.
    pub agents: RoleBackends,
}

/// Factory: the orchestration over a set of ports. A cheap-to-clone handle; frontends call its
/// commands and queries and never the store directly.
#[derive(Clone)]
pub struct Factory {
    inner: Arc<Inner>,
}

struct Inner {
    ports: Ports,
    config: FactoryConfig,
    layout: Layout,
    events: broadcast::Sender<StoredEvent>,
}

/// What a task pipeline or merge job ended with.
pub(crate) enum JobEnd {
    /// The task moved as far as it can in this job.
    Done,
    /// The merge is waiting on the user's checkout.
    MergeWaiting,
}

impl Factory {
    /// Wires the ports, the configuration and the repository layout together.
    pub fn new(ports: Ports, config: FactoryConfig, layout: Layout) -> Factory {
        let (events, _) = broadcast::channel(1024);
        Factory {
            inner: Arc::new(Inner {
                ports,
                config,
                layout,
                events,
            }),
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &FactoryConfig {
        &self.inner.config
    }

    /// The repository layout.
    pub fn layout(&self) -> &Layout {
        &self.inner.layout
    }

    fn store_ref(&self) -> &dyn Store {
        self.inner.ports.store.as_ref()
    }

    fn now(&self) -> crate::Timestamp {
        self.inner.ports.clock.now()
    }

    /// Announces committed journal entries to live subscribers.
    fn publish(&self, events: Vec<StoredEvent>) {
        for event in events {
            // No subscriber is fine: the journal has it.
            let _ = self.inner.events.send(event);
        }
    }

    /// Takes a committed write's value and announces its events.
    fn committed<T>(&self, committed: Committed<T>) -> T {
        self.publish(committed.events);
        committed.value
    }

    /// Journals an event that accompanies no state change, and announces it.
    async fn emit(&self, event: DomainEvent) -> Result<(), OrchestrateError> {
        let stored = self.store_ref().append_event(&event).await?;
        self.publish(vec![stored]);
        Ok(())
    }

    /// Compare-and-set write of a task, with its events.
    async fn update_task(
        &self,
        task: &Task,
        event: Option<TaskEvent>,
        changes: TaskChanges,
    ) -> Result<Task, OrchestrateError> {
        let written = self
            .store_ref()
            .update_task(task.id, task.version, event, changes)
            .await?;
        Ok(self.committed(written))
    }

    /// Compare-and-set write of an epic, with its events.
    async fn update_epic(
        &self,
        epic: &Epic,
        event: Option<EpicEvent>,
        changes: EpicChanges,
    ) -> Result<Epic, OrchestrateError> {
        let written = self
            .store_ref()
            .update_epic(epic.id, epic.version, event, changes)
            .await?;
        Ok(self.committed(written))
    }

    /// Moves an agent to `target` through legal events.
    async fn set_agent(
        &self,
        id: &AgentId,
        role: AgentRole,
        task: Option<TaskId>,
        target: AgentState,
    ) -> Result<(), OrchestrateError> {
        let mut agent = self.store_ref().ensure_agent(id, role, task).await?;
        for event in agent.state.path_to(target) {
            agent = self
                .store_ref()
                .update_agent(id, agent.version, *event)
                .await?;
        }
        Ok(())
    }

    async fn decide(
        &self,
        epic: EpicId,
        task: Option<TaskId>,
        actor: &str,
        decision: &str,
        reasoning: &str,
        context: serde_json::Value,
    ) -> Result<(), OrchestrateError> {
        self.store_ref()
            .record_decision(NewDecision {
                epic_id: epic,
                task_id: task,
                actor: actor.to_owned(),
                decision: decision.to_owned(),
                reasoning: reasoning.to_owned(),
                context,
            })
            .await?;
        Ok(())
    }

    /// Blocks a task with a reason, fails its worker agent and tells the human.
    async fn block(&self, task: &Task, reason: String) -> Result<(), OrchestrateError> {
        let task = self
            .update_task(
                task,
                Some(TaskEvent::Block),
                TaskChanges::blocked(reason.clone()),
            )
            .await?;
        let worker = AgentId::new(AgentRole::Worker, &task.spec_id);
        self.set_agent(
            &worker,
            AgentRole::Worker,
            Some(task.id),
            AgentState::Failed,
        )
        .await?;
        self.decide(
            task.epic_id,
            Some(task.id),
            ORCHESTRATOR,
            "block the task",
            &reason,
            serde_json::json!({ "attempts": task.attempts, "qa_rounds": task.qa_rounds }),
        )
        .await?;
        self.send_mail(
            ORCHESTRATOR,
            HUMAN,
            &format!("{} is blocked", task.spec_id),
            &format!(
                "{reason}\n\nWhen fixed, retry the task ({}) and run again.",
                task.spec_id
            ),
            Some(task.id),
        )
        .await?;
        let files = artifacts::SpecFiles::new(self.inner.layout.spec_dir(&task.spec_id));
        files.progress(self.now(), &format!("blocked: {reason}"))?;
        files.write_metadata(&task)?;
        Ok(())
    }
}
