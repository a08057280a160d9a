//! End-to-end tests of the `factory` binary against real git repositories, a real SQLite file,
//! real verify commands and agents played by small shell scripts.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod bad_input;
mod conflict;
mod containment;
mod demo;
mod fixture;
mod gc;
mod leftovers;
mod limits;
mod qa_loop;
mod queue_props;
mod resume;
mod safety;
mod trust;
