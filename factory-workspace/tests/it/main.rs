//! factory-workspace's integration tests: opening repositories from any path inside them, with
//! real git in temporary directories.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod killed_git;
mod open;
mod runs;
