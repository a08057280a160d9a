//! Orchestration: drives epics from text to merged commits through the ports only.
//!
//! [`Factory::run`] plans every epic still in `Planning`, then loops: tasks whose dependencies are
//! merged become `Assigned`; up to `max_parallel` task pipelines run the worker → review → verify
//! loop ([`pipeline`]); approved tasks go through the merge queue one at a time ([`merge`]). Every
//! state change is a compare-and-set in the [`Store`]; every step emits a typed [`DomainEvent`].

mod artifacts;
mod merge;
mod pipeline;
mod prompt;

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::{broadcast, watch};
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::agent::{Agent, AgentId, AgentRole, AgentState};
use crate::config::FactoryConfig;
use crate::decision::NewDecision;
use crate::epic::{Epic, EpicChanges, EpicEvent, EpicId, EpicState, NewEpic};
use crate::event::DomainEvent;
use crate::layout::Layout;
use crate::mail::{HUMAN, Mail, NewMail, ORCHESTRATOR};
use crate::ports::{
    AgentBackend, AgentError, Clock, CommandSpec, Sandbox, SandboxError, Store, StoreError, Vcs,
    VcsError,
};
use crate::protocol::{PlanOutput, ProtocolError};
use crate::spec::SpecId;
use crate::task::{Task, TaskChanges, TaskEvent, TaskId, TaskState};

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

