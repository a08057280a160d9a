//! factory-agents' integration tests: real `sh` processes in temp dirs, real files, no mocks.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod build;
mod command;
mod containment;
mod fixture;
mod fs_sandbox;
mod leftovers;
mod output;
mod sandbox;
mod scripted;
