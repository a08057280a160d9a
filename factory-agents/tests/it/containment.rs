//! No process a command started outlives it, or Factory: not after `setsid`, not when the
//! supervisor is told to stop, not when the process running Factory is killed with SIGKILL or
//! SIGTERM.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use factory_core::ports::{CommandSpec, Sandbox};

use crate::fixture::{process_sandbox, read_pid, wait_dead, wait_for_line};

/// The shell lines that leave processes behind: a `setsid` escapee (new session and group,
/// orphaned at once) and a plain background child, writing their pids into `dir`.
fn leave_processes(dir: &Path) -> String {
    let d = dir.display();
    format!(
        "setsid sh -c 'sleep 300 & echo $! > {d}/escaped.pid' </dev/null >/dev/null 2>&1; \
         sleep 300 </dev/null >/dev/null 2>&1 & echo $! > {d}/background.pid; \
         while [ ! -s {d}/escaped.pid ]; do sleep 0.01; done"
    )
}

fn spec(command: String, dir: &Path) -> CommandSpec {
    CommandSpec {
        command,
        cwd: dir.to_owned(),
        timeout: Duration::from_secs(60),
        writable: vec![dir.to_owned()],
        ..CommandSpec::default()
    }
}

#[tokio::test]
async fn processes_that_called_setsid_are_ended_when_the_command_exits() {
    let dir = tempfile::tempdir().unwrap();
    let command = format!("{}; echo done", leave_processes(dir.path()));
    let out = process_sandbox()
        .run(spec(command, dir.path()))
        .await
        .unwrap();
    assert!(out.success(), "{out:?}");
    assert_eq!(out.stdout, "done\n");
    for name in ["escaped.pid", "background.pid"] {
        let pid = read_pid(&dir.path().join(name));
        assert!(
            wait_dead(pid, Duration::from_secs(5)).await,
            "{name}: process {pid} outlived the command"
        );
    }
}

#[tokio::test]
async fn sigterm_to_the_supervisor_ends_the_command_and_everything_it_started() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    // $PPID of the command's shell is the supervisor.
    let command = format!(
        "echo $PPID > {d}/supervisor.pid; {}; echo $$ > {d}/shell.pid; sleep 300",
        leave_processes(dir.path())
    );
    let sandbox = process_sandbox();
    let cwd = dir.path().to_owned();
    let run = tokio::spawn(async move { sandbox.run(spec(command, &cwd)).await });
    let d = dir.path();
    assert!(
        wait_for_line(&d.join("shell.pid"), Duration::from_secs(10)).await,
        "the command never started"
    );
    let supervisor = read_pid(&d.join("supervisor.pid"));
    let pids = ["shell.pid", "escaped.pid", "background.pid"].map(|n| read_pid(&d.join(n)));
    signal(supervisor, "TERM");
    let out = tokio::time::timeout(Duration::from_secs(5), run)
        .await
        .expect("the run did not end within 5 s of SIGTERM")
        .unwrap()
        .unwrap();
    assert_eq!(out.exit_code, Some(128 + 15), "{out:?}");
    for pid in pids.into_iter().chain([supervisor]) {
        assert!(
            wait_dead(pid, Duration::from_secs(5)).await,
            "process {pid} survived SIGTERM to the supervisor"
        );
    }
}

/// Runs in a child process of the test below (see there); does nothing in a normal test run.
#[tokio::test]
#[ignore = "helper process for factory_killed_by_a_signal_leaves_no_process_behind"]
async fn helper_runs_a_command_until_killed() {
    let Some(dir) = std::env::var_os("FACTORY_IT_HELPER_DIR") else {
        return;
    };
    let dir = Path::new(&dir);
    let command = format!(
        "{}; echo $$ > {}/shell.pid; sleep 300",
        leave_processes(dir),
        dir.display()
    );
    let _ = process_sandbox().run(spec(command, dir)).await;
}

#[tokio::test]
async fn factory_killed_by_a_signal_leaves_no_process_behind() {
    for sig in ["KILL", "TERM", "HUP"] {
        let dir = tempfile::tempdir().unwrap();
        // A process that runs a command through ProcessSandbox, as `factory run` does: this test
        // binary running only the helper test above.
        let mut helper = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "containment::helper_runs_a_command_until_killed",
                "--ignored",
                "--test-threads=1",
            ])
            .env("FACTORY_IT_HELPER_DIR", dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        assert!(
            wait_for_line(&dir.path().join("shell.pid"), Duration::from_secs(20)).await,
            "the helper's command never started"
        );
        let helper_pid = helper.id();
        let mut pids: Vec<u32> = ["shell.pid", "escaped.pid", "background.pid"]
            .map(|n| read_pid(&dir.path().join(n)))
            .to_vec();
        pids.extend(descendants_of(helper_pid));
        signal(helper_pid, sig);
        helper.wait().unwrap();
        for pid in pids {
            assert!(
                wait_dead(pid, Duration::from_secs(5)).await,
                "SIG{sig} to Factory: process {pid} still runs 5 s later"
            );
        }
    }
}

fn signal(pid: u32, sig: &str) {
    let status = std::process::Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(status.success(), "kill -{sig} {pid}");
}

/// Every process below `root` now, by following parent links in /proc.
fn descendants_of(root: u32) -> Vec<u32> {
    let mut parent_of: Vec<(u32, u32)> = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        if let Some(ppid) = rest.split_whitespace().nth(1).and_then(|p| p.parse().ok()) {
            parent_of.push((pid, ppid));
        }
    }
    let mut found = vec![root];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(
            parent_of
                .iter()
                .filter(|&&(_, ppid)| ppid == parent)
                .map(|&(pid, _)| pid),
        );
        i += 1;
    }
    found.remove(0);
    found
}
