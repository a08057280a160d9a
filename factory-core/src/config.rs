//! `.factory/config.toml`: what a user chooses (agents, verify command, limits, identity).
//! Unknown keys are refused so a typo never silently falls back to a default.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::agent::AgentRole;
use crate::ports::GitIdentity;

/// The whole configuration file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FactoryConfig {
    /// How many tasks may run at once (each in its own worktree).
    pub max_parallel: usize,
    /// Branch and identity.
    pub git: GitConfig,
    /// The objective check.
    pub verify: VerifyConfig,
    /// The review loop.
    pub qa: QaConfig,
    /// Which agent plays each role.
    pub agent: AgentConfig,
    /// What agent and verify processes may write.
    pub sandbox: SandboxConfig,
    /// Caps on what Factory keeps in memory and on disk.
    pub limits: LimitsConfig,
    /// The merge queue.
    pub merge: MergeConfig,
}

impl Default for FactoryConfig {
    fn default() -> Self {
        FactoryConfig {
            max_parallel: 2,
            git: GitConfig::default(),
            verify: VerifyConfig::default(),
            qa: QaConfig::default(),
            agent: AgentConfig::default(),
            sandbox: SandboxConfig::default(),
            limits: LimitsConfig::default(),
            merge: MergeConfig::default(),
        }
    }
}

/// `[git]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GitConfig {
    /// The branch tasks start from and merge into.
    pub main_branch: String,
    /// Author and committer name of Factory's commits.
    pub author_name: String,
    /// Author and committer email of Factory's commits.
    pub author_email: String,
    /// How often a merge that waits on the user's uncommitted changes is retried.
    pub merge_retry_secs: u64,
}

impl Default for GitConfig {
    fn default() -> Self {
        GitConfig {
            main_branch: "main".into(),
            author_name: "Factory".into(),
            author_email: "factory@localhost".into(),
            merge_retry_secs: 5,
        }
    }
}

impl GitConfig {
    /// The identity Factory commits with.
    pub fn identity(&self) -> GitIdentity {
        GitIdentity {
            name: self.author_name.clone(),
            email: self.author_email.clone(),
        }
    }
}

/// `[verify]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VerifyConfig {
    /// Shell command run in the task worktree; exit 0 passes. Empty: no verify step.
    pub command: String,
    /// Killed (and failed) after this many seconds.
    pub timeout_secs: u64,
}

impl Default for VerifyConfig {
    fn default() -> Self {
        VerifyConfig {
            command: String::new(),
            timeout_secs: 1800,
        }
    }
}

impl VerifyConfig {
    /// A verify command guessed from the files at the repository root, for `factory init`.
    pub fn detect(repo_root: &Path) -> Option<&'static str> {
        let has = |name: &str| repo_root.join(name).exists();
        if has("Cargo.toml") {
            Some("cargo test")
        } else if has("package.json") {
            Some("npm test")
        } else if has("go.mod") {
            Some("go test ./...")
        } else if has("pyproject.toml") || has("setup.py") || has("tests") || has("test") {
            Some("python3 -m unittest")
        } else if has("Makefile") {
            Some("make test")
        } else {
            None
        }
    }
}

/// `[qa]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QaConfig {
    /// Worker rounds per task before it is blocked.
    pub max_rounds: u32,
}

impl Default for QaConfig {
    fn default() -> Self {
        QaConfig { max_rounds: 3 }
    }
}

/// `[sandbox]`: the filesystem sandbox (Landlock on Linux) around agent and verify processes.
/// Everything stays readable; writes are allowed only to the command's own directories (a task's
/// worktree, its spec dir, a per-run temp dir) and to `writable`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SandboxConfig {
    /// Sandbox commands at all. Off: commands may write wherever the user may.
    pub enabled: bool,
    /// Refuse to run commands where the sandbox cannot be enforced, instead of warning once and
    /// running them unsandboxed.
    pub required: bool,
    /// Extra paths every command may write, typically tools' caches. `~/` is the home directory;
    /// paths that do not exist are skipped. Setting this replaces the default list.
    pub writable: Vec<PathBuf>,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            enabled: true,
            required: false,
            writable: DEFAULT_WRITABLE.iter().map(PathBuf::from).collect(),
        }
    }
}

/// Tools' caches and the agent CLIs' own state: writable by default so `cargo`, `npm`, `pip` and
/// agent CLIs work, while nothing that runs code for the user later (shell rc files, git config,
/// `~/.config`) is.
const DEFAULT_WRITABLE: &[&str] = &[
    "~/.cargo/registry",
    "~/.cargo/git",
    "~/.rustup/tmp",
    "~/.npm",
    "~/.cache",
    "~/.claude",
    "~/.claude.json",
    "~/.codex",
];

