//! The run loop: hold the repository's run lease, plan new epics, then start what the
//! [`scheduler`](super::scheduler) says until nothing can move or a stop is requested.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::task::{AbortHandle, JoinSet};

use crate::agent::AgentState;
use crate::epic::{EpicChanges, EpicEvent, EpicId, EpicState};
use crate::lease::{LeaseHolder, RunLease};
use crate::ports::{CommandSpec, StoreError, VcsError};
use crate::spec::SpecId;
use crate::task::{Task, TaskEvent, TaskId, TaskState};

use super::scheduler::{self, Limits, Running, Step, Then};
use super::stop::{StopHandle, StopSignal, stop_signal};
use super::{EventFeed, Factory, JobEnd, OrchestrateError};

/// How soon a merge waiting within its grace is tried again.
const GRACE_RETRY: Duration = Duration::from_millis(400);

/// How a run behaves; the defaults suit an interactive `factory run`.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Keep retrying merges that wait on the user's uncommitted changes when nothing else can
    /// move, instead of ending the run and reporting them.
    pub wait_for_checkout: bool,
    /// Who this run is, as recorded in the run lease.
    pub holder: LeaseHolder,
    /// How long the run lease lasts without a heartbeat; heartbeats come three times as often.
    pub lease_ttl: Duration,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            wait_for_checkout: false,
            holder: LeaseHolder {
                pid: std::process::id(),
                host: String::from("localhost"),
                label: String::from("factory run"),
            },
            lease_ttl: Duration::from_secs(15),
        }
    }
}

/// An epic whose planning failed in this run; it stays in `Planning` and is planned again by
/// the next run.
#[derive(Debug, Clone, Serialize)]
pub struct EpicFailure {
    /// The epic.
    pub epic_id: EpicId,
    /// Its title.
    pub title: String,
    /// What went wrong.
    pub reason: String,
}

/// What one run did.
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
    /// Epics whose planning failed in this run.
    pub failed_epics: Vec<EpicFailure>,
    /// QA rounds across every task of the run's epics.
    pub qa_rounds: u32,
    /// Whether the run ended because a stop was requested.
    pub stopped: bool,
    /// Wall time of the run.
    pub elapsed_ms: u64,
}

impl RunReport {
    /// Whether every task of every epic is merged (or cancelled) and every epic planned.
    pub fn all_merged(&self) -> bool {
        self.blocked.is_empty()
            && self.waiting.is_empty()
            && self.unfinished.is_empty()
            && self.failed_epics.is_empty()
    }
}

/// A run in progress: stop it, follow its events, await its report.
pub struct RunHandle {
    stop: StopHandle,
    task: tokio::task::JoinHandle<Result<RunReport, OrchestrateError>>,
    factory: Factory,
    from_seq: u64,
}

impl RunHandle {
    /// Asks the run to stop at the next step boundary; agents and verify commands in flight are
    /// stopped and their rounds run again on the next run.
    pub fn stop(&self) {
        self.stop.stop();
    }

    /// A handle that stops this run, for a signal handler.
    pub fn stopper(&self) -> StopHandle {
        self.stop.clone()
    }

    /// Every event from the start of the run on.
    pub fn events(&self) -> EventFeed {
        self.factory.events_after(self.from_seq)
    }

    /// Waits for the run to end.
    pub async fn wait(self) -> Result<RunReport, OrchestrateError> {
        self.task.await.map_err(|e| {
            OrchestrateError::Internal(format!("the run task ended abnormally: {e}"))
        })?
    }
}

/// Which kind of job the run loop spawned for a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum JobKind {
    /// The worker → review → verify loop.
    Pipeline,
    /// The merge queue step.
    Merge,
}

type JobResult = (JobKind, TaskId, Result<JobEnd, OrchestrateError>);

/// How often the loop looks for tasks cancelled from outside while jobs run.
const CANCEL_POLL: Duration = Duration::from_secs(1);

impl Factory {
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

    /// The current run lease, if any (live or expired).
    pub async fn run_lease(&self) -> Result<Option<RunLease>, OrchestrateError> {
        Ok(self.store_ref().run_lease().await?)
    }

    /// Releases a lease whose holder is known to be dead (its process is gone), so a new run
    /// need not wait for it to expire. Does nothing if `token` no longer holds the lease.
    pub async fn release_dead_lease(&self, token: u64) -> Result<(), OrchestrateError> {
        Ok(self.store_ref().release_run_lease(token).await?)
    }

