//! What the tests share: a clock that stands still, requests, and process checks.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use factory_agents::{ProcessOptions, ProcessSandbox, Supervisor};
use factory_core::Timestamp;
use factory_core::agent::{AgentId, AgentRole};
use factory_core::ports::{AgentRequest, Clock, SystemClock};
use factory_core::spec::SpecId;

/// Always the same instant, so transcripts can be compared exactly.
pub struct FixedClock(pub Timestamp);

impl FixedClock {
    pub fn new() -> FixedClock {
        FixedClock(SystemClock.now())
    }
}

impl Clock for FixedClock {
    fn now(&self) -> Timestamp {
        self.0
    }
}

/// A worker/reviewer request for task `key`, round `round`, in `workdir`, with `spec_dir`.
pub fn task_request(
    role: AgentRole,
    key: &str,
    round: u32,
    workdir: &Path,
    spec_dir: &Path,
) -> AgentRequest {
    let spec_id = SpecId::new(1, "Add greeting");
    AgentRequest {
        role,
        agent_id: AgentId::new(role, &spec_id),
        prompt: format!("do the {key} task, round {round}"),
        workdir: workdir.to_owned(),
        spec_id: Some(spec_id),
        spec_dir: Some(spec_dir.to_owned()),
        task_key: Some(key.to_owned()),
        round,
    }
}

/// The planner's request, in `repo`.
pub fn planner_request(repo: &Path) -> AgentRequest {
    AgentRequest {
        role: AgentRole::Planner,
        agent_id: AgentId::new(AgentRole::Planner, "epic-1"),
        prompt: "plan the epic".to_owned(),
        workdir: repo.to_owned(),
        spec_id: None,
        spec_dir: None,
        task_key: None,
        round: 1,
    }
}

/// A temp dir with `workdir/` and `spec/` inside.
pub struct TaskDirs {
    pub _tmp: tempfile::TempDir,
    pub workdir: PathBuf,
    pub spec_dir: PathBuf,
}

pub fn task_dirs() -> TaskDirs {
    let tmp = tempfile::tempdir().unwrap();
    let workdir = tmp.path().join("workdir");
    let spec_dir = tmp.path().join("spec");
    std::fs::create_dir_all(&workdir).unwrap();
    std::fs::create_dir_all(&spec_dir).unwrap();
    TaskDirs {
        _tmp: tmp,
        workdir,
        spec_dir,
    }
}

/// Whether process `pid` is gone (exited; a zombie nobody reaped counts as gone).
fn is_dead(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        // "pid (comm) S ...": the state follows the last ')'.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])),
    }
}

/// Waits (bounded) for process `pid` to be gone; false if it still runs after `limit`.
pub async fn wait_dead(pid: u32, limit: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if is_dead(pid) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    is_dead(pid)
}

/// The pid a command wrote into `file`.
pub fn read_pid(file: &Path) -> u32 {
    std::fs::read_to_string(file)
        .unwrap_or_else(|e| panic!("{}: {e}", file.display()))
        .trim()
        .parse()
        .unwrap()
}

/// The `factory-supervise` binary of this crate: test binaries cannot be their own supervisor.
pub fn supervisor() -> Supervisor {
    Supervisor::program(env!("CARGO_BIN_EXE_factory-supervise"))
}

/// A process sandbox with the default settings and this crate's supervisor binary.
pub fn process_sandbox() -> ProcessSandbox {
    ProcessSandbox::with_options(ProcessOptions {
        supervisor: supervisor(),
        ..ProcessOptions::default()
    })
}

/// Waits (bounded) for `file` to hold a complete line, as a command writes a pid.
pub async fn wait_for_line(file: &Path, limit: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if std::fs::read_to_string(file).is_ok_and(|s| s.ends_with('\n')) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}
