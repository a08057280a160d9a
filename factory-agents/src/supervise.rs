//! The process supervisor: one small process per command, between Factory and `sh -c`, that makes
//! sure nothing the command starts outlives it or Factory.
//!
//! A process group is not enough: a child that calls `setsid` leaves it, and when Factory is
//! killed with `kill -9` nobody kills the group at all. The supervisor therefore
//! - is a *child subreaper*, so every orphaned descendant (even after `setsid` and a double fork)
//!   is re-parented to it and stays findable;
//! - has a *parent-death signal* (SIGTERM), so it hears of Factory's death however it died, and
//!   checks right after setting it that Factory is still its parent, closing the race with a
//!   Factory that died first;
//! - applies the filesystem sandbox ([`crate::fs_sandbox`]) to itself, so the command inherits it;
//! - when the command exits, on SIGTERM/SIGINT/SIGHUP, or when Factory dies, ends every remaining
//!   descendant (found through `/proc`): SIGTERM, a grace period, then SIGSTOP + SIGKILL until none
//!   is left, and reaps them; then it exits with the command's exit code.
//!
//! Programs reach it in one of two ways: the `factory-supervise` binary of this crate, or any
//! binary whose `main` starts with [`run_if_requested`] (the `factory` CLI does), which is what
//! [`Supervisor::this_program`] launches.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use rustix::io::Errno;
use rustix::process::{self, Pid, Signal, WaitOptions, WaitStatus};
use serde::{Deserialize, Serialize};
use tokio::signal::unix::{SignalKind, signal};

use crate::fs_sandbox::{FsPolicy, LandlockSupport};
use crate::procfs;

/// The first argument that turns a program into the supervisor (see [`run_if_requested`]).
pub const SUPERVISE_ARG: &str = "__supervise";

/// The supervisor's exit code when it could not run the command at all (the reason is on
/// stderr). Same as `env(1)`'s and `timeout(1)`'s.
pub const SUPERVISOR_FAILED: u8 = 125;

/// How Factory starts the supervisor: a program and the arguments before the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Supervisor {
    program: PathBuf,
    args: Vec<OsString>,
}

impl Supervisor {
    /// The running program itself with [`SUPERVISE_ARG`]: right for any binary whose `main`
    /// starts with [`run_if_requested`]. It is started as `/proc/self/exe`, so a binary replaced
    /// on disk during a run (e.g. by `cargo install`) still supervises with the running version.
    pub fn this_program() -> Supervisor {
        Supervisor {
            program: PathBuf::from("/proc/self/exe"),
            args: vec![OsString::from(SUPERVISE_ARG)],
        }
    }

    /// A dedicated supervisor binary, such as this crate's `factory-supervise`.
    pub fn program(program: impl Into<PathBuf>) -> Supervisor {
        Supervisor {
            program: program.into(),
            args: Vec::new(),
        }
    }

    /// The program started.
    pub fn program_path(&self) -> &std::path::Path {
        &self.program
    }

    /// The arguments before the request.
    pub fn leading_args(&self) -> &[OsString] {
        &self.args
    }
}

impl Default for Supervisor {
    fn default() -> Self {
        Supervisor::this_program()
    }
}

/// What Factory asks of the supervisor: its single argument after the leading ones, as JSON.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub(crate) enum Request {
    /// Apply the sandbox for `writable`, print a [`ProbeAnswer`], exit.
    Probe {
        /// The configured writable paths.
        writable: Vec<PathBuf>,
    },
    /// Run `command` with `sh -c` under the policy, as a child of process `parent`.
    Run {
        /// The shell command line.
        command: String,
        /// Factory's pid: if the supervisor's parent is another process, Factory is gone.
        parent: i32,
        /// The filesystem policy; `None` runs unsandboxed.
        sandbox: Option<FsPolicy>,
        /// Milliseconds between SIGTERM and SIGKILL when ending descendants.
        grace_ms: u64,
    },
}

/// What a probe prints on stdout.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ProbeAnswer {
    /// [`PROBE_MAGIC`], so a program that is not a supervisor is recognised.
    pub supervisor: String,
    /// What the kernel enforced.
    pub landlock: LandlockSupport,
}

/// Marks a probe answer.
pub(crate) const PROBE_MAGIC: &str = "factory-supervise/1";

