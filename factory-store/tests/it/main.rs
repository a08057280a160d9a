//! factory-store's integration tests, against real SQLite files in temp dirs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cas;
mod crud;
mod lease;
mod mail_decisions;
mod outbox;
mod plan;
mod props;
mod support;
