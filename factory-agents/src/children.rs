//! A record of every command Factory has running, so that a run can end what an earlier one left
//! behind.
//!
//! Each command's supervisor normally ends everything when Factory dies, even by `kill -9`. The
//! record is for when that did not happen (the supervisor itself was killed, or hung): each
//! supervisor Factory starts gets a file `<dir>/<pid>.json` (normally `.factory/run/children/`)
//! saying which process it is (pid, process group, start time), what it runs and where, and which
//! Factory process started it. The file is written when it starts and removed when it ends. A
//! new run calls [`end_leftover_children`] before it touches any worktree.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::process::{self, Pid, Signal};
use serde::{Deserialize, Serialize};

use crate::procfs::{self, ProcStat};

/// How long the processes of a leftover command get to end after SIGTERM (their supervisor
/// gives its own descendants 2 s), before the rest of its group is killed.
const LEFTOVER_GRACE: Duration = Duration::from_secs(5);

/// Between looks at whether they have ended.
const POLL: Duration = Duration::from_millis(20);

/// One running command, as recorded on disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChildRecord {
    /// The process Factory started (the command's supervisor).
    pub pid: i32,
    /// Its process group, which it leads and the command starts in.
    pub pgid: i32,
    /// Its start time (`/proc/<pid>/stat` field 22): a later process with the same pid has
    /// another.
    pub start_time: u64,
    /// What it is, for people: `worker agent`, `verify command`, …
    pub what: String,
    /// The command line.
    pub command: String,
    /// Where it runs: a task's worktree, or the repository for the planner.
    pub workdir: PathBuf,
    /// The Factory process that started it.
    pub owner_pid: i32,
    /// That process's start time.
    pub owner_start_time: u64,
}

/// A leftover command that [`end_leftover_children`] ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndedChild {
    /// What the record said.
    pub record: ChildRecord,
    /// Whether some of its processes had to be killed with SIGKILL after the grace period.
    pub killed: bool,
}

impl std::fmt::Display for EndedChild {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let r = &self.record;
        write!(
            f,
            "ended a {} left running by an earlier run (pid {}, in {}",
            r.what,
            r.pid,
            r.workdir.display()
        )?;
        if self.killed {
            f.write_str(", killed after the grace period")?;
        }
        write!(f, "): {}", short(&r.command, 80))
    }
}

/// At most `max` characters of `text`, on one line.
fn short(text: &str, max: usize) -> String {
    let line = text.lines().next().unwrap_or("");
    if line.chars().count() > max || line.len() < text.trim_end().len() {
        let cut: String = line.chars().take(max).collect();
        format!("{cut}…")
    } else {
        line.to_owned()
    }
}

/// Where records of running commands go.
#[derive(Debug, Clone)]
pub(crate) struct ChildRegistry {
    dir: PathBuf,
}

/// Removes its record when the command has ended (or its run was cancelled, which tells the
/// supervisor to end it).
#[derive(Debug)]
pub(crate) struct Registered {
    path: PathBuf,
}

impl Drop for Registered {
    fn drop(&mut self) {
        if let Err(error) = std::fs::remove_file(&self.path)
            && error.kind() != std::io::ErrorKind::NotFound
        {
            tracing::debug!(path = %self.path.display(), %error, "could not remove a child record");
        }
    }
}

impl ChildRegistry {
    pub(crate) fn new(dir: PathBuf) -> ChildRegistry {
        ChildRegistry { dir }
    }

    /// Records the just-started process `pid` (its own process group's leader) running
    /// `command` in `workdir`. `None` when it cannot be recorded: the command runs anyway, and
    /// only its cleanup after a crash of Factory and its supervisor is lost.
    pub(crate) fn register(
        &self,
        pid: u32,
        what: &str,
        command: &str,
        workdir: &Path,
    ) -> Option<Registered> {
        let stat = i32::try_from(pid).ok().and_then(procfs::read_stat)?;
        let me = procfs::read_stat(process::getpid().as_raw_pid())?;
        let record = ChildRecord {
            pid: stat.pid,
            pgid: stat.pgrp,
            start_time: stat.start_time,
            what: what.to_owned(),
            command: command.to_owned(),
            workdir: workdir.to_owned(),
            owner_pid: me.pid,
            owner_start_time: me.start_time,
        };
        match write_record(&self.dir, &record) {
            Ok(path) => Some(Registered { path }),
            Err(error) => {
                tracing::warn!(dir = %self.dir.display(), %error, "cannot record a running command; it will not be ended after a crash");
                None
            }
        }
    }
}

/// Writes `record` as `<dir>/<pid>.json` (whole, through a rename) and returns its path.
pub fn write_record(dir: &Path, record: &ChildRecord) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(format!("{}.json", record.pid));
    let temp = dir.join(format!(".{}.json.tmp", record.pid));
    let json = serde_json::to_vec_pretty(record).map_err(std::io::Error::other)?;
    std::fs::write(&temp, json)?;
    std::fs::rename(&temp, &path)?;
    Ok(path)
}

