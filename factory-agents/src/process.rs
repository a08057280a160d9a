//! Running one shell command line as a local process: the [`Sandbox`] port, and the runner that
//! command agents share with it.

use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use factory_core::config::{FactoryConfig, LimitsConfig, SandboxConfig};
use factory_core::ports::{CommandOutput, CommandSpec, Sandbox, SandboxError};
use rustix::io::Errno;
use rustix::process::{self, Pid, Signal};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::OnceCell;

use crate::capture::{Capture, OverflowLog, Stream};
use crate::fs_sandbox::{FsPolicy, LandlockSupport, SandboxReport, split_existing};
use crate::supervise::{PROBE_MAGIC, ProbeAnswer, Request, Supervisor};

/// How long output is still collected after the supervisor exited. The supervisor ends every
/// descendant before it exits, so only a process it could not end can use this up.
const DRAIN_GRACE: Duration = Duration::from_secs(2);

/// Between SIGTERM and SIGKILL when the supervisor ends the command's processes.
const TERM_GRACE: Duration = Duration::from_secs(2);

/// How long a supervisor told to stop may take before it and its group are killed outright.
const SUPERVISOR_STOP_WAIT: Duration = Duration::from_secs(5);

/// How a [`ProcessSandbox`] runs commands; [`ProcessOptions::from_config`] reads them from
/// `.factory/config.toml`.
#[derive(Debug, Clone, Default)]
pub struct ProcessOptions {
    /// How the per-command supervisor is started.
    pub supervisor: Supervisor,
    /// `[sandbox]`.
    pub sandbox: SandboxConfig,
    /// `[limits]`.
    pub limits: LimitsConfig,
}

impl ProcessOptions {
    /// `[sandbox]` and `[limits]` of `config`, with the default supervisor (this program, which
    /// must call [`run_if_requested`](crate::supervise::run_if_requested) first in `main`).
    pub fn from_config(config: &FactoryConfig) -> ProcessOptions {
        ProcessOptions {
            supervisor: Supervisor::default(),
            sandbox: config.sandbox.clone(),
            limits: config.limits.clone(),
        }
    }
}

/// Runs commands as local processes: `sh -c` in the given directory, under a supervisor of its
/// own (see [`crate::supervise`]) that ends every process the command started when it exits,
/// times out, is cancelled, or when Factory dies; inside the filesystem sandbox (Landlock) where
/// the kernel has it; with stdout and stderr kept up to `[limits] captured_output_bytes`.
///
/// Cheap to clone; clones share the one sandbox probe (and its one warning).
#[derive(Debug, Clone, Default)]
pub struct ProcessSandbox {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    options: ProcessOptions,
    report: OnceCell<SandboxReport>,
}

impl ProcessSandbox {
    /// A sandbox with the default options: this program as supervisor, default `[sandbox]` and
    /// `[limits]`.
    pub fn new() -> ProcessSandbox {
        ProcessSandbox::default()
    }

    /// A sandbox with `options`.
    pub fn with_options(options: ProcessOptions) -> ProcessSandbox {
        ProcessSandbox {
            inner: Arc::new(Inner {
                options,
                report: OnceCell::new(),
            }),
        }
    }

    /// What the sandbox enforces here, measured once by a supervisor applying the ruleset to
    /// itself (which also proves the supervisor can be started). When the sandbox is enabled but
    /// cannot be enforced and is not required, this is where the one warning is logged.
    pub async fn report(&self) -> Result<&SandboxReport, SandboxError> {
        self.inner
            .report
            .get_or_try_init(|| async {
                let report = probe(&self.inner.options).await?;
                if report.enabled && !report.is_enforced() && !report.required {
                    tracing::warn!("{}", report.to_string().trim_end());
                    tracing::warn!(
                        "agents and verify commands run without a filesystem sandbox; set [sandbox] required = true to refuse instead"
                    );
                }
                Ok(report)
            })
            .await
    }

