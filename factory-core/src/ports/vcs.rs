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
    /// Already contained main, nothing to do; the branch's tip.
    UpToDate(CommitId),
    /// Rebased onto main; the new tip.
    Rebased(CommitId),
    /// Rebase hit conflicts and was aborted; the branch is as it was.
    Conflict {
        /// Paths in conflict.
        files: Vec<String>,
    },
}

/// What [`Vcs::update_branch`] did: the rebase's outcome, and what it had to throw away first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BranchUpdate {
    /// Up to date, rebased, or in conflict.
    pub outcome: UpdateOutcome,
    /// Uncommitted paths in the worktree (modified, staged or untracked, not ignored) that were
    /// discarded to bring it back to the branch's committed state before rebasing: typically
    /// files the verify command rewrote. Log them; the merge only ever takes committed work.
    pub discarded: Vec<String>,
}

/// Result of a `--no-ff` merge into main.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MergeOutcome {
    /// Main now points at this merge commit.
    Merged(CommitId),
    /// The verified commit was already on main (a retried step, or the user merged the branch
    /// by hand); nothing was done. The commit on main's first-parent chain that brought it in:
    /// the merge commit, or the verified commit itself when it was fast-forwarded.
    AlreadyMerged(CommitId),
    /// The merge cannot happen without touching the user's uncommitted files, or the user's
    /// checkout is in the middle of rebasing main, merging (cherry-picking, reverting) into it or
    /// bisecting from it, or a git command holds its `HEAD.lock`; main is unchanged. Try again
    /// later.
    Waiting {
        /// Why, for `factory status`.
        reason: String,
        /// The user's dirty paths the merge would touch (empty when waiting for something else).
        files: Vec<String>,
    },
    /// The branch does not merge cleanly into main; main is unchanged.
    Conflict {
        /// Paths in conflict.
        files: Vec<String>,
    },
    /// The branch's tip is no longer the commit that passed verify (someone committed on it or
    /// moved it); nothing was merged. Verify the new tip before merging it.
    TipMoved {
        /// The verified commit the caller asked to merge.
        expected: CommitId,
        /// The branch's tip now; `None` when the branch is gone.
        actual: Option<CommitId>,
    },
    /// Main moved between reading it and moving it (the compare-and-swap lost, e.g. the user
    /// committed on main); nothing was changed. Bring the branch up to date, re-verify, retry.
    MainMoved {
        /// The tip the merge was made on.
        expected: CommitId,
        /// Main's tip now.
        actual: Option<CommitId>,
    },
}

/// Why a task worktree can no longer be trusted: something (usually the agent working in it)
/// broke the link between the directory and the task's branch. Git commands run there would
/// act on the wrong repository or branch, so the task is blocked instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorktreeDamage {
    /// The worktree directory is gone.
    Missing,
    /// The directory is no longer the registered worktree: its `.git` file is missing, is a
    /// directory (a `git init` there), or points elsewhere; or git has no registration for it.
    NotAWorktree {
        /// What is wrong, in words.
        detail: String,
    },
    /// The worktree has another branch checked out.
    WrongBranch {
        /// The branch it has checked out (full ref name).
        head: String,
    },
    /// The worktree's `HEAD` is detached (or unreadable).
    DetachedHead,
    /// A repository that is not a submodule of the task sits inside the worktree; committing
    /// would record it as a dangling gitlink.
    NestedRepository {
        /// Its path, relative to the worktree.
        path: String,
    },
}

impl std::fmt::Display for WorktreeDamage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WorktreeDamage::Missing => f.write_str("the worktree directory is gone"),
            WorktreeDamage::NotAWorktree { detail } => {
                write!(f, "it is no longer the task's git worktree: {detail}")
            }
            WorktreeDamage::WrongBranch { head } => {
                write!(f, "its HEAD left the task branch for `{head}`")
            }
            WorktreeDamage::DetachedHead => f.write_str("its HEAD left the task branch (detached)"),
            WorktreeDamage::NestedRepository { path } => {
                write!(f, "it contains a nested git repository at `{path}`")
            }
        }
    }
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
    #[error("`git {command}` failed ({}): {stderr}", exit_text(*.code))]
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
    /// A task worktree is damaged; nothing was done in it. Block the task with this reason;
    /// the rest of the run is unaffected.
    #[error("worktree {} damaged: {damage}; nothing was committed or merged from it", path.display())]
    WorktreeDamaged {
        /// The worktree.
        path: PathBuf,
        /// What is wrong with it.
        damage: WorktreeDamage,
    },
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

/// How a process ended, for people: "exit code 128", or "killed by a signal".
fn exit_text(code: Option<i32>) -> String {
    match code {
        Some(code) => format!("exit code {code}"),
        None => "killed by a signal".to_owned(),
    }
}

