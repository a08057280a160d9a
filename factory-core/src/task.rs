//! Tasks: one unit of work from a plan, implemented on its own branch in its own worktree.

use serde::{Deserialize, Serialize};

use crate::epic::EpicId;
use crate::spec::SpecId;
use crate::transition::snake_case_enum;
use crate::{IllegalTransition, Timestamp};

/// Store-assigned identifier of a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TaskId(pub i64);

impl std::fmt::Display for TaskId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Lifecycle of a task.
///
/// `Pending → Assigned → InProgress → Review → Merging → Completed`; a review or verify that asks
/// for changes sends `Review → InProgress`, and a re-verify that fails after the branch was brought
/// up to date sends `Merging → InProgress`. `Assigned | InProgress | Review | Merging → Blocked`,
/// `Blocked → Assigned` when unblocked, `Blocked → Failed` when given up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    /// Waiting for the tasks it depends on to be merged.
    Pending,
    /// Runnable: a worktree and a worker are being prepared.
    Assigned,
    /// The worker is editing the worktree.
    InProgress,
    /// The reviewer and the verify command are judging the work.
    Review,
    /// Approved and waiting in, or going through, the merge queue.
    Merging,
    /// Merged into the main branch.
    Completed,
    /// Stopped with a recorded reason; needs a person.
    Blocked,
    /// Given up on.
    Failed,
    /// Cancelled by a person; its branch is kept.
    Cancelled,
}
snake_case_enum!(TaskState { Pending => "pending", Assigned => "assigned", InProgress => "in_progress", Review => "review", Merging => "merging", Completed => "completed", Blocked => "blocked", Failed => "failed", Cancelled => "cancelled" });

/// What can happen to a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskEvent {
    /// Every dependency is merged; a worker is assigned.
    Assign,
    /// The worker starts a round.
    Start,
    /// The worker finished a round and committed.
    SubmitForReview,
    /// Review or verify asked for changes: back to the worker.
    RequestChanges,
    /// Review and verify passed: into the merge queue.
    Approve,
    /// The merge into main landed.
    Merged,
    /// Progress is impossible without a person.
    Block,
    /// A person (or a retry) lets it continue.
    Unblock,
    /// A person gives up on it.
    Fail,
    /// A person cancels it.
    Cancel,
}
snake_case_enum!(TaskEvent { Assign => "assign", Start => "start", SubmitForReview => "submit_for_review", RequestChanges => "request_changes", Approve => "approve", Merged => "merged", Block => "block", Unblock => "unblock", Fail => "fail", Cancel => "cancel" });

impl TaskState {
    /// The one place that decides which task transitions are legal.
    pub fn transition(self, event: TaskEvent) -> Result<TaskState, IllegalTransition> {
        use TaskEvent as E;
        use TaskState as S;
        match (self, event) {
            (S::Pending, E::Assign) => Ok(S::Assigned),
            (S::Assigned, E::Start) => Ok(S::InProgress),
            (S::InProgress, E::SubmitForReview) => Ok(S::Review),
            (S::Review | S::Merging, E::RequestChanges) => Ok(S::InProgress),
            (S::Review, E::Approve) => Ok(S::Merging),
            (S::Merging, E::Merged) => Ok(S::Completed),
            (S::Assigned | S::InProgress | S::Review | S::Merging, E::Block) => Ok(S::Blocked),
            (S::Blocked, E::Unblock) => Ok(S::Assigned),
            (S::Blocked, E::Fail) => Ok(S::Failed),
            (
                S::Pending | S::Assigned | S::InProgress | S::Review | S::Merging | S::Blocked,
                E::Cancel,
            ) => Ok(S::Cancelled),
            (from, event) => Err(IllegalTransition::new("task", from, event)),
        }
    }

    /// Whether no further transition can leave this state.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            TaskState::Completed | TaskState::Failed | TaskState::Cancelled
        )
    }

    /// Whether the orchestrator can move the task forward without a person.
    pub fn is_active(self) -> bool {
        matches!(
            self,
            TaskState::Assigned | TaskState::InProgress | TaskState::Review | TaskState::Merging
        )
    }
}

