//! Running one shell command line as a local process: the [`Sandbox`] port, and the runner that
//! command agents share with it.

use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use factory_core::ports::{CommandOutput, CommandSpec, Sandbox, SandboxError};
use rustix::io::Errno;
use rustix::process::{self, Pid, Signal};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStdin, Command};

/// How long output is still collected after the command's process group is gone. Only a process
/// that left the group (e.g. via `setsid`) and kept the pipes open can use it up; whatever was read
/// by then is returned.
const DRAIN_GRACE: Duration = Duration::from_secs(2);

/// Runs commands as local processes: `sh -c` in the given directory, in a process group of their
/// own, so a timeout or a cancelled run kills everything the command started, not just the shell.
///
/// Not isolated: the command sees the machine as the user does. Processes the command leaves
/// behind in its group are killed when it exits, so a verify run cannot leak servers.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessSandbox;

impl ProcessSandbox {
    /// A sandbox that runs commands on this machine.
    pub fn new() -> ProcessSandbox {
        ProcessSandbox
    }
}

#[async_trait]
impl Sandbox for ProcessSandbox {
    async fn run(&self, spec: CommandSpec) -> Result<CommandOutput, SandboxError> {
        run_command(&spec).await
    }
}

/// Runs `spec` to completion or timeout; the one place Factory starts a shell command.
pub(crate) async fn run_command(spec: &CommandSpec) -> Result<CommandOutput, SandboxError> {
    if !tokio::fs::try_exists(&spec.cwd).await.unwrap_or(false) {
        return Err(SandboxError::MissingCwd(spec.cwd.clone()));
    }
    let spawn_error = |source| SandboxError::Spawn {
        command: spec.command.clone(),
        source,
    };
    let started = Instant::now();
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(&spec.command)
        .current_dir(&spec.cwd)
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(if spec.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(spawn_error)?;
    // The child leads its own group, so the group id is its pid.
    let group = ProcessGroup::led_by(child.id());
    tracing::debug!(command = %spec.command, cwd = %spec.cwd.display(), pgid = Pid::as_raw(group.0), "process started");

    let end = drive(&mut child, &group, spec).await.map_err(spawn_error)?;
    group.disarm();
    let output = CommandOutput {
        exit_code: end.status.and_then(|s| s.code()),
        stdout: String::from_utf8_lossy(&end.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&end.stderr).into_owned(),
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

/// What [`drive`] collected.
struct ProcessEnd {
    status: Option<ExitStatus>,
    timed_out: bool,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

/// Feeds stdin, drains stdout and stderr, and waits for exit, all in one loop so a command that
/// fills a pipe never blocks on us. On exit or timeout the whole group is killed, which closes
/// the pipes any grandchild still holds.
async fn drive(
    child: &mut Child,
    group: &ProcessGroup,
    spec: &CommandSpec,
) -> std::io::Result<ProcessEnd> {
    let mut stdin: Option<ChildStdin> = child.stdin.take();
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let input = spec.stdin.as_deref().unwrap_or("").as_bytes();
    let mut written = 0;
    let mut end = ProcessEnd {
        status: None,
        timed_out: false,
        stdout: Vec::new(),
        stderr: Vec::new(),
    };
    let mut exited = false;
    let deadline = tokio::time::sleep(spec.timeout);
    tokio::pin!(deadline);
    let mut out_buf = vec![0u8; 16 * 1024];
    let mut err_buf = vec![0u8; 16 * 1024];

    loop {
        if exited && stdout.is_none() && stderr.is_none() {
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
            open = read_some(&mut stdout, &mut out_buf, &mut end.stdout), if stdout.is_some() => {
                if !open {
                    stdout = None;
                }
            }
            open = read_some(&mut stderr, &mut err_buf, &mut end.stderr), if stderr.is_some() => {
                if !open {
                    stderr = None;
                }
            }
            status = child.wait(), if !exited => {
                end.status = Some(status?);
                exited = true;
                // Right after reaping, with no await in between, to keep the window in which
                // the (now possibly empty) group's id could be reused as small as possible.
                if group.kill() {
                    tracing::debug!(command = %spec.command, "killed processes the command left behind");
                }
                deadline.as_mut().reset(tokio::time::Instant::now() + DRAIN_GRACE);
            }
            () = &mut deadline => {
                if exited {
                    tracing::warn!(command = %spec.command, "a process outside the group kept the output pipes open; output may be cut short");
                    break;
                }
                end.timed_out = true;
                group.kill();
                // Killed by a signal: no exit code.
                end.status = Some(child.wait().await?);
                exited = true;
                deadline.as_mut().reset(tokio::time::Instant::now() + DRAIN_GRACE);
            }
        }
    }
    Ok(end)
}

/// Writes some of `data`; `Ok(0)` when there is nothing to write to.
async fn write_some(stdin: &mut Option<ChildStdin>, data: &[u8]) -> std::io::Result<usize> {
    match stdin {
        Some(w) => w.write(data).await,
        None => Ok(0),
    }
}

/// Reads one chunk into `into`; false once the pipe is closed (or broken).
async fn read_some<R: AsyncRead + Unpin>(
    pipe: &mut Option<R>,
    buf: &mut [u8],
    into: &mut Vec<u8>,
) -> bool {
    let Some(r) = pipe else { return false };
    match r.read(buf).await {
        Ok(0) | Err(_) => false,
        Ok(n) => {
            into.extend_from_slice(&buf[..n]);
            true
        }
    }
}

/// The command's process group. Killing it reaches every process the command started (unless
/// one moved to a group of its own). If the run is cancelled before it finished, dropping this
/// kills the group, so no grandchild outlives a cancelled run.
struct ProcessGroup(Option<Pid>);

impl ProcessGroup {
    /// The group led by the process `pid`. Without a usable pid there is nothing to kill; pid 1
    /// is refused, as `kill(-1)` would signal every process we may signal.
    fn led_by(pid: Option<u32>) -> ProcessGroup {
        let pgid = pid
            .and_then(|pid| i32::try_from(pid).ok())
            .and_then(Pid::from_raw)
            .filter(|pgid| !pgid.is_init());
        ProcessGroup(pgid)
    }

    /// `SIGKILL` the group: one `kill(2)` call, no process spawned. True if any process was
    /// still in the group; `ESRCH` (the group is already empty) is the common case after a clean
    /// exit and not an error. Other errors are logged and otherwise ignored.
    fn kill(&self) -> bool {
        let Some(pgid) = self.0 else { return false };
        match process::kill_process_group(pgid, Signal::KILL) {
            Ok(()) => true,
            Err(Errno::SRCH) => false,
            Err(error) => {
                tracing::warn!(pgid = pgid.as_raw_pid(), %error, "could not kill the process group");
                false
            }
        }
    }

    /// The run finished and [`ProcessGroup::kill`] already ran: nothing left to do on drop.
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        // Runs only when a run is cancelled or `drive` failed. A syscall, so fine to make here.
        self.kill();
    }
}