/// Call first thing in `main` of a program that runs commands through
/// [`ProcessSandbox`](crate::ProcessSandbox) or [`CommandAgent`](crate::CommandAgent) with the
/// default [`Supervisor::this_program`]: when the program was started as the supervisor
/// (`argv[1] == "__supervise"`), this runs it and returns the exit code `main` must return;
/// otherwise it returns `None` at once.
///
/// ```no_run
/// fn main() -> std::process::ExitCode {
///     if let Some(code) = factory_agents::supervise::run_if_requested() {
///         return code;
///     }
///     // … the program …
///     std::process::ExitCode::SUCCESS
/// }
/// ```
pub fn run_if_requested() -> Option<ExitCode> {
    let mut args = std::env::args_os().skip(1);
    if args.next().as_deref() != Some(OsStr::new(SUPERVISE_ARG)) {
        return None;
    }
    Some(main_from_args(args))
}

/// The supervisor's `main`: `args` are the arguments after the program name (and after
/// [`SUPERVISE_ARG`]), i.e. the one JSON request.
pub fn main_from_args(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    let args: Vec<OsString> = args.into_iter().collect();
    let request = match args.as_slice() {
        [one] => one
            .to_str()
            .ok_or_else(|| "the request is not UTF-8".to_owned())
            .and_then(|s| serde_json::from_str::<Request>(s).map_err(|e| e.to_string())),
        _ => Err(format!(
            "expected one JSON request, got {} arguments",
            args.len()
        )),
    };
    match request {
        Ok(Request::Probe { writable }) => probe(writable),
        Ok(Request::Run {
            command,
            parent,
            sandbox,
            grace_ms,
        }) => run(
            &command,
            parent,
            sandbox.as_ref(),
            Duration::from_millis(grace_ms),
        ),
        Err(e) => fail(&format!(
            "{e} (this program is started by Factory, not by hand)"
        )),
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("factory-supervise: {message}");
    ExitCode::from(SUPERVISOR_FAILED)
}

fn probe(writable: Vec<PathBuf>) -> ExitCode {
    let landlock = match FsPolicy::new(writable).restrict_self() {
        Ok(support) => support,
        Err(e) => LandlockSupport::Unsupported {
            reason: format!("the Landlock ruleset could not be applied: {e}"),
        },
    };
    let answer = ProbeAnswer {
        supervisor: PROBE_MAGIC.to_owned(),
        landlock,
    };
    match serde_json::to_string(&answer) {
        Ok(json) => {
            println!("{json}");
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e.to_string()),
    }
}

fn run(command: &str, parent: i32, sandbox: Option<&FsPolicy>, grace: Duration) -> ExitCode {
    // Containment first, before anything can be started.
    if let Err(e) = process::set_child_subreaper(Some(process::getpid())) {
        return fail(&format!("cannot become a child subreaper: {e}"));
    }
    if let Err(e) = process::set_parent_process_death_signal(Some(Signal::TERM)) {
        return fail(&format!("cannot set the parent-death signal: {e}"));
    }
    if process::getppid().map(Pid::as_raw_pid) != Some(parent) {
        // Factory died before the parent-death signal was armed: run nothing.
        return fail("Factory exited before the command started");
    }
    // Opened before the sandbox applies; replaces our own stdin/stdout once the command has
    // them, so a command that closes its stdin is not kept waiting on our copy.
    let dev_null = File::options().read(true).write(true).open("/dev/null");
    if let Some(policy) = sandbox {
        match policy.restrict_self() {
            Ok(LandlockSupport::Enforced { .. }) => {}
            Ok(LandlockSupport::Unsupported { reason }) => {
                return fail(&format!(
                    "the filesystem sandbox cannot be enforced: {reason}"
                ));
            }
            Err(e) => return fail(&format!("cannot apply the filesystem sandbox: {e}")),
        }
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(&format!("cannot start the async runtime: {e}")),
    };
    runtime.block_on(supervise(command, parent, dev_null.ok(), grace))
}

/// Why the supervisor stops the command.
enum Stop {
    /// The command exited (or was killed) on its own.
    Exited(WaitStatus),
    /// A signal told the supervisor to stop, or Factory died.
    Told(i32),
}

async fn supervise(
    command: &str,
    parent: i32,
    dev_null: Option<File>,
    grace: Duration,
) -> ExitCode {
    // Handlers first, so no signal between the spawn and the loop is lost.
    let signals = [
        SignalKind::terminate(),
        SignalKind::interrupt(),
        SignalKind::hangup(),
        SignalKind::child(),
    ]
    .map(signal);
    let [Ok(mut term), Ok(mut int), Ok(mut hup), Ok(mut chld)] = signals else {
        return fail("cannot install signal handlers");
    };
    let main = match std::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .spawn()
    {
        // Dropping a std Child neither kills nor waits: reaping is ours.
        Ok(child) => i32::try_from(child.id()).ok().and_then(Pid::from_raw),
        Err(e) => return fail(&format!("cannot start sh: {e}")),
    };
    let Some(main) = main else {
        return fail("the command has no usable pid");
    };
    if let Some(null) = &dev_null {
        let _ = rustix::stdio::dup2_stdin(null);
        let _ = rustix::stdio::dup2_stdout(null);
    }

    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let stop = loop {
        if let Some(status) = reap_all(Some(main)) {
            break Stop::Exited(status);
        }
        tokio::select! {
            _ = chld.recv() => {}
            _ = term.recv() => break Stop::Told(15),
            _ = int.recv() => break Stop::Told(2),
            _ = hup.recv() => break Stop::Told(1),
            _ = tick.tick() => {
                // A backstop for the parent-death signal.
                if process::getppid().map(Pid::as_raw_pid) != Some(parent) {
                    break Stop::Told(15);
                }
            }
        }
    };
    end_descendants(grace).await;
    let code = match stop {
        Stop::Exited(status) => status
            .exit_status()
            .or_else(|| status.terminating_signal().map(|s| 128 + s))
            .unwrap_or(i32::from(SUPERVISOR_FAILED)),
        Stop::Told(signal) => 128 + signal,
    };
    ExitCode::from(u8::try_from(code).unwrap_or(SUPERVISOR_FAILED))
}

/// Reaps every exited child; returns `watch`'s status if it was among them.
fn reap_all(watch: Option<Pid>) -> Option<WaitStatus> {
    let mut found = None;
    while let Ok(Some((pid, status))) = process::wait(WaitOptions::NOHANG) {
        if Some(pid) == watch {
            found = Some(status);
        }
    }
    found
}

/// Ends every descendant: SIGTERM (and SIGCONT, so stopped ones see it), up to `grace` for them
/// to exit, then SIGSTOP + SIGKILL rounds (stopped processes cannot fork a replacement) until
/// none is left. Reaps whatever was re-parented to us on the way.
async fn end_descendants(grace: Duration) {
    reap_all(None);
    if no_children() {
        // The usual end: the command left nothing running, and /proc need not be searched.
        return;
    }
    let me = process::getpid();
    let first = descendants(me);
    if !first.is_empty() {
        signal_all(&first, Signal::TERM);
        signal_all(&first, Signal::CONT);
        let until = Instant::now() + grace;
        while Instant::now() < until {
            reap_all(None);
            if descendants(me).is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    for _ in 0..500 {
        reap_all(None);
        let left = descendants(me);
        if left.is_empty() {
            return;
        }
        signal_all(&left, Signal::STOP);
        signal_all(&left, Signal::KILL);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    eprintln!("factory-supervise: some processes the command started could not be ended");
}

/// Whether this process has no child at all, running or exited. As a child subreaper it then
/// has no descendant either: a live descendant's parent is alive and below us, or, once that
/// parent died, is us. (A child that exits now is reaped by the caller's next sweep.)
fn no_children() -> bool {
    matches!(process::wait(WaitOptions::NOHANG), Err(Errno::CHILD))
}

fn signal_all(pids: &[Pid], signal: Signal) {
    for &pid in pids {
        // ESRCH (already gone) is expected; nothing else can be done about other errors.
        let _ = process::kill_process(pid, signal);
    }
}

/// The live (not zombie) descendants of `root`, found by following parent links in `/proc`.
pub(crate) fn descendants(root: Pid) -> Vec<Pid> {
    let mut children: HashMap<i32, Vec<(i32, bool)>> = HashMap::new();
    for stat in procfs::all_processes() {
        children
            .entry(stat.ppid)
            .or_default()
            .push((stat.pid, stat.is_alive()));
    }
    let mut found = Vec::new();
    let mut stack = vec![root.as_raw_pid()];
    while let Some(parent) = stack.pop() {
        for &(pid, alive) in children.get(&parent).map(Vec::as_slice).unwrap_or(&[]) {
            stack.push(pid);
            if alive {
                found.extend(Pid::from_raw(pid));
            }
        }
    }
    found
}
