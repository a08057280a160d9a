//! factory-git against real git in temporary repositories.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod cleanup;
mod commits;
mod conflict;
mod damage;
mod fixture;
mod landing;
mod merge;
mod sizes;
mod status;
mod update;
mod worktrees;
