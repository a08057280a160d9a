use std::path::PathBuf;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::Timestamp;
use crate::agent::{AgentId, AgentRole};
use crate::spec::SpecId;

/// One request to an agent. The prompt carries everything the role needs; the other fields are
/// also exported to command agents as environment variables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentRequest {
    /// Planner, worker or reviewer.
    pub role: AgentRole,
    /// Which agent instance.
    pub agent_id: AgentId,
    /// The full prompt.
    pub prompt: String,
    /// Where the agent runs: the task worktree (worker, reviewer) or the repository (planner).
    pub workdir: PathBuf,
    /// The task's spec id (not for the planner).
    pub spec_id: Option<SpecId>,
    /// `.factory/specs/<spec-id>` (not for the planner).
    pub spec_dir: Option<PathBuf>,
    /// The planner's key for the task (not for the planner).
    pub task_key: Option<String>,
    /// 1-based round within the task's QA loop (1 for the planner).
    pub round: u32,
}

/// What kind of transcript line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TranscriptKind {
    /// The prompt sent.
    Prompt,
    /// A line the agent wrote to stdout.
    Stdout,
    /// A line the agent wrote to stderr.
    Stderr,
    /// A file the agent changed.
    Edit,
    /// How the run ended.
    Exit,
}

/// One normalized transcript line, written as JSON to `.factory/logs/<spec-id>/`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TranscriptEntry {
    /// When.
    pub at: Timestamp,
    /// What.
    pub kind: TranscriptKind,
    /// The text.
    pub text: String,
}

/// What an agent run produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentResponse {
    /// The agent's final output (stdout), parsed by the orchestrator per role.
    pub output: String,
    /// Everything that happened, normalized.
    pub transcript: Vec<TranscriptEntry>,
}

/// Why an agent run failed.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The agent process exited non-zero.
    #[error("agent {}: {stderr}", exit_description(*.code))]
    Exited {
        /// Exit code (None if killed).
        code: Option<i32>,
        /// The tail of stderr.
        stderr: String,
        /// What it printed on stdout.
        stdout: String,
    },
    /// The agent ran longer than allowed and was killed.
    #[error("agent timed out after {0} s; raise [agent] timeout_secs in .factory/config.toml")]
    Timeout(u64),
    /// The agent could not be started.
    #[error("could not start agent `{command}`: {source}")]
    Spawn {
        /// The command line.
        command: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A scripted agent has no entry for this request, or its script is invalid.
    #[error("agent script: {0}")]
    Script(String),
    /// Applying the agent's edits failed.
    #[error("agent could not edit {path}: {source}")]
    Edit {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// "exited with code 3", or "was killed by a signal" when there is no code.
pub fn exit_description(code: Option<i32>) -> String {
    match code {
        Some(code) => format!("exited with code {code}"),
        None => "was killed by a signal".to_owned(),
    }
}

/// Something that can play a role: a scripted stand-in, a command, a coding CLI, a model API.
#[async_trait]
pub trait AgentBackend: Send + Sync {
    /// Short name for logs and status (`scripted`, `command`, …).
    fn name(&self) -> &str;
    /// Runs one request to completion. Worker runs edit files in `request.workdir`; Factory
    /// commits them afterwards.
    async fn run(&self, request: AgentRequest) -> Result<AgentResponse, AgentError>;
}
