use std::path::{Path, PathBuf};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::agent::exit_description;

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

/// A conflict with main handed to the worker: what [`Vcs::start_conflict_round`] left in the
/// task's worktree for it to resolve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConflictRound {
    /// Main's tip the task's change is being merged with.
    pub onto: CommitId,
    /// The branch's tip before the round: the task's change as it was.
    pub task_tip: CommitId,
    /// Paths git could not merge, with both sides; empty when everything merged cleanly.
    pub files: Vec<ConflictFile>,
}

/// One path in conflict, with what each side did to it since they forked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConflictFile {
    /// Path relative to the worktree.
    pub path: String,
    /// `git diff` of the task's change to this path (capped).
    pub task_change: String,
    /// `git diff` of main's change to this path (capped).
    pub main_change: String,
}

/// A local branch and the commit it points to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BranchTip {
    /// Short name, e.g. `factory/001-add-healthz`.
    pub name: String,
    /// Its tip.
    pub tip: CommitId,
}

/// What [`Vcs::delete_branch`] did. Only `Deleted` changed anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BranchDeletion {
    /// The branch pointed at the expected commit and is gone now.
    Deleted,
    /// There was no such branch (already deleted).
    Missing,
    /// The branch points elsewhere: it was left alone.
    Moved {
        /// Its tip now.
        actual: CommitId,
    },
    /// A checkout (the user's, or a worktree) has the branch checked out: it was left alone.
    CheckedOut {
        /// That checkout's top-level directory.
        worktree: PathBuf,
    },
}

/// One checkout registered in the repository, as `git worktree list` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorktreeInfo {
    /// Its top-level directory, as git records it.
    pub path: PathBuf,
    /// The branch checked out (short name); `None` when `HEAD` is detached.
    pub branch: Option<String>,
    /// The commit `HEAD` points to; `None` on an unborn branch.
    pub head: Option<CommitId>,
    /// Locked with `git worktree lock`: git refuses to remove or prune it.
    pub locked: bool,
    /// Its directory is gone; only the registration under `.git/worktrees/` is left.
    pub prunable: bool,
}

/// The user's checkout (the repository's main worktree) as it is now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckoutStatus {
    /// The branch checked out (short name); `None` when detached.
    pub branch: Option<String>,
    /// Uncommitted paths: modified, staged, conflicted, and untracked files that are not
    /// ignored; sorted, relative to the repository root.
    pub dirty: Vec<String>,
}

/// A file that a change adds, or makes bigger, past a size limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OversizedFile {
    /// Relative to the repository root, `/`-separated.
    pub path: String,
    /// Its size in the change's last commit.
    pub bytes: u64,
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

