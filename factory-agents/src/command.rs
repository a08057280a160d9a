//! [`CommandAgent`]: any shell command line plays a role, prompt on stdin, output on stdout.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use factory_core::agent::AgentRole;
use factory_core::ports::{
    AgentBackend, AgentError, AgentRequest, AgentResponse, Clock, CommandSpec, SandboxError,
    TranscriptKind,
};

use crate::process::ProcessSandbox;
use crate::transcript::Transcript;

/// How much of stderr an [`AgentError::Exited`] keeps: the end, where the reason usually is.
const STDERR_TAIL_CHARS: usize = 2000;

/// Runs a shell command line as the agent, the way README "Agent formats" describes: `sh -c` in
/// the request's workdir, the prompt on stdin, `FACTORY_*` variables in the environment, the
/// role's output on stdout. Runs through a [`ProcessSandbox`]: a worker or reviewer may write
/// its workdir (the task's worktree) and spec dir, a planner (in the repository root) neither;
/// everything it started is ended when it exits or times out.
pub struct CommandAgent {
    command: String,
    timeout: Duration,
    clock: Arc<dyn Clock>,
    sandbox: ProcessSandbox,
}

impl CommandAgent {
    /// An agent that runs `command`, killed after `timeout`; transcript times come from `clock`.
    /// Runs through [`ProcessSandbox::new`] unless [`CommandAgent::with_sandbox`] says otherwise.
    pub fn new(command: impl Into<String>, timeout: Duration, clock: Arc<dyn Clock>) -> Self {
        CommandAgent {
            command: command.into(),
            timeout,
            clock,
            sandbox: ProcessSandbox::new(),
        }
    }

    /// Runs the command through `sandbox` (its supervisor, sandbox settings and limits).
    pub fn with_sandbox(mut self, sandbox: ProcessSandbox) -> Self {
        self.sandbox = sandbox;
        self
    }
}

impl std::fmt::Debug for CommandAgent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommandAgent")
            .field("command", &self.command)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl AgentBackend for CommandAgent {
    fn name(&self) -> &str {
        "command"
    }

    async fn run(&self, request: AgentRequest) -> Result<AgentResponse, AgentError> {
        let mut transcript = Transcript::start(self.clock.clone(), &request.prompt);
        let path = |p: &Option<std::path::PathBuf>| {
            p.as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        };
        let env = vec![
            ("FACTORY_ROLE".to_owned(), request.role.to_string()),
            (
                "FACTORY_SPEC_ID".to_owned(),
                request
                    .spec_id
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default(),
            ),
            ("FACTORY_SPEC_DIR".to_owned(), path(&request.spec_dir)),
            (
                "FACTORY_WORKTREE".to_owned(),
                request.workdir.display().to_string(),
            ),
            ("FACTORY_AGENT_ID".to_owned(), request.agent_id.to_string()),
            ("FACTORY_ROUND".to_owned(), request.round.to_string()),
            (
                "FACTORY_TASK_KEY".to_owned(),
                request.task_key.clone().unwrap_or_default(),
            ),
        ];
        let writable = match request.role {
            // The planner runs in the repository root: the user's checkout and `.git`.
            AgentRole::Planner => Vec::new(),
            AgentRole::Worker | AgentRole::Reviewer => std::iter::once(request.workdir.clone())
                .chain(request.spec_dir.clone())
                .collect(),
        };
        let spec = CommandSpec {
            command: self.command.clone(),
            cwd: request.workdir,
            env,
            stdin: Some(request.prompt),
            timeout: self.timeout,
            writable,
            output_log: None,
        };
        let output = self.sandbox.run_command(&spec).await.map_err(|e| match e {
            SandboxError::MissingCwd(dir) => AgentError::Spawn {
                command: self.command.clone(),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("working directory {} does not exist", dir.display()),
                ),
            },
            SandboxError::Spawn { command, source } => AgentError::Spawn { command, source },
            e @ (SandboxError::Unenforceable(_) | SandboxError::Supervisor(_)) => {
                AgentError::Spawn {
                    command: self.command.clone(),
                    source: std::io::Error::other(e.to_string()),
                }
            }
        })?;
        if output.timed_out {
            return Err(AgentError::Timeout(whole_seconds(self.timeout)));
        }
        match output.exit_code {
            Some(0) => {
                transcript.lines(TranscriptKind::Stdout, &output.stdout);
                transcript.lines(TranscriptKind::Stderr, &output.stderr);
                Ok(AgentResponse {
                    output: output.stdout,
                    transcript: transcript.exit(0, output.duration),
                })
            }
            code => Err(AgentError::Exited {
                code,
                stderr: tail(&output.stderr, STDERR_TAIL_CHARS),
                stdout: output.stdout,
            }),
        }
    }
}

/// The timeout in seconds, rounded up so a sub-second timeout never reads "0 s".
fn whole_seconds(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// The last `max` characters of `text`, trimmed.
fn tail(text: &str, max: usize) -> String {
    let text = text.trim();
    let skip = text.chars().count().saturating_sub(max);
    text.chars()
        .skip(skip)
        .collect::<String>()
        .trim()
        .to_owned()
}
