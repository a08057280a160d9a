//! Factory's [`Vcs`](factory_core::ports::Vcs) port on a local git repository.
//!
//! Reads (refs, ancestry, status, tree diffs, the worktree registry) go through gix, in-process,
//! which is much cheaper than starting git; every write (worktrees, commits, rebases, merges, ref
//! updates) goes through the `git` binary with Factory's identity, hooks disabled and signing
//! off, so what Factory does never depends on the user's global git configuration.
//!
//! The invariants this crate exists to keep:
//! - the user's working tree, index and uncommitted files are never modified or lost. Merges are
//!   made in a dedicated worktree; the user's checkout is only moved to a merge when it has main
//!   checked out at that instant and none of their changes is in a path the merge touches;
//! - no ref moves but Factory's own branches and main, and main only by compare-and-swap from the
//!   tip the merge was made on, to a merge of exactly the commit that passed verify;
//! - git never discovers a repository: every call names its git directory and work tree, and a
//!   task worktree is checked (`health.rs`) to still be the task's worktree on the task's branch
//!   before anything is committed or rebased there.

mod cleanup;
mod cli;
mod conflict;
mod head_lock;
mod health;
mod merge;
mod preview;
mod read;
mod repo;
mod stale_locks;
mod worktree;

pub use repo::{GitRepo, discover_root};

/// Whether `path` is a bare repository (one with no working tree), which Factory cannot use.
pub fn is_bare(path: &std::path::Path) -> bool {
    gix::open(path).is_ok_and(|repo| repo.is_bare())
}

/// Whether the repository containing `path` has at least one local branch with a commit.
pub fn has_commits(path: &std::path::Path) -> bool {
    let Ok(repo) = gix::discover(path) else {
        return false;
    };
    let Ok(refs) = repo.references() else {
        return false;
    };
    refs.local_branches()
        .map(|mut branches| branches.next().is_some())
        .unwrap_or(false)
}