    /// Runs `spec` to completion or timeout; the one place Factory starts a shell command.
    pub(crate) async fn run_command(
        &self,
        spec: &CommandSpec,
    ) -> Result<CommandOutput, SandboxError> {
        if !tokio::fs::try_exists(&spec.cwd).await.unwrap_or(false) {
            return Err(SandboxError::MissingCwd(spec.cwd.clone()));
        }
        let options = &self.inner.options;
        let report = self.report().await?;
        let spawn_error = |source| SandboxError::Spawn {
            command: spec.command.clone(),
            source,
        };
        let temp = RunTempDir::create().map_err(spawn_error)?;
        let sandbox = if !report.enabled {
            None
        } else if report.is_enforced() {
            let mut writable = spec.writable.clone();
            writable.push(temp.path.clone());
            writable.extend(report.writable.iter().cloned());
            Some(FsPolicy::new(writable))
        } else if report.required {
            return Err(SandboxError::Unenforceable(unsupported_reason(report)));
        } else {
            None
        };
        let request = Request::Run {
            command: spec.command.clone(),
            parent: i32::try_from(std::process::id()).unwrap_or(0),
            sandbox,
            grace_ms: u64::try_from(TERM_GRACE.as_millis()).unwrap_or(u64::MAX),
        };
        let request =
            serde_json::to_string(&request).map_err(|e| SandboxError::Supervisor(e.to_string()))?;

        let started = Instant::now();
        let supervisor = &options.supervisor;
        // The supervisor's parent-death signal fires when the *thread* that started it exits.
        // This is the runtime thread polling the run; tokio's worker threads (and a
        // current-thread runtime's own thread) live as long as the runtime, so the signal comes
        // only when the runtime, and so the run, is gone. Do not run this on a thread that exits
        // while the run goes on.
        let mut child = Command::new(supervisor.program_path())
            .args(supervisor.leading_args())
            .arg(request)
            .current_dir(&spec.cwd)
            .env("TMPDIR", &temp.path)
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .stdin(if spec.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            // Never SIGKILL the supervisor on drop: it must live to end the command's processes.
            .kill_on_drop(false)
            .spawn()
            .map_err(spawn_error)?;
        let mut supervised = Supervised::new(child.id());
        tracing::debug!(command = %spec.command, cwd = %spec.cwd.display(), pid = ?child.id(), sandboxed = report.is_enforced(), "process started");

        let end = drive(&mut child, &mut supervised, spec, &options.limits)
            .await
            .map_err(spawn_error)?;
        drop(temp);
        let output = CommandOutput {
            exit_code: if end.timed_out {
                None
            } else {
                end.status.and_then(|s| s.code())
            },
            stdout: end.stdout,
            stderr: end.stderr,
            duration: started.elapsed(),
            timed_out: end.timed_out,
        };
        tracing::debug!(
            command = %spec.command,
            exit_code = ?output.exit_code,
            timed_out = output.timed_out,
            ms = output.duration.as_millis(),
            "process finished"
        );
        Ok(output)
    }
}

fn unsupported_reason(report: &SandboxReport) -> String {
    match &report.landlock {
        LandlockSupport::Unsupported { reason } => reason.clone(),
        LandlockSupport::Enforced { .. } => "it is not enforced".to_owned(),
    }
}

/// Starts a supervisor in probe mode and turns its answer into a report.
async fn probe(options: &ProcessOptions) -> Result<SandboxReport, SandboxError> {
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let (writable, missing) = split_existing(options.sandbox.writable_paths(home.as_deref()));
    let request = serde_json::to_string(&Request::Probe {
        writable: writable.clone(),
    })
    .map_err(|e| SandboxError::Supervisor(e.to_string()))?;
    let supervisor = &options.supervisor;
    let program = supervisor.program_path().display().to_string();
    let output = Command::new(supervisor.program_path())
        .args(supervisor.leading_args())
        .arg(request)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| SandboxError::Supervisor(format!("cannot start {program}: {e}")))?;
    let answer = String::from_utf8_lossy(&output.stdout);
    let answer = answer
        .lines()
        .rev()
        .find_map(|line| serde_json::from_str::<ProbeAnswer>(line).ok())
        .filter(|a| a.supervisor == PROBE_MAGIC)
        .ok_or_else(|| {
            SandboxError::Supervisor(format!(
                "{program} {} did not answer as Factory's supervisor ({}: {}); a program that runs commands through factory-agents must call factory_agents::supervise::run_if_requested() first in main, or name a supervisor binary such as factory-supervise",
                supervisor.leading_args().iter().map(|a| a.to_string_lossy()).collect::<Vec<_>>().join(" "),
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ))
        })?;
    Ok(SandboxReport {
        enabled: options.sandbox.enabled,
        required: options.sandbox.required,
        landlock: answer.landlock,
        writable,
        missing,
    })
}