/// Why orchestration stopped with an error. Task-level failures (an agent crashed, QA never
/// passed) are not errors: they block the task, record the reason and the run goes on.
#[derive(Debug, thiserror::Error)]
pub enum OrchestrateError {
    /// `factory epic add` with blank text.
    #[error(
        "the epic text is empty: describe the feature you want, e.g. `factory epic add \"Add a /healthz endpoint\"`"
    )]
    EmptyEpic,
    /// No task has this id or spec id.
    #[error("no task `{0}`: run `factory tasks` to list task ids and spec ids")]
    UnknownTask(String),
    /// Mail to an address no agent has or will have.
    #[error(
        "no agent `{to}`: address planner/epic-N, worker/<spec-id> or reviewer/<spec-id> (see `factory tasks`), or human"
    )]
    UnknownRecipient {
        /// The address given.
        to: String,
    },
    /// The task is not in a state the request applies to.
    #[error("task {spec_id} is {state}: {hint}")]
    WrongTaskState {
        /// The task.
        spec_id: SpecId,
        /// Its state.
        state: TaskState,
        /// What to do instead.
        hint: &'static str,
    },
    /// The verify command is not installed.
    #[error(
        "verify command not found: `{command}`; install it or change [verify] command in .factory/config.toml"
    )]
    VerifyCommandNotFound {
        /// The configured command.
        command: String,
    },
    /// The planner failed or printed something that is not a plan.
    #[error(
        "planning epic {epic} failed: {reason}; fix the planner agent and run `factory run` again"
    )]
    Planning {
        /// The epic.
        epic: EpicId,
        /// What went wrong.
        reason: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Git failed.
    #[error(transparent)]
    Vcs(#[from] VcsError),
    /// A command could not be started.
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    /// A spec artifact or log could not be written.
    #[error("could not write {path}: {source}")]
    Artifact {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A pipeline task panicked or was cancelled unexpectedly.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Asks a running [`Factory::run`] to stop at the next step boundary (Ctrl-C).
#[derive(Debug, Clone)]
pub struct StopHandle(Arc<watch::Sender<bool>>);

/// The receiving side of a [`StopHandle`].
#[derive(Debug, Clone)]
pub struct StopSignal(watch::Receiver<bool>);

/// A connected stop handle and signal.
pub fn stop_signal() -> (StopHandle, StopSignal) {
    let (tx, rx) = watch::channel(false);
    (StopHandle(Arc::new(tx)), StopSignal(rx))
}

impl StopHandle {
    /// Requests the stop; idempotent.
    pub fn stop(&self) {
        self.0.send_replace(true);
    }
}

impl StopSignal {
    /// Whether a stop was requested.
    pub fn is_stopped(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once a stop is requested (never, if the handle was dropped without stopping).
    pub async fn stopped(&mut self) {
        if self.0.wait_for(|s| *s).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// What one [`Factory::run`] did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RunReport {
    /// Tasks merged during this run: spec id and merge commit.
    pub merged: Vec<(SpecId, String)>,
    /// Tasks blocked or failed (now or before): spec id and reason.
    pub blocked: Vec<(SpecId, String)>,
    /// Merges waiting on the user's uncommitted changes: spec id and reason.
    pub waiting: Vec<(SpecId, String)>,
    /// Tasks that were neither merged nor blocked when the run ended (stopped early, or waiting
    /// on a blocked dependency).
    pub unfinished: Vec<SpecId>,
    /// QA rounds across every task of the run's epics.
    pub qa_rounds: u32,
    /// Whether the run ended because a stop was requested.
    pub stopped: bool,
    /// Wall time of the run.
    pub elapsed_ms: u64,
}

impl RunReport {
    /// Whether every task of every epic is merged.
    pub fn all_merged(&self) -> bool {
        self.blocked.is_empty() && self.waiting.is_empty() && self.unfinished.is_empty()
    }
}

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

/// Factory: the orchestration over a set of ports. A cheap-to-clone handle.
#[derive(Clone)]
pub struct Factory {
    inner: Arc<Inner>,
}

struct Inner {
    ports: Ports,
    config: FactoryConfig,
    layout: Layout,
    events: broadcast::Sender<DomainEvent>,
}

/// Which kind of job the run loop spawned for a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum JobKind {
    /// The worker → review → verify loop.
    Pipeline,
    /// The merge queue step.
    Merge,
}

/// What a task pipeline or merge job ended with.
enum JobEnd {
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

    /// A live stream of every domain event from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<DomainEvent> {
        self.inner.events.subscribe()
    }

    /// The store, for read-only queries by frontends.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.ports.store
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

    /// Persists the event in the journal and announces it to subscribers.
    async fn emit(&self, event: DomainEvent) -> Result<(), OrchestrateError> {
        self.store_ref().append_event(&event).await?;
        // No subscriber is fine.
        let _ = self.inner.events.send(event);
        Ok(())
    }

    /// Adds an epic; it is planned by the next [`Factory::run`].
    pub async fn add_epic(&self, text: &str) -> Result<Epic, OrchestrateError> {
        if text.trim().is_empty() {
            return Err(OrchestrateError::EmptyEpic);
        }
        let epic = self
            .store_ref()
            .create_epic(NewEpic {
                text: text.trim().to_owned(),
            })
            .await?;
        self.emit(DomainEvent::EpicCreated {
            epic_id: epic.id,
            title: epic.title.clone(),
        })
        .await?;
        Ok(epic)
    }

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

    /// Sends a message from the human to an agent (or anyone); agents read their unread mail in
    /// their next prompt.
    pub async fn send_mail(
        &self,
        from: &str,
        to: &str,
        subject: &str,
        body: &str,
        task_id: Option<TaskId>,
    ) -> Result<Mail, OrchestrateError> {
        let mail = self
            .store_ref()
            .send_mail(NewMail {
                from: from.to_owned(),
                to: to.to_owned(),
                subject: subject.to_owned(),
                body: body.to_owned(),
                task_id,
            })
            .await?;
        self.emit(DomainEvent::MailSent {
            mail_id: mail.id,
            from: mail.from.clone(),
            to: mail.to.clone(),
            subject: mail.subject.clone(),
        })
        .await?;
        Ok(mail)
    }

    /// Sends a message from the human to an agent, which reads it in its next prompt. The
    /// address must name an existing epic's planner or an existing task's worker or reviewer
    /// (the agent need not have run yet).
    pub async fn mail_agent(
        &self,
        to: &str,
        subject: &str,
        body: &str,
    ) -> Result<Mail, OrchestrateError> {
        let unknown = || OrchestrateError::UnknownRecipient { to: to.to_owned() };
        let task_id = match to.split_once('/') {
            _ if to == HUMAN => None,
            Some(("planner", scope)) => {
                let id = scope
                    .strip_prefix("epic-")
                    .and_then(|n| n.parse::<i64>().ok())
                    .ok_or_else(unknown)?;
                match self.store_ref().epic(EpicId(id)).await {
                    Err(StoreError::NotFound { .. }) => return Err(unknown()),
                    other => other?,
                };
                None
            }
            Some(("worker" | "reviewer", scope)) => {
                let spec: SpecId = scope.parse().map_err(|_| unknown())?;
                match self.store_ref().task_by_spec(&spec).await {
                    Err(StoreError::NotFound { .. }) => return Err(unknown()),
                    other => Some(other?.id),
                }
            }
            _ => return Err(unknown()),
        };
        self.send_mail(HUMAN, to, subject, body, task_id).await
    }

    /// Puts a blocked task back to `Assigned` with a fresh round budget, so the next run works on
    /// it again.
    pub async fn retry_task(&self, id: &str) -> Result<Task, OrchestrateError> {
        let task = self.find_task(id).await?;
        if task.state != TaskState::Blocked {
            return Err(OrchestrateError::WrongTaskState {
                spec_id: task.spec_id,
                state: task.state,
                hint: "only blocked tasks can be retried",
            });
        }
        let changes = TaskChanges {
            attempts: Some(0),
            blocked_reason: Some(None),
            ..TaskChanges::default()
        };
        let task = self
            .update_task(&task, Some(TaskEvent::Unblock), changes)
            .await?;
        let epic = self.store_ref().epic(task.epic_id).await?;
        if epic.state == EpicState::Blocked {
            self.update_epic(&epic, EpicEvent::Unblock, EpicChanges::default())
                .await?;
        }
        Ok(task)
    }

    /// Compare-and-set write of a task that also announces a state change.
    async fn update_task(
        &self,
        task: &Task,
        event: Option<TaskEvent>,
        changes: TaskChanges,
    ) -> Result<Task, OrchestrateError> {
        let reason = changes.blocked_reason.clone().flatten();
        let next = self
            .store_ref()
            .update_task(task.id, task.version, event, changes)
            .await?;
        if next.state != task.state {
            self.emit(DomainEvent::TaskStateChanged {
                task_id: next.id,
                spec_id: next.spec_id.clone(),
                from: task.state,
                to: next.state,
                reason,
            })
            .await?;
        }
        Ok(next)
    }

    async fn update_epic(
        &self,
        epic: &Epic,
        event: EpicEvent,
        changes: EpicChanges,
    ) -> Result<Epic, OrchestrateError> {
        let next = self
            .store_ref()
            .update_epic(epic.id, epic.version, Some(event), changes)
            .await?;
        self.emit(DomainEvent::EpicStateChanged {
            epic_id: next.id,
            from: epic.state,
            to: next.state,
        })
        .await?;
        Ok(next)
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

    /// Fails early, before any agent runs, when the main branch does not exist or the verify
    /// command's program is not installed.
    pub async fn preflight(&self) -> Result<(), OrchestrateError> {
        let main = &self.inner.config.git.main_branch;
        if self.inner.ports.vcs.branch_head(main).await?.is_none() {
            return Err(VcsError::MissingBranch(main.clone()).into());
        }
        let command = self.inner.config.verify.command.trim();
        let Some(program) = command
            .split_whitespace()
            .find(|w| !w.contains('='))
            .map(str::to_owned)
        else {
            return Ok(());
        };
        let out = self
            .inner
            .ports
            .sandbox
            .run(CommandSpec {
                command: format!("command -v '{}' >/dev/null 2>&1", program.replace('\'', "")),
                cwd: self.inner.layout.repo_root().to_owned(),
                env: Vec::new(),
                stdin: None,
                timeout: Duration::from_secs(10),
                ..CommandSpec::default()
            })
            .await?;
        if out.success() {
            Ok(())
        } else {
            Err(OrchestrateError::VerifyCommandNotFound {
                command: command.to_owned(),
            })
        }
    }

    /// Plans every epic in `Planning`, then works until nothing is runnable or `stop` fires.
    /// A later run resumes where this one stopped; merged work is never redone.
    pub async fn run(&self, mut stop: StopSignal) -> Result<RunReport, OrchestrateError> {
        let started = Instant::now();
        self.preflight().await?;
        for epic in self.store_ref().list_epics().await? {
            if stop.is_stopped() {
                break;
            }
            if epic.state == EpicState::Planning {
                self.plan_epic(&epic).await?;
            }
        }

        let max_parallel = self.inner.config.max_parallel.max(1);
        let mut jobs: JoinSet<(JobKind, TaskId, Result<JobEnd, OrchestrateError>)> = JoinSet::new();
        let mut pipelines: HashSet<TaskId> = HashSet::new();
        let mut merging: Option<TaskId> = None;
        let mut waiting_since: BTreeMap<TaskId, Instant> = BTreeMap::new();
        let mut merged = Vec::new();
        let retry = Duration::from_secs(self.inner.config.git.merge_retry_secs.max(1));
        let mut first_error = None;

        loop {
            if stop.is_stopped() || first_error.is_some() {
                break;
            }
            let mut tasks = self.runnable_scope().await?;
            let completed: HashSet<TaskId> = tasks
                .iter()
                .filter(|t| t.state == TaskState::Completed)
                .map(|t| t.id)
                .collect();
            for task in &mut tasks {
                if task.state == TaskState::Pending
                    && task.depends_on.iter().all(|d| completed.contains(d))
                {
                    let t = self
                        .update_task(task, Some(TaskEvent::Assign), TaskChanges::default())
                        .await?;
                    *task = t.clone();
                    self.emit(DomainEvent::TaskReady {
                        task_id: t.id,
                        spec_id: t.spec_id.clone(),
                    })
                    .await?;
                }
            }
            for task in &tasks {
                let needs_pipeline = matches!(
                    task.state,
                    TaskState::Assigned | TaskState::InProgress | TaskState::Review
                );
                if needs_pipeline && !pipelines.contains(&task.id) && pipelines.len() < max_parallel
                {
                    pipelines.insert(task.id);
                    let this = self.clone();
                    let id = task.id;
                    jobs.spawn(async move { (JobKind::Pipeline, id, this.drive_task(id).await) });
                }
            }
            if merging.is_none() {
                // A pipeline that just approved its task may still be finishing; merge it after.
                let next = tasks.iter().find(|t| {
                    t.state == TaskState::Merging
                        && !pipelines.contains(&t.id)
                        && waiting_since
                            .get(&t.id)
                            .is_none_or(|since| since.elapsed() >= retry)
                });
                if let Some(task) = next {
                    merging = Some(task.id);
                    waiting_since.remove(&task.id);
                    let this = self.clone();
                    let id = task.id;
                    jobs.spawn(async move { (JobKind::Merge, id, this.merge_task(id).await) });
                }
            }

            if jobs.is_empty() {
                // Only merges waiting on the user's checkout can still move: wait and retry.
                let Some(soonest) = waiting_since.values().min().copied() else {
                    break;
                };
                let wait = retry.saturating_sub(soonest.elapsed());
                tokio::select! {
                    _ = tokio::time::sleep(wait) => continue,
                    _ = stop.stopped() => break,
                }
            }

            tokio::select! {
                joined = jobs.join_next() => {
                    let Some(joined) = joined else { continue };
                    let (kind, id, result) = match joined {
                        Ok(pair) => pair,
                        Err(e) => {
                            first_error.get_or_insert(OrchestrateError::Internal(e.to_string()));
                            continue;
                        }
                    };
                    match kind {
                        JobKind::Merge => merging = None,
                        JobKind::Pipeline => {
                            pipelines.remove(&id);
                        }
                    }
                    match result {
                        Ok(JobEnd::MergeWaiting) => {
                            waiting_since.insert(id, Instant::now());
                        }
                        Ok(JobEnd::Done) => {
                            let task = self.store_ref().task(id).await?;
                            if let (TaskState::Completed, Some(commit)) = (task.state, &task.merge_commit) {
                                merged.push((task.spec_id.clone(), commit.clone()));
                            }
                        }
                        Err(e) => {
                            first_error.get_or_insert(e);
                        }
                    }
                }
                _ = stop.stopped() => break,
            }
        }
        // Dropping in-flight jobs cancels them; agent and verify processes are killed with them.
        // Their tasks keep their last stored state and resume on the next run.
        jobs.abort_all();
        while jobs.join_next().await.is_some() {}

        let stopped = stop.is_stopped();
        self.settle_epics().await?;
        let report = self.report(merged, stopped, started).await?;
        if report.waiting.is_empty() && !stopped {
            self.cleanup_merge_worktree().await?;
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(report),
        }
    }

    /// Tasks of epics that are in progress (or blocked, so a retried task can run).
    async fn runnable_scope(&self) -> Result<Vec<Task>, OrchestrateError> {
        let open: HashSet<EpicId> = self
            .store_ref()
            .list_epics()
            .await?
            .into_iter()
            .filter(|e| matches!(e.state, EpicState::InProgress | EpicState::Blocked))
            .map(|e| e.id)
            .collect();
        let mut tasks = self.store_ref().list_tasks(None).await?;
        tasks.retain(|t| open.contains(&t.epic_id));
        Ok(tasks)
    }

    async fn plan_epic(&self, epic: &Epic) -> Result<(), OrchestrateError> {
        let agent_id = AgentId::new(AgentRole::Planner, format!("epic-{}", epic.id));
        let outcome = self
            .run_agent(
                AgentRole::Planner,
                &agent_id,
                None,
                crate::ports::AgentRequest {
                    role: AgentRole::Planner,
                    agent_id: agent_id.clone(),
                    prompt: prompt::planner(epic),
                    workdir: self.inner.layout.repo_root().to_owned(),
                    spec_id: None,
                    spec_dir: None,
                    task_key: None,
                    round: 1,
                },
                &format!("epic-{}", epic.id),
            )
            .await?;
        let plan = outcome
            .map_err(|e| e.to_string())
            .and_then(|out| PlanOutput::parse(&out).map_err(|e: ProtocolError| e.to_string()));
        let plan = match plan {
            Ok(plan) => plan,
            Err(reason) => {
                self.set_agent(&agent_id, AgentRole::Planner, None, AgentState::Failed)
                    .await?;
                let changes = EpicChanges {
                    blocked_reason: Some(Some(reason.clone())),
                };
                self.store_ref()
                    .update_epic(epic.id, epic.version, None, changes)
                    .await?;
                return Err(OrchestrateError::Planning {
                    epic: epic.id,
                    reason,
                });
            }
        };
        let tasks = self
            .store_ref()
            .create_tasks(
                epic.id,
                plan.tasks.iter().cloned().map(Into::into).collect(),
            )
            .await
            .map_err(|e| match e {
                StoreError::Invalid(reason) => OrchestrateError::Planning {
                    epic: epic.id,
                    reason,
                },
                other => other.into(),
            })?;
        self.set_agent(&agent_id, AgentRole::Planner, None, AgentState::Idle)
            .await?;
        let summary: Vec<String> = tasks.iter().map(|t| t.spec_id.to_string()).collect();
        self.decide(
            epic.id,
            None,
            agent_id.as_str(),
            &format!("split the epic into {} task(s)", tasks.len()),
            &plan.reasoning,
            serde_json::json!({ "tasks": summary }),
        )
        .await?;
        for t in &tasks {
            self.emit(DomainEvent::TaskCreated {
                epic_id: epic.id,
                task_id: t.id,
                spec_id: t.spec_id.clone(),
                title: t.title.clone(),
                depends_on: t.depends_on.clone(),
            })
            .await?;
        }
        let fresh = self.store_ref().epic(epic.id).await?;
        self.update_epic(
            &fresh,
            EpicEvent::Planned,
            EpicChanges {
                blocked_reason: Some(None),
            },
        )
        .await?;
        Ok(())
    }

    /// Runs one agent request, tracking the agent's state, writing its transcript to
    /// `.factory/logs/<scope>/` and emitting start/completion events. The inner result is the
    /// agent's output or its failure (which the caller turns into a blocked task).
    async fn run_agent(
        &self,
        role: AgentRole,
        agent_id: &AgentId,
        task: Option<TaskId>,
        request: crate::ports::AgentRequest,
        log_scope: &str,
    ) -> Result<Result<String, AgentError>, OrchestrateError> {
        let round = request.round;
        self.set_agent(agent_id, role, task, AgentState::Busy)
            .await?;
        self.emit(DomainEvent::AgentStarted {
            agent_id: agent_id.clone(),
            role,
            task_id: task,
            round,
        })
        .await?;
        let started = Instant::now();
        let span = tracing::info_span!("agent", agent = %agent_id, round);
        let result = self
            .inner
            .ports
            .agents
            .for_role(role)
            .run(request)
            .instrument(span)
            .await;
        let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let log_name = format!("{role}-round-{round}.jsonl");
        let transcript = match &result {
            Ok(resp) => resp.transcript.clone(),
            Err(e) => vec![crate::ports::TranscriptEntry {
                at: self.now(),
                kind: crate::ports::TranscriptKind::Exit,
                text: e.to_string(),
            }],
        };
        self.write_log(log_scope, &log_name, &transcript)?;
        self.emit(DomainEvent::AgentCompleted {
            agent_id: agent_id.clone(),
            role,
            task_id: task,
            round,
            ok: result.is_ok(),
            duration_ms,
        })
        .await?;
        Ok(result.map(|r| r.output))
    }

    fn write_log(
        &self,
        scope: &str,
        name: &str,
        entries: &[crate::ports::TranscriptEntry],
    ) -> Result<(), OrchestrateError> {
        let dir = self.inner.layout.logs_dir(scope);
        let path = dir.join(name);
        let err = |source| OrchestrateError::Artifact {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(&dir).map_err(err)?;
        let mut text = String::new();
        for e in entries {
            if let Ok(line) = serde_json::to_string(e) {
                text.push_str(&line);
                text.push('\n');
            }
        }
        std::fs::write(&path, text).map_err(err)
    }

    /// Completes epics whose tasks are all merged; blocks epics where nothing can move.
    async fn settle_epics(&self) -> Result<(), OrchestrateError> {
        for epic in self.store_ref().list_epics().await? {
            if !matches!(epic.state, EpicState::InProgress | EpicState::Blocked) {
                continue;
            }
            let tasks = self.store_ref().list_tasks(Some(epic.id)).await?;
            if tasks.iter().all(|t| t.state == TaskState::Completed) {
                self.update_epic(&epic, EpicEvent::Complete, EpicChanges::default())
                    .await?;
                continue;
            }
            let stuck: Vec<&Task> = tasks
                .iter()
                .filter(|t| matches!(t.state, TaskState::Blocked | TaskState::Failed))
                .collect();
            let movable = tasks.iter().any(|t| t.state.is_active());
            if epic.state == EpicState::InProgress && !stuck.is_empty() && !movable {
                let reason = format!(
                    "{} task(s) blocked: {}",
                    stuck.len(),
                    stuck
                        .iter()
                        .map(|t| t.spec_id.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                self.update_epic(
                    &epic,
                    EpicEvent::Block,
                    EpicChanges {
                        blocked_reason: Some(Some(reason)),
                    },
                )
                .await?;
            }
        }
        Ok(())
    }

    async fn report(
        &self,
        merged: Vec<(SpecId, String)>,
        stopped: bool,
        started: Instant,
    ) -> Result<RunReport, OrchestrateError> {
        let mut report = RunReport {
            merged,
            stopped,
            elapsed_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            ..RunReport::default()
        };
        for epic in self.store_ref().list_epics().await? {
            if epic.state == EpicState::Cancelled {
                continue;
            }
            for t in self.store_ref().list_tasks(Some(epic.id)).await? {
                report.qa_rounds += t.qa_rounds;
                match t.state {
                    TaskState::Completed => {}
                    TaskState::Blocked | TaskState::Failed => report
                        .blocked
                        .push((t.spec_id, t.blocked_reason.unwrap_or_default())),
                    TaskState::Merging if t.waiting_reason.is_some() => report
                        .waiting
                        .push((t.spec_id, t.waiting_reason.unwrap_or_default())),
                    _ => report.unfinished.push(t.spec_id),
                }
            }
        }
        Ok(report)
    }

    async fn cleanup_merge_worktree(&self) -> Result<(), OrchestrateError> {
        self.inner
            .ports
            .vcs
            .remove_worktree(&self.inner.layout.merge_worktree())
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
                "{reason}\n\nWhen fixed, run `factory task retry {}` and `factory run`.",
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