/// The repository. Reads may use a git library; writes go through the git CLI. Invariants: no
/// method modifies the user's working tree, index or uncommitted files (merges happen in a
/// dedicated worktree and only fast-forward the user's checkout when that touches none of their
/// changes); every git command on a task worktree names that worktree's git directory and work
/// tree explicitly, after checking it is still the task's worktree on the task's branch; main
/// moves only by compare-and-swap from the tip the merge was made on.
#[async_trait]
pub trait Vcs: Send + Sync {
    /// The tip of `branch`, or `None` if it does not exist.
    async fn branch_head(&self, branch: &str) -> Result<Option<CommitId>, VcsError>;

    /// Creates (or, if it already exists for this branch, reuses) a worktree at `path` on
    /// `branch`, creating the branch from `base` if needed, with the repository's submodules
    /// checked out in it.
    async fn create_worktree(&self, path: &Path, branch: &str, base: &str) -> Result<(), VcsError>;

    /// Removes the worktree at `path` (pruning its registration if the directory is gone); the
    /// branch stays. Idempotent.
    async fn remove_worktree(&self, path: &Path) -> Result<(), VcsError>;

    /// Every worktree of the repository, the main checkout first.
    async fn list_worktrees(&self) -> Result<Vec<PathBuf>, VcsError>;

    /// Removes the lock files an interrupted git command left (a crash, a signal in git's first
    /// instants) in Factory's own `worktrees` and on their `branches`, once no process runs in
    /// those worktrees any more; git refuses to work where a lock is left. Also clears the
    /// `HEAD.lock` a killed Factory left in the user's checkout while moving it to a merge into
    /// `main`, putting the checkout back where `main` is. Called by a run, which holds the run
    /// lease, before it touches any of them. Returns the files removed.
    async fn clear_stale_locks(
        &self,
        main: &str,
        worktrees: &[PathBuf],
        branches: &[String],
    ) -> Result<Vec<PathBuf>, VcsError> {
        let _ = (main, worktrees, branches);
        Ok(Vec::new())
    }

    /// What, if anything, is wrong with the task worktree at `path` that should be on `branch`;
    /// `None` when it is healthy. The checks [`commit_all`](Vcs::commit_all) and
    /// [`update_branch`](Vcs::update_branch) make before touching it.
    async fn worktree_damage(
        &self,
        path: &Path,
        branch: &str,
    ) -> Result<Option<WorktreeDamage>, VcsError>;

    /// Stages everything in the task worktree at `worktree` (respecting .gitignore) and commits
    /// it on `branch` with Factory's identity. `None` when there was nothing to commit — which
    /// does not mean the task changed nothing: the agent may have committed itself, so compare
    /// the branch's tip with the tip before the round. Fails with
    /// [`VcsError::WorktreeDamaged`] (committing nothing anywhere) when the worktree is not
    /// `branch`'s worktree any more.
    async fn commit_all(
        &self,
        worktree: &Path,
        branch: &str,
        message: &str,
    ) -> Result<Option<CommitId>, VcsError>;

    /// Paths changed on `to` since it forked from `from` (`git diff from...to`): what a branch
    /// changes, even after `from` has moved on.
    async fn changed_paths(&self, from: &str, to: &str) -> Result<Vec<String>, VcsError>;

    /// Rebases `branch`, checked out in the task worktree `worktree`, onto `onto`; aborts
    /// cleanly on conflict. First brings the worktree back to the branch's committed state
    /// (what verify rewrote is discarded and listed in [`BranchUpdate::discarded`]); fails with
    /// [`VcsError::WorktreeDamaged`] when the worktree is not `branch`'s worktree any more.
    async fn update_branch(
        &self,
        worktree: &Path,
        branch: &str,
        onto: &str,
    ) -> Result<BranchUpdate, VcsError>;

    /// Merges exactly `verified` — the commit that passed verify, which must still be
    /// `branch`'s tip ([`MergeOutcome::TipMoved`] otherwise) — into `into` with `--no-ff` and
    /// `message`. The merge commit is made in Factory's merge worktree; `into` then moves by
    /// compare-and-swap from the tip the merge was made on ([`MergeOutcome::MainMoved`] if it
    /// lost). No other ref moves. The user's checkout follows only if it has `into` checked out
    /// at that instant and is clean where the merge changes files; if it is dirty there, or in
    /// the middle of a rebase of `into`, a merge, cherry-pick or revert into it or a bisect from
    /// it, returns [`MergeOutcome::Waiting`] and changes nothing. A `verified` commit already on `into`
    /// gives [`MergeOutcome::AlreadyMerged`] with the commit that brought it in.
    async fn merge_verified(
        &self,
        branch: &str,
        verified: &CommitId,
        into: &str,
        message: &str,
    ) -> Result<MergeOutcome, VcsError>;

    /// Whether `rev` (a branch or a commit id) is reachable from `into`.
    async fn is_merged(&self, rev: &str, into: &str) -> Result<bool, VcsError>;
}