    /// Starts a run in the background. Fails with [`OrchestrateError::AlreadyRunning`] if
    /// another run holds the repository.
    pub async fn start(&self, options: RunOptions) -> Result<RunHandle, OrchestrateError> {
        let lease = self.acquire_lease(&options).await?;
        let from_seq = self.journal_head().await?;
        let (stop, signal) = stop_signal();
        let this = self.clone();
        let task = tokio::spawn(async move { this.run_leased(options, signal, lease).await });
        Ok(RunHandle {
            stop,
            task,
            factory: self.clone(),
            from_seq,
        })
    }

    /// Plans every epic in `Planning`, then works until nothing is runnable or `stop` fires.
    /// A later run resumes where this one stopped; merged work is never redone.
    pub async fn run(
        &self,
        options: RunOptions,
        stop: StopSignal,
    ) -> Result<RunReport, OrchestrateError> {
        let lease = self.acquire_lease(&options).await?;
        self.run_leased(options, stop, lease).await
    }

    async fn acquire_lease(&self, options: &RunOptions) -> Result<RunLease, OrchestrateError> {
        match self
            .store_ref()
            .acquire_run_lease(options.holder.clone(), options.lease_ttl)
            .await
        {
            Err(StoreError::LeaseHeld(lease)) => Err(OrchestrateError::AlreadyRunning(lease)),
            other => Ok(other?),
        }
    }

