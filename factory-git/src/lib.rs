//! Factory's [`Vcs`](factory_core::ports::Vcs) port on a local git repository.
//!
//! Reads (refs, ancestry, status, tree diffs, the worktree registry) go through gix, in-process,
//! which is much cheaper than starting git; every write (worktrees, commits, rebases, merges, ref
//! updates) goes through the `git` binary with Factory's identity, hooks disabled and signing
//! off, so what Factory does never depends on the user's global git configuration.
//!
//! The invariant this crate exists to keep: the user's working tree, index and uncommitted files
//! are never modified or lost. Merges are made in a dedicated worktree; the user's checkout is
//! only fast-forwarded to a merge when none of their changes is in a path the merge touches.

mod cli;
mod health;
mod merge;
mod read;
mod repo;
mod worktree;

pub use repo::{GitRepo, discover_root};