/// A task as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Task {
    /// Identifier.
    pub id: TaskId,
    /// The epic it belongs to.
    pub epic_id: EpicId,
    /// The planner's short key for it, unique within the epic (used by `depends_on` in plans).
    pub key: String,
    /// `NNN-slug`, unique in the repository; names the spec dir, worktree and branch.
    pub spec_id: SpecId,
    /// One line.
    pub title: String,
    /// What to build.
    pub description: String,
    /// Conditions the reviewer checks.
    pub acceptance: Vec<String>,
    /// Tasks that must be merged before this one starts.
    pub depends_on: Vec<TaskId>,
    /// Current lifecycle state.
    pub state: TaskState,
    /// Bumped on every write; writers compare-and-set on it.
    pub version: u64,
    /// Worker rounds started so far.
    pub attempts: u32,
    /// QA rounds (review + verify) whose verdict is recorded. A round counts only then: a
    /// round cut short by a stop or a crash is run again, not counted.
    pub qa_rounds: u32,
    /// `qa_rounds` when the round budget last started afresh (0, or the count at the last
    /// retry): the budget `[qa] max_rounds` applies to `qa_rounds - rounds_base`.
    pub rounds_base: u32,
    /// `factory/<spec-id>` once the worktree exists.
    pub branch: Option<String>,
    /// Pull request URL when a forge is configured (later).
    pub pr_url: Option<String>,
    /// Why it is blocked or failed.
    pub blocked_reason: Option<String>,
    /// Why it is waiting (e.g. the merge waits for a dirty checkout); not an error.
    pub waiting_reason: Option<String>,
    /// The `--no-ff` merge commit on main once merged.
    pub merge_commit: Option<String>,
    /// The branch commit that last passed QA (review and verify); the merge queue merges
    /// exactly this commit, or re-verifies what replaced it.
    pub verified_commit: Option<String>,
    /// Conflict rounds handed to the worker so far (bounded by `[merge] conflict_attempts`).
    pub conflict_rounds: u32,
    /// Paths in conflict with main that the next worker round must resolve; empty when no
    /// conflict round is pending.
    pub conflict_files: Vec<String>,
    /// The branch's tip when the current worker round first started; set until the round is
    /// submitted, so a round re-run after an interruption judges its change against the same
    /// commit, not against a commit its interrupted run already made.
    pub round_start: Option<String>,
    /// When it was planned.
    pub created_at: Timestamp,
    /// When it last changed.
    pub updated_at: Timestamp,
}

/// What the planner supplies for one task; the store assigns ids and spec ids.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewTask {
    /// Key unique within the plan.
    pub key: String,
    /// One line.
    pub title: String,
    /// What to build.
    pub description: String,
    /// Conditions the reviewer checks.
    pub acceptance: Vec<String>,
    /// Keys of tasks in the same plan that must be merged first.
    pub depends_on: Vec<String>,
}

/// Field changes written together with (or without) a state event. `None` leaves a field alone;
/// for optional fields `Some(None)` clears it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskChanges {
    /// New worker-round count.
    pub attempts: Option<u32>,
    /// New QA-round count.
    pub qa_rounds: Option<u32>,
    /// New start of the round budget.
    pub rounds_base: Option<u32>,
    /// Branch name.
    pub branch: Option<Option<String>>,
    /// Blocked/failed reason.
    pub blocked_reason: Option<Option<String>>,
    /// Waiting reason.
    pub waiting_reason: Option<Option<String>>,
    /// Merge commit id.
    pub merge_commit: Option<Option<String>>,
    /// Pull request URL.
    pub pr_url: Option<Option<String>>,
    /// The commit that passed QA.
    pub verified_commit: Option<Option<String>>,
    /// New conflict-round count.
    pub conflict_rounds: Option<u32>,
    /// Paths the pending conflict round must resolve (empty: none pending).
    pub conflict_files: Option<Vec<String>>,
    /// Set or clear the start of the current worker round.
    pub round_start: Option<Option<String>>,
}

impl TaskChanges {
    /// Changes that set the blocked reason (and clear any waiting reason).
    pub fn blocked(reason: impl Into<String>) -> Self {
        TaskChanges {
            blocked_reason: Some(Some(reason.into())),
            waiting_reason: Some(None),
            round_start: Some(None),
            ..TaskChanges::default()
        }
    }
}

impl Task {
    /// The round a worker or QA run would have now: the next one after those recorded.
    pub fn current_round(&self) -> u32 {
        self.qa_rounds + 1
    }

    /// QA rounds recorded against the current budget.
    pub fn rounds_used(&self) -> u32 {
        self.qa_rounds.saturating_sub(self.rounds_base)
    }

    /// The task after `event` (if any) and `changes`, with the version bumped; the store writes
    /// exactly this, compare-and-set on the current version and state.
    pub fn apply(
        &self,
        event: Option<TaskEvent>,
        changes: TaskChanges,
        now: Timestamp,
    ) -> Result<Task, IllegalTransition> {
        let mut next = self.clone();
        if let Some(event) = event {
            next.state = self.state.transition(event)?;
        }
        let TaskChanges {
            attempts,
            qa_rounds,
            rounds_base,
            branch,
            blocked_reason,
            waiting_reason,
            merge_commit,
            pr_url,
            verified_commit,
            conflict_rounds,
            conflict_files,
            round_start,
        } = changes;
        if let Some(v) = attempts {
            next.attempts = v;
        }
        if let Some(v) = qa_rounds {
            next.qa_rounds = v;
        }
        if let Some(v) = branch {
            next.branch = v;
        }
        if let Some(v) = blocked_reason {
            next.blocked_reason = v;
        }
        if let Some(v) = waiting_reason {
            next.waiting_reason = v;
        }
        if let Some(v) = merge_commit {
            next.merge_commit = v;
        }
        if let Some(v) = pr_url {
            next.pr_url = v;
        }
        if let Some(v) = rounds_base {
            next.rounds_base = v;
        }
        if let Some(v) = verified_commit {
            next.verified_commit = v;
        }
        if let Some(v) = conflict_rounds {
            next.conflict_rounds = v;
        }
        if let Some(v) = conflict_files {
            next.conflict_files = v;
        }
        if let Some(v) = round_start {
            next.round_start = v;
        }
        next.version = self.version + 1;
        next.updated_at = now;
        Ok(next)
    }
}