impl SandboxConfig {
    /// `writable` with `~/` replaced by `home` (entries under `~/` are dropped without a home).
    pub fn writable_paths(&self, home: Option<&Path>) -> Vec<PathBuf> {
        self.writable
            .iter()
            .filter_map(|p| match p.strip_prefix("~") {
                Ok(rest) => home.map(|h| h.join(rest)),
                Err(_) => Some(p.clone()),
            })
            .collect()
    }
}

/// `[limits]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Bytes of a command's stdout (and, separately, stderr) kept in memory; the rest goes to the
    /// command's log file, if it has one, and the kept text ends with a marker saying so.
    pub captured_output_bytes: u64,
    /// Bytes past the captured part written to a command's log file before it is cut off with a
    /// marker.
    pub log_output_bytes: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            captured_output_bytes: 8 * 1024 * 1024,
            log_output_bytes: 64 * 1024 * 1024,
        }
    }
}

/// `[merge]`: the merge queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MergeConfig {
    /// Conflict rounds a worker gets to resolve a conflict with main before its task is blocked.
    pub conflict_attempts: u32,
    /// Keep a task's branch after its merge (by default it is deleted with the worktree).
    pub keep_branches: bool,
    /// A task whose change adds or grows a file past this many bytes is blocked, naming it.
    pub max_file_bytes: u64,
}

impl Default for MergeConfig {
    fn default() -> Self {
        MergeConfig {
            conflict_attempts: 2,
            keep_branches: false,
            max_file_bytes: 10 * 1024 * 1024,
        }
    }
}

/// Which implementation plays a role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentKind {
    /// Any shell command: prompt on stdin, output on stdout.
    Command,
    /// Deterministic edits and verdicts from a script file.
    Scripted,
}

/// `[agent]`: the default for every role, with optional `[agent.planner]`, `[agent.worker]`,
/// `[agent.reviewer]` overrides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentConfig {
    /// Implementation.
    pub kind: AgentKind,
    /// For `command`: the shell command line.
    pub command: Option<String>,
    /// For `scripted`: the script file (relative paths are relative to `.factory/`).
    pub script: Option<PathBuf>,
    /// Killed after this many seconds.
    pub timeout_secs: u64,
    /// Planner override.
    pub planner: Option<AgentOverride>,
    /// Worker override.
    pub worker: Option<AgentOverride>,
    /// Reviewer override.
    pub reviewer: Option<AgentOverride>,
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            kind: AgentKind::Command,
            command: None,
            script: None,
            timeout_secs: 1800,
            planner: None,
            worker: None,
            reviewer: None,
        }
    }
}

/// A per-role override; unset fields fall back to `[agent]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentOverride {
    /// Implementation.
    pub kind: Option<AgentKind>,
    /// Command line.
    pub command: Option<String>,
    /// Script file.
    pub script: Option<PathBuf>,
    /// Timeout.
    pub timeout_secs: Option<u64>,
}

/// The settled choice for one role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleAgent {
    /// The role.
    pub role: AgentRole,
    /// Implementation.
    pub kind: AgentKind,
    /// For `command`.
    pub command: Option<String>,
    /// For `scripted`.
    pub script: Option<PathBuf>,
    /// Timeout in seconds.
    pub timeout_secs: u64,
}

impl AgentConfig {
    /// `[agent]` with the role's override applied.
    pub fn for_role(&self, role: AgentRole) -> RoleAgent {
        let o = match role {
            AgentRole::Planner => self.planner.as_ref(),
            AgentRole::Worker => self.worker.as_ref(),
            AgentRole::Reviewer => self.reviewer.as_ref(),
        };
        let o = o.cloned().unwrap_or_default();
        RoleAgent {
            role,
            kind: o.kind.unwrap_or(self.kind),
            command: o.command.or_else(|| self.command.clone()),
            script: o.script.or_else(|| self.script.clone()),
            timeout_secs: o.timeout_secs.unwrap_or(self.timeout_secs),
        }
    }
}

