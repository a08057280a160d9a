//! Factory's agent backends and local sandbox: the implementations of the
//! [`AgentBackend`] and [`Sandbox`](factory_core::ports::Sandbox)
//! ports that need no network.
//!
//! - [`ProcessSandbox`] runs verify commands as local processes, each under a [`supervise`]d
//!   process that ends everything the command started (even after `setsid`, even when Factory is
//!   killed), inside a Landlock filesystem sandbox, with bounded output capture.
//! - [`CommandAgent`] runs any shell command line as an agent (prompt on stdin, output on stdout),
//!   through the same process runner.
//! - [`end_leftover_children`] ends the commands an earlier Factory left running (each running
//!   command is recorded under [`ProcessOptions::children_dir`]).
//!
//! A program that runs commands this way must let itself be started as the supervisor: call
//! [`supervise::run_if_requested`] first in `main`, or point [`ProcessOptions::supervisor`] at the
//! `factory-supervise` binary.
//! - [`ScriptedAgent`] replays an [`AgentScript`] deterministically, for demos and tests.
//! - [`build_backend`] turns a role's `[agent]` configuration into one of them.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use factory_core::agent::AgentRole;
use factory_core::config::{AgentKind, RoleAgent};
use factory_core::ports::{AgentBackend, Clock};

mod capture;
mod children;
mod command;
mod fs_sandbox;
mod process;
mod procfs;
mod script;
mod scripted;
pub mod supervise;
mod transcript;

pub use children::{ChildRecord, EndedChild, end_leftover_children, write_record};
pub use command::CommandAgent;
pub use fs_sandbox::{LandlockSupport, SandboxReport};
pub use process::{ProcessOptions, ProcessSandbox};
pub use script::{
    AgentScript, EditAction, FileEdit, ScriptError, ScriptedPlan, ScriptedReview, ScriptedRound,
    ScriptedTask,
};
pub use scripted::{SAW_FIX_REQUEST, ScriptedAgent};
pub use supervise::Supervisor;

/// A role's agent configuration that cannot be turned into a backend.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// `kind = "command"` without a command line.
    #[error(
        "no agent command configured for the {0} role: set [agent] command (or [agent.{0}] command) in .factory/config.toml"
    )]
    MissingCommand(AgentRole),
    /// `kind = "scripted"` without a script file.
    #[error(
        "no agent script configured for the {0} role: set [agent] script (or [agent.{0}] script) in .factory/config.toml"
    )]
    MissingScript(AgentRole),
    /// The script file is unreadable or invalid.
    #[error(transparent)]
    Script(#[from] ScriptError),
}

/// The backend `role` asks for. A scripted agent's script (relative paths are relative to
/// `factory_dir`, i.e. `.factory/`) is read and checked now, so a bad file is reported before
/// any work starts. Command agents run through `sandbox`.
pub fn build_backend(
    role: &RoleAgent,
    factory_dir: &Path,
    clock: Arc<dyn Clock>,
    sandbox: &ProcessSandbox,
) -> Result<Arc<dyn AgentBackend>, BuildError> {
    match role.kind {
        AgentKind::Command => {
            let command = role
                .command
                .as_deref()
                .filter(|c| !c.trim().is_empty())
                .ok_or(BuildError::MissingCommand(role.role))?;
            Ok(Arc::new(
                CommandAgent::new(command, Duration::from_secs(role.timeout_secs), clock)
                    .with_sandbox(sandbox.clone()),
            ))
        }
        AgentKind::Scripted => {
            let script = role
                .script
                .as_deref()
                .ok_or(BuildError::MissingScript(role.role))?;
            let script = AgentScript::load(&factory_dir.join(script))?;
            Ok(Arc::new(ScriptedAgent::new(script, clock)))
        }
    }
}
