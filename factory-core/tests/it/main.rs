//! factory-core's integration tests: state machines, spec ids, agent formats, config, and the
//! repository-wide tidy rules.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod config;
mod machines;
mod protocol;
mod spec_ids;
mod tidy;