/// Whether a dirty path and a changed path are the same, or one lies inside the other (a
/// directory and a file below it): a merge changing `changed` touches the user's `dirty`.
pub fn paths_overlap(dirty: &str, changed: &str) -> bool {
    let dirty = dirty.trim_end_matches('/');
    dirty == changed
        || changed
            .strip_prefix(dirty)
            .is_some_and(|rest| rest.starts_with('/'))
        || dirty
            .strip_prefix(changed)
            .is_some_and(|rest| rest.starts_with('/'))
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
    #[error("`git {command}` {}: {stderr}", exit_description(*.code))]
    Git {
        /// The arguments, joined.
        command: String,
        /// Exit code; `None` when git was killed by a signal.
        code: Option<i32>,
        /// What git printed on stderr (trimmed).
        stderr: String,
    },
    /// Factory did not do a git operation, because git would have misread the request or the
    /// repository's state does not allow it (a name that looks like an option, a directory that
    /// is another worktree, branches without a common ancestor, a ref that could not be swapped).
    #[error("`git {command}` not done: {reason}")]
    Refused {
        /// The operation, as the git command it stands for.
        command: String,
        /// Why not.
        reason: String,
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
    ) -> Result<Vec<PathBuf>, VcsError>;

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
    /// the branch's tip with the tip before the round. While a conflict round is in progress
    /// ([`start_conflict_round`](Vcs::start_conflict_round)) the commit's only parent is the
    /// main commit being merged with. Fails with
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

    /// Hands a conflict with `onto` to the worker: brings the task worktree `worktree` back to
    /// `branch`'s committed state, then starts merging `onto` into it without committing, so the
    /// worktree holds the task's change combined with main, with conflict markers where git
    /// could not combine them. The branch does not move. The next [`commit_all`](Vcs::commit_all)
    /// there commits the resolution as one commit on top of `onto` (the task's change, rebased
    /// by hand), so the branch stays a plain line of commits on main. A later
    /// [`update_branch`](Vcs::update_branch) discards an unresolved round.
    async fn start_conflict_round(
        &self,
        worktree: &Path,
        branch: &str,
        onto: &str,
    ) -> Result<ConflictRound, VcsError>;

    /// The files `tip` adds, or grows, since it forked from `base` (`git diff base...tip`) whose
    /// size in `tip` is over `max_bytes`, in path order. Deleted files, and files that were
    /// already that big and did not grow, are not listed; nor are symbolic links or submodules.
    async fn oversized_files(
        &self,
        base: &str,
        tip: &str,
        max_bytes: u64,
    ) -> Result<Vec<OversizedFile>, VcsError>;

    /// Whether `a` and `b` make the same change since each forked from `base` (`git diff
    /// base...a` and `git diff base...b` add and remove the same lines of the same files, at
    /// whatever line numbers, whatever the lines around them): how a branch
    /// rebased by an interrupted merge step is told from one moved some other way.
    async fn same_change(&self, base: &str, a: &str, b: &str) -> Result<bool, VcsError>;

    /// Whether `rev` (a branch or a commit id) is reachable from `into`.
    async fn is_merged(&self, rev: &str, into: &str) -> Result<bool, VcsError>;

    /// The local branches whose full ref name starts with `prefix` (`refs/heads/factory/`;
    /// a prefix without `refs/` is taken below `refs/heads/`), sorted by name.
    async fn branches(&self, prefix: &str) -> Result<Vec<BranchTip>, VcsError>;

    /// Deletes `branch` only if its tip is `expected` (a compare-and-swap: a branch someone
    /// moved meanwhile is [`BranchDeletion::Moved`] and stays), and only if no checkout has it
    /// checked out. Nothing else changes.
    async fn delete_branch(
        &self,
        branch: &str,
        expected: &CommitId,
    ) -> Result<BranchDeletion, VcsError>;

    /// How many commits reachable from `rev` (a commit id or branch) are reachable from no
    /// local branch except those named in `ignoring`: the commits that deleting `rev`'s
    /// branch (and the `ignoring` ones) would leave on no branch. 0 when all of them are
    /// safe elsewhere, e.g. merged into main.
    async fn commits_only_on(&self, rev: &str, ignoring: &[String]) -> Result<u64, VcsError>;

    /// Every checkout registered in the repository, the main checkout first, with its branch,
    /// head commit and whether it is locked or its directory gone.
    async fn worktrees(&self) -> Result<Vec<WorktreeInfo>, VcsError>;

    /// Uncommitted paths (modified, staged, conflicted, untracked and not ignored) in the
    /// registered linked worktree at `path`. Fails with [`VcsError::WorktreeDamaged`] when the
    /// directory is not (any more) a worktree of this repository, so it cannot be inspected.
    async fn uncommitted_paths(&self, path: &Path) -> Result<Vec<String>, VcsError>;

    /// Forgets the registration of the linked worktree at `path` whose directory is gone,
    /// leaving every other registration alone (unlike `git worktree prune`). Idempotent.
    async fn forget_worktree(&self, path: &Path) -> Result<(), VcsError>;

    /// The paths in which a three-way merge of `rev` into `into` would conflict; empty when it
    /// would merge cleanly. Read-only: writes no ref, no checkout, no object.
    async fn merge_conflicts(&self, rev: &str, into: &str) -> Result<Vec<String>, VcsError>;

    /// The user's checkout: which branch it has checked out and what is uncommitted there.
    async fn checkout_status(&self) -> Result<CheckoutStatus, VcsError>;
}

#[cfg(test)]
mod tests {
    use super::VcsError;

    #[test]
    fn a_failed_git_command_reads_for_people() {
        let git = |code| VcsError::Git {
            command: "rebase --quiet main".into(),
            code,
            stderr: "fatal: not possible".into(),
        };
        assert_eq!(
            git(Some(128)).to_string(),
            "`git rebase --quiet main` exited with code 128: fatal: not possible"
        );
        assert_eq!(
            git(None).to_string(),
            "`git rebase --quiet main` was killed by a signal: fatal: not possible"
        );
        let refused = VcsError::Refused {
            command: "worktree add /x -b".into(),
            reason: "`-b` is not a valid branch name".into(),
        };
        assert_eq!(
            refused.to_string(),
            "`git worktree add /x -b` not done: `-b` is not a valid branch name"
        );
    }
}
