//! Factory's core: the domain (epics, tasks, specs, agents, mail, decisions), the state machines
//! that keep them legal, the ports every backend implements, and the orchestration that drives an
//! epic from text to merged commits by talking only to those ports.
//!
//! This crate knows no database, git library, HTTP stack or web framework; a tidy test enforces it.

pub mod agent;
pub mod config;
pub mod decision;
pub mod epic;
pub mod event;
pub mod layout;
pub mod lease;
pub mod mail;
pub mod orchestrate;
pub mod plan;
pub mod ports;
pub mod protocol;
pub mod spec;
pub mod task;
pub mod text;

mod transition;

pub use transition::IllegalTransition;

/// Wall-clock instant used throughout the domain; always obtained from a [`ports::Clock`].
pub type Timestamp = chrono::DateTime<chrono::Utc>;
