use std::path::{Path, PathBuf};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// A full hex commit id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CommitId(pub String);

impl std::fmt::Display for CommitId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Author and committer of every commit Factory makes; never read from the user's git config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GitIdentity {
    /// Name.
    pub name: String,
    /// Email.
    pub email: String,
}

/// Result of bringing a task branch up to date with main.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpdateOutcome {
    /// Already contained main, nothing to do.
    UpToDate,
    /// Rebased onto main; the new tip.
    Rebased(CommitId),
    /// Rebase hit conflicts and was aborted; the branch is as it was.
    Conflict {
        /// Paths in conflict.
        files: Vec<String>,
    },
}

/// Result of a `--no-ff` merge into main.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MergeOutcome {
    /// Main now points at this merge commit.
    Merged(CommitId),
    /// The branch was already merged earlier (a retried step); nothing was done.
    AlreadyMerged(CommitId),
    /// The merge cannot happen without touching the user's uncommitted files; main is unchanged.
    /// Try again once the user has committed or stashed them.
    Waiting {
        /// Why, for `factory status`.
        reason: String,
        /// The user's dirty paths the merge would touch.
        files: Vec<String>,
    },
    /// The branch does not merge cleanly into main; main is unchanged.
    Conflict {
        /// Paths in conflict.
        files: Vec<String>,
    },
}

/// Why a git operation failed.
#[derive(Debug, thiserror::Error)]
pub enum VcsError {
    /// The path is not inside a git repository.
    #[error("{0} is not a git repository: run `git init` there first, or pass a path inside one")]
    NotARepository(PathBuf),
    /// A branch or ref was expected but is missing.
    #[error(
        "branch `{0}` does not exist: create it or set [git] main_branch in .factory/config.toml"
    )]
    MissingBranch(String),
    /// A git command failed.
    #[error("`git {command}` failed (exit {code:?}): {stderr}")]
    Git {
        /// The arguments, joined.
        command: String,
        /// Exit code.
        code: Option<i32>,
        /// What git printed on stderr (trimmed).
        stderr: String,
    },
    /// Reading the repository failed.
    #[error("reading the repository failed: {0}")]
    Read(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// I/O failed (spawning git, touching a worktree).
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// The repository. Reads may use a git library; writes go through the git CLI. Invariant: no
/// method modifies the user's working tree, index or uncommitted files; merges happen in a
/// dedicated worktree and only fast-forward the user's checkout when that touches none of their
/// changes.
#[async_trait]
pub trait Vcs: Send + Sync {
    /// The tip of `branch`, or `None` if it does not exist.
    async fn branch_head(&self, branch: &str) -> Result<Option<CommitId>, VcsError>;

    /// Creates (or, if it already exists for this branch, reuses) a worktree at `path` on
    /// `branch`, creating the branch from `base` if needed.
    async fn create_worktree(&self, path: &Path, branch: &str, base: &str) -> Result<(), VcsError>;

    /// Removes the worktree at `path` (pruning its registration if the directory is gone); the
    /// branch stays. Idempotent.
    async fn remove_worktree(&self, path: &Path) -> Result<(), VcsError>;

    /// Every worktree of the repository, the main checkout first.
    async fn list_worktrees(&self) -> Result<Vec<PathBuf>, VcsError>;

    /// Stages everything in the worktree (respecting .gitignore) and commits it with Factory's
    /// identity. `None` when there was nothing to commit.
    async fn commit_all(
        &self,
        worktree: &Path,
        message: &str,
    ) -> Result<Option<CommitId>, VcsError>;

    /// Paths changed on `to` since it forked from `from` (`git diff from...to`): what a branch
    /// changes, even after `from` has moved on.
    async fn changed_paths(&self, from: &str, to: &str) -> Result<Vec<String>, VcsError>;

    /// Rebases the branch checked out in `worktree` onto `onto`; aborts cleanly on conflict.
    async fn update_branch(&self, worktree: &Path, onto: &str) -> Result<UpdateOutcome, VcsError>;

    /// Merges `branch` into `into` with `--no-ff` and `message`, without touching the user's
    /// working tree or index. If the user has `into` checked out and clean where the merge
    /// changes files, their checkout moves to the new tip; if dirty there, returns
    /// [`MergeOutcome::Waiting`] and changes nothing.
    async fn merge_no_ff(
        &self,
        branch: &str,
        into: &str,
        message: &str,
    ) -> Result<MergeOutcome, VcsError>;

    /// Whether `branch`'s tip is reachable from `into`.
    async fn is_merged(&self, branch: &str, into: &str) -> Result<bool, VcsError>;
}
