//! factory-core's integration tests: state machines, spec ids, agent formats, config, and the
//! repository-wide tidy rules.

mod config;
mod machines;
mod protocol;
mod spec_ids;
mod tidy;