    async fn run_leased(
        &self,
        options: RunOptions,
        mut user_stop: StopSignal,
        lease: RunLease,
    ) -> Result<RunReport, OrchestrateError> {
        let (stop, signal) = stop_signal();
        let lost = Arc::new(AtomicBool::new(false));
        let forward = {
            let stop = stop.clone();
            tokio::spawn(async move {
                user_stop.stopped().await;
                stop.stop();
            })
        };
        let heartbeat = {
            let store = self.inner.ports.store.clone();
            let (stop, lost, ttl, token) =
                (stop.clone(), lost.clone(), options.lease_ttl, lease.token);
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(ttl / 3).await;
                    match store.renew_run_lease(token, ttl).await {
                        Ok(_) => {}
                        Err(StoreError::LeaseLost { .. }) => {
                            lost.store(true, Ordering::SeqCst);
                            stop.stop();
                            return;
                        }
                        // A passing database error: try again at the next beat.
                        Err(e) => tracing::warn!(error = %e, "could not renew the run lease"),
                    }
                }
            })
        };
        let result = self.drive(&options, signal).await;
        forward.abort();
        heartbeat.abort();
        if let Err(e) = self.store_ref().release_run_lease(lease.token).await {
            tracing::warn!(error = %e, "could not release the run lease; it expires by itself");
        }
        if lost.load(Ordering::SeqCst) {
            return Err(OrchestrateError::LeaseLost);
        }
        result
    }

    async fn drive(
        &self,
        options: &RunOptions,
        mut stop: StopSignal,
    ) -> Result<RunReport, OrchestrateError> {
        let started = Instant::now();
        self.preflight().await?;
        self.reconcile_on_start().await?;
        self.finish_interrupted_cleanup().await?;

        let mut failed_epics = Vec::new();
        for epic in self.store_ref().list_epics().await? {
            if stop.is_stopped() {
                break;
            }
            if epic.state != EpicState::Planning {
                continue;
            }
            tokio::select! {
                planned = self.plan_epic(&epic) => match planned {
                    Ok(()) => {}
                    Err(OrchestrateError::Planning { epic: epic_id, reason }) => {
                        failed_epics.push(EpicFailure { epic_id, title: epic.title.clone(), reason });
                    }
                    Err(e) => return Err(e),
                },
                _ = stop.stopped() => break,
            }
        }

        let limits = Limits {
            max_parallel: self.inner.config.max_parallel.max(1),
            wait_for_checkout: options.wait_for_checkout,
        };
        let retry = Duration::from_secs(self.inner.config.git.merge_retry_secs.max(1));
        let mut jobs: JoinSet<JobResult> = JoinSet::new();
        let mut aborts: HashMap<TaskId, AbortHandle> = HashMap::new();
        let mut running = Running::default();
        let mut merged = Vec::new();
        let mut first_error = None;
        let mut signalled = std::collections::HashSet::new();
        let mut scope = super::scope::Scope::new(CANCEL_POLL);

        while !stop.is_stopped() && first_error.is_none() {
            let cancelled = scope.refresh(self).await?;
            for id in cancelled {
                if let Some(job) = aborts.remove(&id) {
                    job.abort();
                    running.pipelines.remove(&id);
                    if running.merging == Some(id) {
                        running.merging = None;
                    }
                }
            }
            let plan = scheduler::schedule(scope.tasks(), &running, limits, Instant::now());
            for step in plan.steps {
                match step {
                    Step::Assign(id) => {
                        if let Some(task) = scope.task(id).cloned() {
                            match self
                                .update_task(&task, Some(TaskEvent::Assign), Default::default())
                                .await
                            {
                                Ok(task) => scope.put(task),
                                // Changed by another process since the view was read (a
                                // cancel): read it again next turn.
                                Err(OrchestrateError::Store(StoreError::Stale { .. })) => {
                                    scope.stale(id)
                                }
                                Err(e) => return Err(e),
                            }
                        }
                    }
                    Step::Pipeline(id) => {
                        running.pipelines.insert(id);
                        let this = self.clone();
                        let job = jobs.spawn(async move {
                            (JobKind::Pipeline, id, this.drive_task(id).await)
                        });
                        aborts.insert(id, job);
                    }
                    Step::Merge(id) => {
                        running.merging = Some(id);
                        running.retry_merge_at.remove(&id);
                        let this = self.clone();
                        let job = jobs
                            .spawn(async move { (JobKind::Merge, id, this.merge_task(id).await) });
                        aborts.insert(id, job);
                    }
                }
            }
            let joined = match plan.then {
                Then::Finish => break,
                Then::RetryAt(at) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(at.into()) => continue,
                        _ = stop.stopped() => break,
                    }
                }
                Then::AwaitJob => tokio::select! {
                    joined = jobs.join_next() => joined,
                    _ = tokio::time::sleep(scope.until_due()) => continue,
                    _ = stop.stopped() => break,
                },
            };
            let Some(joined) = joined else { continue };
            let (kind, id, result) = match joined {
                Ok(done) => done,
                Err(e) if e.is_cancelled() => continue,
                Err(e) => {
                    first_error = Some(OrchestrateError::Internal(e.to_string()));
                    continue;
                }
            };
            aborts.remove(&id);
            scope.stale(id);
            match kind {
                JobKind::Merge => running.merging = None,
                JobKind::Pipeline => {
                    running.pipelines.remove(&id);
                }
            }
            match result {
                Ok(JobEnd::MergeWaiting) => {
                    let waits = running.merge_waits.entry(id).or_insert(0);
                    *waits += 1;
                    // Within the grace, try again soon: the cause may be a git command of the
                    // user's that holds a lock for a moment.
                    let delay = if *waits < scheduler::MERGE_WAIT_GRACE {
                        GRACE_RETRY.min(retry)
                    } else {
                        retry
                    };
                    running.retry_merge_at.insert(id, Instant::now() + delay);
                }
                Ok(JobEnd::Done) => {
                    running.merge_waits.remove(&id);
                    let task = self.store_ref().task(id).await?;
                    if let (TaskState::Completed, Some(commit)) = (task.state, &task.merge_commit) {
                        merged.push((task.spec_id.clone(), commit.clone()));
                    }
                }
                Err(e) => {
                    if let Err(fatal) = self.job_failed(id, e, &mut signalled).await {
                        first_error = Some(fatal);
                    }
                }
            }
        }
        // Dropping in-flight jobs cancels them; agent and verify processes are killed with them.
        // Their tasks keep their last stored state and resume on the next run.
        jobs.abort_all();
        while jobs.join_next().await.is_some() {}

        let stopped = stop.is_stopped();
        self.settle_epics().await?;
        let mut report = self.report(merged, stopped, started).await?;
        report.failed_epics = failed_epics;
        if report.waiting.is_empty() && !stopped {
            self.cleanup_merge_worktree().await?;
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(report),
        }
    }

    /// A job ended with an error. A task cancelled meanwhile explains it (its writes were
    /// refused); a task-local failure blocks that task and the run goes on; anything else ends
    /// the run. A git command killed by a signal (Ctrl-C reaching it as it started, with the
    /// stop not yet seen) leaves the task as it was, to run the step again, once per task and
    /// run (`signalled`).
    async fn job_failed(
        &self,
        id: TaskId,
        error: OrchestrateError,
        signalled: &mut std::collections::HashSet<TaskId>,
    ) -> Result<(), OrchestrateError> {
        let task = self.store_ref().task(id).await?;
        if task.state == TaskState::Cancelled {
            return Ok(());
        }
        if !error.is_task_local() {
            return Err(error);
        }
        if matches!(
            error,
            OrchestrateError::Vcs(VcsError::Git { code: None, .. })
        ) && signalled.insert(id)
        {
            tracing::warn!(spec = %task.spec_id, %error, "a git command was killed by a signal; the step runs again");
            return Ok(());
        }
        tracing::warn!(spec = %task.spec_id, %error, "task failed; blocking it");
        if task.state.is_active() {
            self.block(&task, error.to_string()).await?;
        }
        Ok(())
    }

    /// Makes stored agent states true before anything runs: this run holds the lease, so no
    /// agent of an earlier, interrupted run is still busy. Clears the git locks an interrupted
    /// run left in the worktrees of unfinished tasks, the merge worktree and the user's checkout.
    async fn reconcile_on_start(&self) -> Result<(), OrchestrateError> {
        for agent in self.store_ref().list_agents().await? {
            if agent.state == AgentState::Busy {
                self.set_agent(&agent.id, agent.role, agent.task_id, AgentState::Idle)
                    .await?;
            }
        }
        let unfinished: Vec<Task> = self
            .store_ref()
            .list_tasks(None)
            .await?
            .into_iter()
            .filter(|t| !t.state.is_terminal())
            .collect();
        let mut worktrees: Vec<std::path::PathBuf> = unfinished
            .iter()
            .map(|t| self.layout().task_worktree(&t.spec_id))
            .collect();
        worktrees.push(self.layout().merge_worktree());
        let branches: Vec<String> = unfinished
            .iter()
            .map(|t| t.branch.clone().unwrap_or_else(|| t.spec_id.branch()))
            .collect();
        for lock in self
            .inner
            .ports
            .vcs
            .clear_stale_locks(&self.config().git.main_branch, &worktrees, &branches)
            .await?
        {
            tracing::warn!(path = %lock.display(), "removed a lock file an interrupted run left behind");
        }
        Ok(())
    }

    /// Epics whose tasks may run: in progress, or blocked (so a retried task can run).
    pub(super) async fn open_epics(
        &self,
    ) -> Result<std::collections::HashSet<EpicId>, OrchestrateError> {
        Ok(self
            .store_ref()
            .list_epics()
            .await?
            .into_iter()
            .filter(|e| matches!(e.state, EpicState::InProgress | EpicState::Blocked))
            .map(|e| e.id)
            .collect())
    }

    /// Unfinished tasks of epics that are in progress (or blocked, so a retried task can run),
    /// and the ids of cancelled tasks (whose jobs must stop). Completed tasks are left out: the
    /// scheduler takes a dependency it does not see as completed.
    pub(super) async fn runnable_scope(
        &self,
    ) -> Result<(Vec<Task>, Vec<TaskId>), OrchestrateError> {
        let open = self.open_epics().await?;
        let mut tasks = self.store_ref().list_unfinished_tasks().await?;
        let cancelled = tasks
            .iter()
            .filter(|t| t.state == TaskState::Cancelled || !open.contains(&t.epic_id))
            .map(|t| t.id)
            .collect();
        tasks.retain(|t| open.contains(&t.epic_id));
        Ok((tasks, cancelled))
    }

    /// Completes epics whose tasks are all merged (or cancelled); blocks epics where nothing
    /// can move.
    async fn settle_epics(&self) -> Result<(), OrchestrateError> {
        for epic in self.store_ref().list_epics().await? {
            if !matches!(epic.state, EpicState::InProgress | EpicState::Blocked) {
                continue;
            }
            let tasks = self.store_ref().list_tasks(Some(epic.id)).await?;
            if tasks
                .iter()
                .all(|t| matches!(t.state, TaskState::Completed | TaskState::Cancelled))
            {
                self.update_epic(&epic, Some(EpicEvent::Complete), EpicChanges::default())
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
                    Some(EpicEvent::Block),
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
        let cancelled: std::collections::HashSet<EpicId> = self
            .store_ref()
            .list_epics()
            .await?
            .into_iter()
            .filter(|e| e.state == EpicState::Cancelled)
            .map(|e| e.id)
            .collect();
        for t in self.store_ref().list_tasks(None).await? {
            if cancelled.contains(&t.epic_id) {
                continue;
            }
            report.qa_rounds += t.qa_rounds;
            match t.state {
                TaskState::Completed | TaskState::Cancelled => {}
                TaskState::Blocked | TaskState::Failed => report
                    .blocked
                    .push((t.spec_id, t.blocked_reason.unwrap_or_default())),
                TaskState::Merging if t.waiting_reason.is_some() => report
                    .waiting
                    .push((t.spec_id, t.waiting_reason.unwrap_or_default())),
                _ => report.unfinished.push(t.spec_id),
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
}
