//! Running the `git` binary: every write Factory makes goes through here, with Factory's identity,
//! no hooks, no signing, no prompts and C-locale output, whatever the user's configuration says.

use std::ffi::{OsStr, OsString};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Instant;

use factory_core::ports::{GitIdentity, VcsError};
use tokio::process::Command;
use tracing::Instrument;

/// Configuration passed with `-c` on every call, before Factory's identity. These keep user
/// settings from changing what a write does: no hooks, no signing, no automatic stashing (which
/// would touch the user's files), no recorded conflict resolutions applied behind our back, no
/// other branches moved by a rebase, and no automatic maintenance: `commit` and `merge` would
/// otherwise each start a `git maintenance run --auto` (an extra process every time, and a
/// possible background gc repacking refs while Factory moves them). The user's own git commands
/// still maintain the repository.
const FIXED_CONFIG: &[&str] = &[
    "core.hooksPath=/dev/null",
    "maintenance.auto=false",
    "gc.auto=0",
    "commit.gpgsign=false",
    "tag.gpgsign=false",
    "merge.autoStash=false",
    "rebase.autoStash=false",
    "rebase.updateRefs=false",
    "rerere.enabled=false",
    "advice.detachedHead=false",
];

/// Environment variables that would redirect git away from the directory we run it in (set, for
/// instance, when Factory itself runs inside a git hook).
const CLEARED_ENV: &[&str] = &[
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_COMMON_DIR",
    "GIT_NAMESPACE",
    "GIT_PREFIX",
];

/// A checkout named the way every git call names it: its git directory and its work tree, both
/// explicit, so git never discovers a repository by walking up from the directory it runs in.
/// Without this, a task worktree whose `.git` file an agent deleted would make git find the
/// user's repository above it and act there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Checkout {
    /// `.git` of the main checkout, or `.git/worktrees/<name>` of a linked worktree.
    pub(crate) git_dir: PathBuf,
    /// The checkout's top-level directory; git also runs in it.
    pub(crate) work_tree: PathBuf,
}

/// What a finished git process left behind.
#[derive(Debug)]
pub(crate) struct GitOutput {
    /// The arguments, joined, for error messages.
    pub(crate) command: String,
    /// Exit code; `None` when killed by a signal.
    pub(crate) code: Option<i32>,
    /// Raw standard output.
    pub(crate) stdout: Vec<u8>,
    /// Standard error, lossily decoded and trimmed.
    pub(crate) stderr: String,
}

impl GitOutput {
    /// Whether git exited with status 0.
    pub(crate) fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// This output as the error a failed command maps to.
    pub(crate) fn into_error(self) -> VcsError {
        VcsError::Git {
            command: self.command,
            code: self.code,
            stderr: self.stderr,
        }
    }

    /// Standard output split on NUL (for `-z` output), empty fields dropped.
    pub(crate) fn nul_separated(&self) -> Vec<String> {
        self.stdout
            .split(|b| *b == 0)
            .filter(|field| !field.is_empty())
            .map(|field| String::from_utf8_lossy(field).into_owned())
            .collect()
    }
}

/// Runs git with Factory's identity. Cheap to build per call.
#[derive(Debug, Clone)]
pub(crate) struct GitCli {
    identity: GitIdentity,
}

impl GitCli {
    /// A runner that commits as `identity`.
    pub(crate) fn new(identity: GitIdentity) -> GitCli {
        GitCli { identity }
    }

    /// The identity Factory commits (and writes reflog entries) as.
    pub(crate) fn identity(&self) -> &GitIdentity {
        &self.identity
    }

