//! factory-agents' integration tests: real `sh` processes in temp dirs, real files, no mocks.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod build;
mod command;
mod fixture;
mod sandbox;
mod scripted;
