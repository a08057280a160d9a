//! Commands an earlier Factory left running: every command is recorded while it runs, and
//! `end_leftover_children` ends those whose Factory is gone, and nothing else.

use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Child, Command};
use std::time::Duration;

use factory_agents::{
    ChildRecord, ProcessOptions, ProcessSandbox, end_leftover_children, write_record,
};
use factory_core::ports::{CommandSpec, Sandbox};

use crate::fixture::{read_pid, supervisor, wait_dead, wait_for_line};

/// Field 22 of /proc/<pid>/stat.
fn start_time(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let (_, rest) = stat.rsplit_once(')').unwrap();
    rest.split_whitespace().nth(19).unwrap().parse().unwrap()
}

/// A process in a process group of its own, as a supervisor runs; its group is killed when
/// the test ends, passed or failed.
struct Group(Child);

impl Drop for Group {
    fn drop(&mut self) {
        if let Some(pid) = rustix::process::Pid::from_raw(self.0.id() as i32) {
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        }
        let _ = self.0.wait();
    }
}

impl std::ops::Deref for Group {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Group {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

fn own_group(program: &str, args: &[&str]) -> Group {
    Group(
        Command::new(program)
            .args(args)
            .process_group(0)
            .spawn()
            .unwrap(),
    )
}

/// A record of `pid` (leading its own group) started by a Factory that is gone: the owner is
/// this test process, but with a start time it does not have.
fn orphan_record(pid: u32, start_time: u64) -> ChildRecord {
    ChildRecord {
        pid: pid as i32,
        pgid: pid as i32,
        start_time,
        what: "worker agent".into(),
        command: "my-agent --stdin".into(),
        workdir: "/tmp/worktree".into(),
        owner_pid: std::process::id() as i32,
        owner_start_time: 0,
    }
}

fn records_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[tokio::test]
async fn a_live_leftover_group_is_ended_and_a_reused_pid_is_not_touched() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("children");
    let mut leftover = own_group("sleep", &["1000"]);
    let mut reused = own_group("sleep", &["1000"]);
    let gone = {
        let mut child = Command::new("true").spawn().unwrap();
        child.wait().unwrap();
        child.id()
    };
    write_record(
        &dir,
        &orphan_record(leftover.id(), start_time(leftover.id())),
    )
    .unwrap();
    // Alive, but not the process that was recorded: it started at another time.
    write_record(
        &dir,
        &orphan_record(reused.id(), start_time(reused.id()) + 1),
    )
    .unwrap();
    write_record(&dir, &orphan_record(gone, 1)).unwrap();
    std::fs::write(dir.join("999999999.json"), "not json").unwrap();

    let ended = end_leftover_children(&dir).await;
    assert_eq!(ended.len(), 1, "{ended:?}");
    assert_eq!(ended[0].record.pid, leftover.id() as i32);
    assert!(!ended[0].killed, "sleep ends on SIGTERM");
    assert_eq!(
        ended[0].to_string(),
        format!(
            "ended a worker agent left running by an earlier run (pid {}, in /tmp/worktree): my-agent --stdin",
            leftover.id()
        )
    );
    assert_eq!(leftover.wait().unwrap().signal(), Some(15));
    assert_eq!(
        reused.try_wait().unwrap(),
        None,
        "a reused pid was signalled"
    );
    assert_eq!(records_in(&dir), Vec::<String>::new());
}

#[tokio::test]
async fn the_commands_of_a_live_factory_are_left_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("children");
    let mut child = own_group("sleep", &["1000"]);
    let mut record = orphan_record(child.id(), start_time(child.id()));
    // Started by a process that still runs (here: a sleep standing in for another Factory).
    let owner = own_group("sleep", &["1000"]);
    record.owner_pid = owner.id() as i32;
    record.owner_start_time = start_time(owner.id());
    write_record(&dir, &record).unwrap();

    assert!(end_leftover_children(&dir).await.is_empty());
    assert_eq!(child.try_wait().unwrap(), None);
    assert_eq!(records_in(&dir), vec![format!("{}.json", child.id())]);
}