/// The configuration file is unreadable or invalid.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Not valid TOML or an unknown/mistyped key.
    #[error("invalid {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong and where.
        message: String,
    },
    /// A value is out of range.
    #[error("invalid {path}: {message}")]
    Value {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

impl FactoryConfig {
    /// Parses and validates `text` (read from `path`, named in errors).
    pub fn from_toml(text: &str, path: &Path) -> Result<FactoryConfig, ConfigError> {
        let config: FactoryConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string().trim().replace('\n', " "),
        })?;
        let value = |message: &str| ConfigError::Value {
            path: path.to_owned(),
            message: message.to_owned(),
        };
        if config.max_parallel == 0 {
            return Err(value("max_parallel must be at least 1"));
        }
        if config.qa.max_rounds == 0 {
            return Err(value("[qa] max_rounds must be at least 1"));
        }
        if let Some(problem) = branch_name_problem(&config.git.main_branch) {
            return Err(value(&format!(
                "[git] main_branch {:?} is not a valid branch name: {problem}",
                config.git.main_branch
            )));
        }
        if config.git.author_name.trim().is_empty() || config.git.author_email.trim().is_empty() {
            return Err(value(
                "[git] author_name and author_email must not be empty",
            ));
        }
        if config.limits.captured_output_bytes < 1024 {
            return Err(value(
                "[limits] captured_output_bytes must be at least 1024",
            ));
        }
        if let Some(bad) = config
            .sandbox
            .writable
            .iter()
            .find(|p| !p.is_absolute() && !p.starts_with("~"))
        {
            return Err(value(&format!(
                "[sandbox] writable entry {} must be absolute or start with ~/",
                bad.display()
            )));
        }
        Ok(config)
    }

    /// The file `factory init` writes: every setting with its default and a comment. Every
    /// value given is written by the TOML serializer, so any string (quotes, backslashes, new
    /// lines) reads back exactly.
    pub fn template(
        main_branch: &str,
        verify_command: Option<&str>,
        agent: &AgentTemplate,
    ) -> String {
        let main_branch = toml_string(main_branch);
        let verify = toml_string(verify_command.unwrap_or(""));
        let agent = match agent {
            AgentTemplate::Unset => {
                "kind = \"command\"\n# command = \"my-agent --stdin\"".to_owned()
            }
            AgentTemplate::Command(command) => {
                format!("kind = \"command\"\ncommand = {}", toml_string(command))
            }
            AgentTemplate::Scripted(script) => format!(
                "kind = \"scripted\"\nscript = {}",
                toml_string(&script.to_string_lossy())
            ),
        };
        format!(
            r#"# Factory configuration. Every key is optional; shown are the defaults.

# How many tasks may run at once, each in its own worktree.
max_parallel = 2

[git]
# Tasks branch from and merge (--no-ff) into this branch.
main_branch = {main_branch}
# Author and committer of Factory's commits (your global git config is never used).
author_name = "Factory"
author_email = "factory@localhost"
# A merge that would touch your uncommitted changes waits; it is retried this often.
merge_retry_secs = 5

[verify]
# Shell command run in each task's worktree; exit 0 passes. Empty disables verify.
command = {verify}
timeout_secs = 1800

[qa]
# Worker rounds per task (review + verify each round) before the task is blocked.
max_rounds = 3

[agent]
# "command": runs `command` with the prompt on stdin (see README, "Agent formats").
# "scripted": replays `script` (a TOML file; see README).
{agent}
timeout_secs = 1800

# Per-role overrides: [agent.planner], [agent.worker], [agent.reviewer] take the same keys.

[sandbox]
# Agents and verify commands may write only their task's worktree and spec dir, a temp dir of
# their own, and `writable` (Landlock on Linux); everything else, your checkout and .git included,
# is read-only to them.
enabled = true
# true: refuse to run where the sandbox cannot be enforced (default: warn once, run unsandboxed).
required = false
# Extra writable paths (tools' caches); ~/ is your home; missing paths are skipped.
writable = ["~/.cargo/registry", "~/.cargo/git", "~/.rustup/tmp", "~/.npm", "~/.cache", "~/.claude", "~/.claude.json", "~/.codex"]

[limits]
# Output of one command kept in memory, per stream; the rest goes to its log file.
captured_output_bytes = 8388608
# Output past that written to the log file before it is cut off.
log_output_bytes = 67108864

[merge]
# Rounds a worker gets to resolve a conflict with main before its task is blocked.
conflict_attempts = 2
# Keep task branches after their merge (default: deleted with the worktree).
keep_branches = false
# A task whose change adds or grows a file past this many bytes is blocked, naming the file.
max_file_bytes = 10485760
"#
        )
    }
}

/// Which agent a new configuration file names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentTemplate {
    /// None yet: the user fills in `[agent]`.
    Unset,
    /// `kind = "command"` with this command line.
    Command(String),
    /// `kind = "scripted"` with this script (relative to `.factory/`).
    Scripted(PathBuf),
}

/// `s` as a TOML string literal, escaped by the TOML serializer.
fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

/// Why `name` cannot be a branch name, after git's `check-ref-format` rules, or `None`.
pub fn branch_name_problem(name: &str) -> Option<&'static str> {
    if name.trim().is_empty() {
        return Some("it is empty");
    }
    if name.starts_with('-') || name.starts_with('/') || name.ends_with('/') {
        return Some("it may not start with `-` or `/`, nor end with `/`");
    }
    if name.ends_with('.') || name.ends_with(".lock") || name.contains("..") || name.contains("//")
    {
        return Some("it may not contain `..` or `//`, nor end with `.` or `.lock`");
    }
    if name.contains("@{") || name == "@" {
        return Some("it may not be `@` or contain `@{`");
    }
    if name
        .chars()
        .any(|c| c.is_control() || c == ' ' || "~^:?*[\\".contains(c))
    {
        return Some("it may not contain spaces, control characters or any of ~ ^ : ? * [ \\");
    }
    if name.split('/').any(|part| part.starts_with('.')) {
        return Some("no part of it may start with `.`");
    }
    None
}