/// What a record found on start stands for now.
#[derive(Debug, PartialEq, Eq)]
enum Leftover {
    /// The process is gone, or its pid belongs to another process now: forget the record.
    Gone,
    /// A live Factory process started it and still runs: not ours to end.
    Owned,
    /// Still running, and whoever started it is gone: end it.
    Orphaned,
}

fn classify(record: &ChildRecord) -> Leftover {
    let same = |stat: Option<ProcStat>, start: u64| {
        stat.is_some_and(|s| s.is_alive() && s.start_time == start)
    };
    if !same(procfs::read_stat(record.pid), record.start_time) {
        return Leftover::Gone;
    }
    if same(procfs::read_stat(record.owner_pid), record.owner_start_time) {
        return Leftover::Owned;
    }
    Leftover::Orphaned
}

/// Ends every command recorded in `dir` that still runs although the Factory process that
/// started it is gone: its process group gets SIGTERM (its supervisor then ends everything the
/// command started), and what is left of the group after a grace period SIGKILL. Records of
/// processes that are gone, or whose pid now belongs to another process (another start time),
/// are removed without signalling anything; records of a live Factory's commands are left
/// alone. Returns what was ended.
pub async fn end_leftover_children(dir: &Path) -> Vec<EndedChild> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) => {
            if error.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(dir = %dir.display(), %error, "cannot read the records of running commands");
            }
            return Vec::new();
        }
    };
    let mut ended = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let record = match std::fs::read(&path)
            .map_err(|e| e.to_string())
            .and_then(|bytes| {
                serde_json::from_slice::<ChildRecord>(&bytes).map_err(|e| e.to_string())
            }) {
            Ok(record) => record,
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "removing an unreadable record of a running command");
                remove(&path);
                continue;
            }
        };
        match classify(&record) {
            Leftover::Owned => continue,
            Leftover::Gone => {
                tracing::debug!(
                    pid = record.pid,
                    "a recorded command has ended; forgetting it"
                );
            }
            Leftover::Orphaned => {
                let killed = end_group(&record).await;
                tracing::info!(
                    pid = record.pid,
                    what = %record.what,
                    workdir = %record.workdir.display(),
                    killed,
                    "ended a command left running by an earlier run"
                );
                ended.push(EndedChild { record, killed });
            }
        }
        remove(&path);
    }
    ended
}

fn remove(path: &Path) {
    if let Err(error) = std::fs::remove_file(path)
        && error.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(path = %path.display(), %error, "cannot remove a record of a running command");
    }
}

/// The live processes of the recorded command's group (the recorded process leads it), started
/// no earlier than that leader. The group id cannot be reused while the group has members; if
/// it now names another group (its live leader has another start time), there is nothing of
/// ours left in it.
fn members(record: &ChildRecord) -> Vec<Pid> {
    if procfs::read_stat(record.pgid)
        .is_some_and(|leader| leader.is_alive() && leader.start_time != record.start_time)
    {
        // The group id now belongs to another process's group.
        return Vec::new();
    }
    procfs::all_processes()
        .into_iter()
        .filter(|p| p.pgrp == record.pgid && p.is_alive() && p.start_time >= record.start_time)
        .filter_map(|p| Pid::from_raw(p.pid))
        .collect()
}

/// SIGTERM (and SIGCONT, for stopped ones) to the group, up to [`LEFTOVER_GRACE`] for it to
/// end, then SIGKILL to what is left. Whether anything had to be killed.
async fn end_group(record: &ChildRecord) -> bool {
    let Some(pgid) = Pid::from_raw(record.pgid).filter(|p| !p.is_init()) else {
        return false;
    };
    for signal in [Signal::TERM, Signal::CONT] {
        let _ = process::kill_process_group(pgid, signal);
    }
    if wait_until_gone(record, LEFTOVER_GRACE).await {
        return false;
    }
    for _ in 0..50 {
        let left = members(record);
        if left.is_empty() {
            break;
        }
        for pid in left {
            let _ = process::kill_process(pid, Signal::KILL);
        }
        tokio::time::sleep(POLL).await;
    }
    true
}

/// Waits up to `limit` for the group to have no live member; whether it came to that.
async fn wait_until_gone(record: &ChildRecord, limit: Duration) -> bool {
    let until = Instant::now() + limit;
    loop {
        if members(record).is_empty() {
            return true;
        }
        if Instant::now() >= until {
            return false;
        }
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::short;

    #[test]
    fn commands_are_shown_on_one_short_line() {
        assert_eq!(short("sleep 1", 80), "sleep 1");
        assert_eq!(short("abcdef", 3), "abc…");
        assert_eq!(short("one\ntwo", 80), "one…");
        assert_eq!(short("one\n", 80), "one");
    }
}