    /// Runs `git <args>` on `at` and returns its output whatever the exit status; fails only when
    /// git could not be started.
    pub(crate) async fn run<I, S>(&self, at: &Checkout, args: I) -> Result<GitOutput, VcsError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.run_with_env(at, args, &[]).await
    }

    /// [`run`](GitCli::run) with `env` set on top of Factory's fixed environment (after the
    /// variables that redirect git are cleared), e.g. to send the objects a read-only command
    /// writes to a scratch directory.
    pub(crate) async fn run_with_env<I, S>(
        &self,
        at: &Checkout,
        args: I,
        env: &[(&str, OsString)],
    ) -> Result<GitOutput, VcsError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let args: Vec<OsString> = args
            .into_iter()
            .map(|arg| arg.as_ref().to_os_string())
            .collect();
        let command = args
            .iter()
            .map(|arg| arg.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ");
        let dir = &at.work_tree;
        let span = tracing::debug_span!("git", cmd = %command, cwd = %dir.display());
        async {
            let started = Instant::now();
            let mut cmd = Command::new("git");
            for setting in FIXED_CONFIG {
                cmd.arg("-c").arg(setting);
            }
            let mut git_dir = OsString::from("--git-dir=");
            git_dir.push(&at.git_dir);
            let mut work_tree = OsString::from("--work-tree=");
            work_tree.push(&at.work_tree);
            cmd.arg("-c")
                .arg(format!("user.name={}", self.identity.name))
                .arg("-c")
                .arg(format!("user.email={}", self.identity.email))
                .arg(git_dir)
                .arg(work_tree)
                .args(&args)
                .current_dir(dir)
                .env("GIT_AUTHOR_NAME", &self.identity.name)
                .env("GIT_AUTHOR_EMAIL", &self.identity.email)
                .env("GIT_COMMITTER_NAME", &self.identity.name)
                .env("GIT_COMMITTER_EMAIL", &self.identity.email)
                .env("GIT_TERMINAL_PROMPT", "0")
                .env("GIT_EDITOR", "true")
                .env("GIT_SEQUENCE_EDITOR", "true")
                .env("GIT_MERGE_AUTOEDIT", "no")
                .env("LC_ALL", "C")
                .env("LANGUAGE", "C")
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                // A git command runs to its end even when its caller stops waiting (a stopped
                // run drops its jobs mid-step): killed, git leaves its lock files (`index.lock`,
                // `packed-refs.lock`, …) and half-done operations behind, and every later git
                // command there fails. Git commands are short; the run's next step, or the next
                // run, finds what it finished.
                .kill_on_drop(false);
            // In a process group of its own, so that Ctrl-C in the terminal, which the terminal
            // sends to its whole foreground group, stops Factory (at its next step) but not the
            // git command it is waiting for: killed, it would fail the task's step.
            #[cfg(unix)]
            cmd.process_group(0);
            for var in CLEARED_ENV {
                cmd.env_remove(var);
            }
            for (var, value) in env {
                cmd.env(var, value);
            }
            // A second belt: should anything in git still search for a repository (a
            // subprocess that drops `--git-dir`), it may not look above the checkout.
            if let Some(parent) = dir.parent() {
                cmd.env("GIT_CEILING_DIRECTORIES", parent);
            }
            let output = cmd.output().await.map_err(|source| VcsError::Io {
                context: format!("running `git {command}` in {}", dir.display()),
                source,
            })?;
            let out = GitOutput {
                command,
                code: output.status.code(),
                stdout: output.stdout,
                stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
            };
            tracing::debug!(
                code = ?out.code,
                elapsed_ms = started.elapsed().as_millis() as u64,
                stderr = %out.stderr,
                "git finished"
            );
            Ok(out)
        }
        .instrument(span)
        .await
    }

    /// Runs `git <args>` on `at` and fails with [`VcsError::Git`] unless it exits with 0.
    pub(crate) async fn ok<I, S>(&self, at: &Checkout, args: I) -> Result<GitOutput, VcsError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let out = self.run(at, args).await?;
        if out.success() {
            Ok(out)
        } else {
            Err(out.into_error())
        }
    }

    /// Paths with unresolved conflicts in the index of `at`.
    pub(crate) async fn unmerged_paths(&self, at: &Checkout) -> Result<Vec<String>, VcsError> {
        let out = self
            .ok(at, ["diff", "--name-only", "--diff-filter=U", "-z"])
            .await?;
        let mut files = out.nul_separated();
        files.sort();
        files.dedup();
        Ok(files)
    }
}