#[async_trait]
impl Sandbox for ProcessSandbox {
    async fn run(&self, spec: CommandSpec) -> Result<CommandOutput, SandboxError> {
        self.run_command(&spec).await
    }
}

/// A temp dir of the command's own (its `$TMPDIR`, writable in the sandbox), removed afterwards.
struct RunTempDir {
    path: PathBuf,
}

impl RunTempDir {
    fn create() -> std::io::Result<RunTempDir> {
        use std::os::unix::fs::DirBuilderExt;
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let base = std::env::temp_dir();
        loop {
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let path = base.join(format!("factory-run-{}-{n}", std::process::id()));
            match std::fs::DirBuilder::new().mode(0o700).create(&path) {
                Ok(()) => return Ok(RunTempDir { path }),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

impl Drop for RunTempDir {
    fn drop(&mut self) {
        if let Err(error) = std::fs::remove_dir_all(&self.path) {
            tracing::debug!(path = %self.path.display(), %error, "could not remove a command's temp dir");
        }
    }
}

/// What [`drive`] collected.
struct ProcessEnd {
    status: Option<ExitStatus>,
    timed_out: bool,
    stdout: String,
    stderr: String,
}

/// Where a run stands, for what the deadline means when it fires.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Running,
    /// Timed out; the supervisor was told to stop.
    Stopping,
    /// The supervisor did not stop in time; it and its group were killed.
    Killing,
    /// The supervisor exited; collecting what is left in the pipes.
    Draining,
}

/// Feeds stdin, drains stdout and stderr, and waits for exit, all in one loop so a command that
/// fills a pipe never blocks on us. On timeout the supervisor is told to stop (it ends the
/// command's processes, which closes the pipes they hold); if it does not, it is killed.
async fn drive(
    child: &mut Child,
    supervised: &mut Supervised,
    spec: &CommandSpec,
    limits: &LimitsConfig,
) -> std::io::Result<ProcessEnd> {
    let mut stdin: Option<ChildStdin> = child.stdin.take();
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let input = spec.stdin.as_deref().unwrap_or("").as_bytes();
    let mut written = 0;
    let mut status = None;
    let mut timed_out = false;
    let mut phase = Phase::Running;
    let mut log = OverflowLog::new(spec.output_log.as_deref(), limits.log_output_bytes);
    let mut out_cap = Capture::new(Stream::Stdout, limits.captured_output_bytes);
    let mut err_cap = Capture::new(Stream::Stderr, limits.captured_output_bytes);
    let deadline = tokio::time::sleep(spec.timeout);
    tokio::pin!(deadline);
    let mut out_buf = vec![0u8; 64 * 1024];
    let mut err_buf = vec![0u8; 64 * 1024];

    loop {
        if phase == Phase::Draining && stdout.is_none() && stderr.is_none() {
            break;
        }
        if stdin.is_some() && written >= input.len() {
            // Everything written: close stdin so the command sees end of input.
            stdin = None;
        }
        tokio::select! {
            n = write_some(&mut stdin, &input[written..]), if stdin.is_some() => {
                match n {
                    Ok(n) if n > 0 => written += n,
                    // The command closed stdin (or exited) without reading it all.
                    _ => stdin = None,
                }
            }
            n = read_some(&mut stdout, &mut out_buf), if stdout.is_some() => match n {
                Some(n) => out_cap.push(&out_buf[..n], &mut log).await,
                None => stdout = None,
            },
            n = read_some(&mut stderr, &mut err_buf), if stderr.is_some() => match n {
                Some(n) => err_cap.push(&err_buf[..n], &mut log).await,
                None => stderr = None,
            },
            exit = child.wait(), if phase != Phase::Draining => {
                let exit = exit?;
                if exit.signal().is_some() {
                    // The supervisor itself was killed, so it ended nothing: do what can still be
                    // done, right after reaping, while the group id cannot have been reused.
                    supervised.kill();
                }
                supervised.reaped();
                status = Some(exit);
                phase = Phase::Draining;
                deadline.as_mut().reset(tokio::time::Instant::now() + DRAIN_GRACE);
            }
            () = &mut deadline => match phase {
                Phase::Running => {
                    timed_out = true;
                    supervised.stop();
                    phase = Phase::Stopping;
                    deadline.as_mut().reset(tokio::time::Instant::now() + SUPERVISOR_STOP_WAIT);
                }
                Phase::Stopping => {
                    tracing::warn!(command = %spec.command, "the supervisor did not stop in time; killing it and its process group");
                    supervised.kill();
                    phase = Phase::Killing;
                    deadline.as_mut().reset(tokio::time::Instant::now() + SUPERVISOR_STOP_WAIT);
                }
                Phase::Killing => {
                    return Err(std::io::Error::other("the supervisor survived SIGKILL"));
                }
                Phase::Draining => {
                    tracing::warn!(command = %spec.command, "a process the supervisor could not end kept the output pipes open; output may be cut short");
                    break;
                }
            }
        }
    }
    log.finish().await;
    Ok(ProcessEnd {
        status,
        timed_out,
        stdout: out_cap.finish(&log),
        stderr: err_cap.finish(&log),
    })
}

/// Writes some of `data`; `Ok(0)` when there is nothing to write to.
async fn write_some(stdin: &mut Option<ChildStdin>, data: &[u8]) -> std::io::Result<usize> {
    match stdin {
        Some(w) => w.write(data).await,
        None => Ok(0),
    }
}

/// Reads one chunk into `buf`; `None` once the pipe is closed (or broken).
async fn read_some<R: AsyncRead + Unpin>(pipe: &mut Option<R>, buf: &mut [u8]) -> Option<usize> {
    let r = pipe.as_mut()?;
    match r.read(buf).await {
        Ok(0) | Err(_) => None,
        Ok(n) => Some(n),
    }
}

/// The supervisor process until it is reaped. Signalling it by pid is safe until then: an
/// unreaped child's pid cannot be reused. Dropping this before the supervisor was reaped (a
/// cancelled run) tells it to stop, and it ends every process the command started.
struct Supervised(Option<Pid>);

impl Supervised {
    fn new(pid: Option<u32>) -> Supervised {
        let pid = pid
            .and_then(|pid| i32::try_from(pid).ok())
            .and_then(Pid::from_raw)
            .filter(|pid| !pid.is_init());
        Supervised(pid)
    }

    /// SIGTERM: the supervisor ends the command's processes (TERM, grace, KILL) and exits.
    fn stop(&self) {
        if let Some(pid) = self.0 {
            signal(pid, Signal::TERM, false);
        }
    }

    /// SIGKILL to the supervisor's whole process group (it leads it; the command starts in it),
    /// for a supervisor that does not stop.
    fn kill(&self) {
        if let Some(pid) = self.0 {
            signal(pid, Signal::KILL, true);
        }
    }

    /// The supervisor was reaped: its pid may be reused from now on.
    fn reaped(&mut self) {
        self.0 = None;
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        // Runs only when a run is cancelled or `drive` failed. A syscall, so fine to make here.
        self.stop();
    }
}

fn signal(pid: Pid, signal: Signal, group: bool) {
    let sent = if group {
        process::kill_process_group(pid, signal)
    } else {
        process::kill_process(pid, signal)
    };
    match sent {
        Ok(()) | Err(Errno::SRCH) => {}
        Err(error) => {
            tracing::warn!(pid = pid.as_raw_pid(), %error, "could not signal the supervisor")
        }
    }
}