#[tokio::test]
async fn a_group_that_ignores_sigterm_is_killed_after_the_grace_period() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("children");
    let ready = tmp.path().join("ready");
    let script = format!(
        "trap '' TERM; echo > {}; sleep 1000 & wait",
        ready.display()
    );
    let mut stubborn = own_group("sh", &["-c", &script]);
    // SIGTERM before the trap is set would end it at once.
    assert!(wait_for_line(&ready, Duration::from_secs(10)).await);
    write_record(
        &dir,
        &orphan_record(stubborn.id(), start_time(stubborn.id())),
    )
    .unwrap();
    let ended = end_leftover_children(&dir).await;
    assert_eq!(ended.len(), 1);
    assert!(ended[0].killed);
    assert!(
        ended[0]
            .to_string()
            .contains(", killed after the grace period)")
    );
    assert_eq!(stubborn.wait().unwrap().signal(), Some(9));
}

/// The real thing: a command run through the sandbox is recorded while it runs (the record
/// names its supervisor), and once its Factory counts as gone, ending it ends what the command
/// started too, `setsid` escapees included; the record of a finished command is removed.
#[tokio::test]
async fn a_running_command_is_recorded_and_its_leftover_supervisor_ends_everything() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("children");
    let work = tmp.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let sandbox = ProcessSandbox::with_options(ProcessOptions {
        supervisor: supervisor(),
        children_dir: Some(dir.clone()),
        ..ProcessOptions::default()
    });
    let w = work.display();
    let command = format!(
        "setsid sh -c 'sleep 300 & echo $! > {w}/escaped.pid' </dev/null >/dev/null 2>&1; \
         while [ ! -s {w}/escaped.pid ]; do sleep 0.01; done; echo $PPID > {w}/supervisor.pid; sleep 300"
    );
    let spec = CommandSpec {
        command: command.clone(),
        cwd: work.clone(),
        env: vec![("FACTORY_ROLE".into(), "worker".into())],
        timeout: Duration::from_secs(60),
        writable: vec![work.clone()],
        ..CommandSpec::default()
    };
    let run = tokio::spawn(async move { sandbox.run(spec).await });
    assert!(wait_for_line(&work.join("supervisor.pid"), Duration::from_secs(10)).await);
    let supervisor_pid = read_pid(&work.join("supervisor.pid"));
    let escaped = read_pid(&work.join("escaped.pid"));

    let path = dir.join(format!("{supervisor_pid}.json"));
    let mut record: ChildRecord = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(
        (record.pid, record.pgid, record.start_time),
        (
            supervisor_pid as i32,
            supervisor_pid as i32,
            start_time(supervisor_pid)
        )
    );
    assert_eq!(record.what, "worker agent");
    assert_eq!(record.command, command);
    assert_eq!(record.workdir, work);
    assert_eq!(record.owner_pid, std::process::id() as i32);
    assert_eq!(record.owner_start_time, start_time(std::process::id()));
    // While its Factory runs, a sweep leaves it alone.
    assert!(end_leftover_children(&dir).await.is_empty());
    assert!(path.exists());

    // As if this Factory had died: the sweep ends it, and its supervisor everything below.
    record.owner_start_time = 0;
    write_record(&dir, &record).unwrap();
    let ended = end_leftover_children(&dir).await;
    assert_eq!(ended.len(), 1, "{ended:?}");
    assert!(!ended[0].killed);
    let out = run.await.unwrap().unwrap();
    assert_eq!(out.exit_code, Some(143), "{out:?}");
    assert!(
        wait_dead(escaped, Duration::from_secs(5)).await,
        "the setsid escapee outlived its ended supervisor"
    );
    assert_eq!(records_in(&dir), Vec::<String>::new());

    // A command that finishes leaves no record behind.
    let sandbox = ProcessSandbox::with_options(ProcessOptions {
        supervisor: supervisor(),
        children_dir: Some(dir.clone()),
        ..ProcessOptions::default()
    });
    let out = sandbox
        .run(CommandSpec {
            command: format!("ls {} | wc -l", dir.display()),
            cwd: work.clone(),
            timeout: Duration::from_secs(30),
            ..CommandSpec::default()
        })
        .await
        .unwrap();
    assert_eq!(out.stdout.trim(), "1", "its own record, while it ran");
    assert_eq!(records_in(&dir), Vec::<String>::new());
}
