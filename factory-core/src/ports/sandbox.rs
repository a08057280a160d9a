use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;

/// A command to run: a shell command line, run by `sh -c` in `cwd`.
///
/// Build one with a struct literal ending in `..CommandSpec::default()`, so fields added later
/// keep their defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommandSpec {
    /// The shell command line.
    pub command: String,
    /// Working directory.
    pub cwd: PathBuf,
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
    /// Written to stdin, then stdin is closed.
    pub stdin: Option<String>,
    /// Killed after this long.
    pub timeout: Duration,
    /// What the command may write besides a temp dir of its own (`$TMPDIR`) and the configured
    /// cache dirs, where the sandbox is enforced. Not even `cwd` is writable unless listed: a
    /// planner in the repository root must not write the user's checkout or `.git`.
    pub writable: Vec<PathBuf>,
    /// Where output past the captured part goes (appended); without it, that output is dropped.
    /// The captured text says which happened.
    pub output_log: Option<PathBuf>,
}

/// What a finished (or killed) command produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandOutput {
    /// Exit code; `None` if killed by a signal or the timeout.
    pub exit_code: Option<i32>,
    /// What was written to stdout (lossy UTF-8), up to the capture limit; past it, a marker line
    /// says how much more there was and where it went.
    pub stdout: String,
    /// What was written to stderr, like `stdout`.
    pub stderr: String,
    /// Wall time.
    pub duration: Duration,
    /// Whether the timeout killed it.
    pub timed_out: bool,
}

impl CommandOutput {
    /// Exit code 0.
    pub fn success(&self) -> bool {
        self.exit_code == Some(0)
    }

    /// The shell's "command not found" (exit 127).
    pub fn command_not_found(&self) -> bool {
        self.exit_code == Some(127)
    }
}

/// Why a command could not be run at all (a non-zero exit is not an error here).
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The working directory does not exist.
    #[error("working directory {0} does not exist")]
    MissingCwd(PathBuf),
    /// Spawning or talking to the process failed.
    #[error("could not run `{command}`: {source}")]
    Spawn {
        /// The command line.
        command: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// `[sandbox] required = true`, and the filesystem sandbox cannot be enforced here.
    #[error(
        "the filesystem sandbox is required ([sandbox] required = true in .factory/config.toml) but {0}; enable Landlock in the kernel (lsm=landlock,…) or set required = false"
    )]
    Unenforceable(String),
    /// The process supervisor could not be started or did not answer as one.
    #[error("the process supervisor does not work: {0}")]
    Supervisor(String),
}

/// Where verify commands run. Today a local process; later an isolated sandbox.
#[async_trait]
pub trait Sandbox: Send + Sync {
    /// Runs `spec` to completion (or timeout) and returns its output.
    async fn run(&self, spec: CommandSpec) -> Result<CommandOutput, SandboxError>;
}
