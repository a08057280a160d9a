//! Why orchestration stopped with an error. Task-level failures (an agent crashed, QA never
//! passed, a worktree was damaged) are not errors: they block the task, record the reason and the
//! run goes on. Messages state what happened; frontends add what to do about it.

use std::path::PathBuf;

use crate::epic::{EpicId, EpicState, InvalidEpic};
use crate::lease::RunLease;
use crate::ports::{SandboxError, StoreError, VcsError};
use crate::spec::SpecId;
use crate::task::TaskState;

/// Why an orchestration call failed.
#[derive(Debug, thiserror::Error)]
pub enum OrchestrateError {
    /// The epic text was refused.
    #[error(transparent)]
    InvalidEpic(#[from] InvalidEpic),
    /// No task has this id or spec id.
    #[error("no task `{0}`")]
    UnknownTask(String),
    /// No epic has this id.
    #[error("no epic `{0}`")]
    UnknownEpic(String),
    /// Mail to an address no agent has or will have.
    #[error("no agent `{to}`")]
    UnknownRecipient {
        /// The address given.
        to: String,
    },
    /// The task is not in a state the request applies to.
    #[error("task {spec_id} is {state}: {why}")]
    WrongTaskState {
        /// The task.
        spec_id: SpecId,
        /// Its state.
        state: TaskState,
        /// Why the request does not apply.
        why: &'static str,
    },
    /// The epic is not in a state the request applies to.
    #[error("epic {epic} is {state}: {why}")]
    WrongEpicState {
        /// The epic.
        epic: EpicId,
        /// Its state.
        state: EpicState,
        /// Why the request does not apply.
        why: &'static str,
    },
    /// The verify command is not installed.
    #[error("verify command not found: `{command}`")]
    VerifyCommandNotFound {
        /// The configured command.
        command: String,
    },
    /// Another run holds the repository's run lease.
    #[error("the repository is already being run by {}", .0.holder)]
    AlreadyRunning(Box<RunLease>),
    /// This run's lease was taken over (it stalled past its expiry); it stopped writing.
    #[error("this run lost its lease to another run and stopped")]
    LeaseLost,
    /// The planner failed or printed something that is not a plan (reported per epic by
    /// [`super::RunReport`]; an error only from [`super::Factory::plan_epic_now`]).
    #[error("planning epic {epic} failed: {reason}")]
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

impl OrchestrateError {
    /// Whether this error concerns one task only (its worktree, its commands, its files), so
    /// the task is blocked with the reason and the run goes on. Store and internal failures end
    /// the run: nothing can be recorded reliably without the store.
    pub(crate) fn is_task_local(&self) -> bool {
        matches!(
            self,
            OrchestrateError::Vcs(_)
                | OrchestrateError::Sandbox(_)
                | OrchestrateError::Artifact { .. }
        )
    }
}
