//! On start, `factory run` ends the commands an earlier run left running (recorded under
//! `.factory/run/children/`), and only those.

use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Child, Command};

use crate::fixture::{factory, factory_repo, status_json, stderr, stdout, tasks_of};

/// Field 22 of /proc/<pid>/stat: when the process started.
fn start_time(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let (_, rest) = stat.rsplit_once(')').unwrap();
    rest.split_whitespace().nth(19).unwrap().parse().unwrap()
}

/// `sleep 1000` leading a process group of its own, as an agent's supervisor does; the group is
/// killed when the test ends, passed or failed.
struct Sleeper(Child);

impl Sleeper {
    fn start() -> Sleeper {
        Sleeper(
            Command::new("sleep")
                .arg("1000")
                .process_group(0)
                .spawn()
                .unwrap(),
        )
    }
}

impl Drop for Sleeper {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.0.id())])
            .status();
        let _ = self.0.wait();
    }
}

/// What a `factory` process that has since died wrote for a worker agent it started.
fn write_record(dir: &Path, pid: u32, start_time: u64, worktree: &Path) {
    let children = dir.join(".factory/run/children");
    std::fs::create_dir_all(&children).unwrap();
    let record = serde_json::json!({
        "pid": pid,
        "pgid": pid,
        "start_time": start_time,
        "what": "worker agent",
        "command": "my-agent --stdin",
        "workdir": worktree,
        // A pid with a start time it does not have: that process is gone.
        "owner_pid": std::process::id(),
        "owner_start_time": 0,
    });
    std::fs::write(
        children.join(format!("{pid}.json")),
        serde_json::to_vec_pretty(&record).unwrap(),
    )
    .unwrap();
}

#[test]
fn factory_run_ends_what_an_earlier_run_left_running_and_nothing_else() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("repo");
    factory_repo(&dir, &["a"], "true");
    let worktree = dir.join(".factory/worktrees/tasks/001-add-a-file");
    let mut leftover = Sleeper::start();
    write_record(
        &dir,
        leftover.0.id(),
        start_time(leftover.0.id()),
        &worktree,
    );
    // A live process whose pid was recorded for another process (another start time): the
    // recorded one is gone and its pid reused; this one must not be touched.
    let mut reused = Sleeper::start();
    write_record(
        &dir,
        reused.0.id(),
        start_time(reused.0.id()) + 1,
        &worktree,
    );
    assert!(factory(&dir, &["epic", "add", "Add a"]).status.success());

    let out = factory(&dir, &["run"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let line = format!(
        "ended a worker agent left running by an earlier run (pid {}, in {}): my-agent --stdin",
        leftover.0.id(),
        worktree.display()
    );
    assert!(
        stdout(&out).lines().next() == Some(line.as_str()),
        "{}",
        stdout(&out)
    );
    assert!(
        !stdout(&out).contains(&format!("pid {}", reused.0.id())),
        "{}",
        stdout(&out)
    );
    assert_eq!(leftover.0.wait().unwrap().signal(), Some(15));
    assert_eq!(
        reused.0.try_wait().unwrap(),
        None,
        "a reused pid was signalled"
    );
    // Both records are gone, and the run's own commands left none behind.
    let left: Vec<_> = std::fs::read_dir(dir.join(".factory/run/children"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "{left:?}");
    assert_eq!(tasks_of(&status_json(&dir))[0]["state"], "completed");
}
