//! Git's own lock on a checkout's `HEAD`, held by Factory while it moves that checkout to a
//! merge, and the recovery of one that a Factory process left behind.
//!
//! The lock file says who holds it and which move it guards (`old` → `merged`). Factory removes
//! it when the move is done or undone. When the move is cut short (`kill -9`, or a stopped run
//! dropping the merge step between moving the checkout and moving the branch) the file stays,
//! as the record of an unfinished move: the next merge finds it, sees that its holder is gone,
//! and puts the checkout back where its branch is before taking the lock itself. Without this,
//! the lock blocked every later merge and every `git commit` of the user.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use factory_core::ports::VcsError;
use gix::ObjectId;

use crate::cli::Checkout;
use crate::read;
use crate::repo::GitRepo;

/// First line of a lock file Factory wrote.
const MAGIC: &str = "factory HEAD lock v1";

/// Lock tokens this process holds right now: a lock of this process whose token is not here was
/// dropped mid-move.
static HELD: Mutex<Option<HashSet<u64>>> = Mutex::new(None);
static NEXT_TOKEN: AtomicU64 = AtomicU64::new(1);

fn held(update: impl FnOnce(&mut HashSet<u64>) -> bool) -> bool {
    let mut guard = HELD
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    update(guard.get_or_insert_with(HashSet::new))
}

/// Git's lock on a checkout's `HEAD` (`<git dir>/HEAD.lock`), held by Factory while it moves
/// that checkout: every git command that switches branches, detaches or commits there takes the
/// same lock, so none can run meanwhile. Removed on drop, unless dropped while
/// [armed](HeadLock::arm): then the move may be half done and the file stays for the next merge
/// to recover.
pub(crate) struct HeadLock {
    path: PathBuf,
    token: u64,
    armed: bool,
}

/// What a lock file says about its holder and the move it guards.
#[derive(Debug, PartialEq, Eq)]
struct Marker {
    pid: u32,
    /// The holder's start time (clock ticks after boot), when known, to tell a reused pid.
    start: Option<u64>,
    token: u64,
    old: ObjectId,
    merged: ObjectId,
}

impl Marker {
    fn render(&self) -> String {
        format!(
            "{MAGIC}\npid {}\nstart {}\ntoken {}\nold {}\nmerged {}\n",
            self.pid,
            self.start.map_or_else(|| "-".to_owned(), |s| s.to_string()),
            self.token,
            self.old,
            self.merged
        )
    }

    fn parse(text: &str) -> Option<Marker> {
        let mut lines = text.lines();
        if lines.next()? != MAGIC {
            return None;
        }
        let mut field = |name: &str| {
            lines
                .next()?
                .strip_prefix(name)?
                .strip_prefix(' ')
                .map(str::to_owned)
        };
        let pid = field("pid")?.parse().ok()?;
        let start = field("start")?;
        let start = if start == "-" {
            None
        } else {
            Some(start.parse().ok()?)
        };
        let token = field("token")?.parse().ok()?;
        let old = ObjectId::from_hex(field("old")?.as_bytes()).ok()?;
        let merged = ObjectId::from_hex(field("merged")?.as_bytes()).ok()?;
        Some(Marker {
            pid,
            start,
            token,
            old,
            merged,
        })
    }

    /// Whether the process that wrote this still holds the lock.
    fn holder_alive(&self) -> bool {
        if self.pid == std::process::id() {
            return held(|tokens| tokens.contains(&self.token));
        }
        if let Some(start) = self.start {
            return start_time(self.pid) == Some(start);
        }
        let Some(pid) = i32::try_from(self.pid)
            .ok()
            .and_then(rustix::process::Pid::from_raw)
        else {
            return false;
        };
        !matches!(
            rustix::process::test_kill_process(pid),
            Err(rustix::io::Errno::SRCH)
        )
    }
}

/// Markers `HEAD.lock.factory-<pid>-<token>` in `git_dir` staged by a Factory process that is
/// gone (killed between staging its marker and linking it into place).
pub(crate) fn orphaned_markers(git_dir: &Path) -> Vec<std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir(git_dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            let pid: u32 = name
                .strip_prefix("HEAD.lock.factory-")?
                .split('-')
                .next()?
                .parse()
                .ok()?;
            let alive = pid == std::process::id() || start_time(pid).is_some();
            (!alive).then(|| entry.path())
        })
        .collect()
}

/// When process `pid` started (field 22 of `/proc/<pid>/stat`), where `/proc` tells.
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(19)?.parse().ok()
}

impl HeadLock {
    /// Creates the lock file for moving a checkout from `old` to `merged`; fails with
    /// `AlreadyExists` when someone holds it.
    pub(crate) fn acquire(
        git_dir: &Path,
        old: ObjectId,
        merged: ObjectId,
    ) -> std::io::Result<HeadLock> {
        let path = git_dir.join("HEAD.lock");
        let token = NEXT_TOKEN.fetch_add(1, Ordering::Relaxed);
        let marker = Marker {
            pid: std::process::id(),
            start: start_time(std::process::id()),
            token,
            old,
            merged,
        };
        // The lock appears with its marker already in it (written aside, then hard-linked into
        // place, which fails if the lock exists): a Factory killed at any instant never leaves
        // an empty `HEAD.lock` that nobody could tell from a running git command's.
        let staged = git_dir.join(format!("HEAD.lock.factory-{}-{token}", marker.pid));
        std::fs::write(&staged, marker.render())?;
        let linked = std::fs::hard_link(&staged, &path);
        let _ = std::fs::remove_file(&staged);
        linked?;
        held(|tokens| tokens.insert(token));
        Ok(HeadLock {
            path,
            token,
            armed: false,
        })
    }

    /// [`acquire`](HeadLock::acquire), retried for up to about a second while another git
    /// command holds the lock: the user's commands hold it for milliseconds, and waiting that
    /// long is cheaper than a merge retry.
    pub(crate) async fn acquire_soon(
        git_dir: &Path,
        old: ObjectId,
        merged: ObjectId,
    ) -> std::io::Result<HeadLock> {
        const ATTEMPTS: u32 = 20;
        let mut attempt = 1;
        loop {
            match HeadLock::acquire(git_dir, old, merged) {
                Err(err)
                    if err.kind() == std::io::ErrorKind::AlreadyExists && attempt < ATTEMPTS =>
                {
                    attempt += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
                result => return result,
            }
        }
    }

    /// From now until [`disarm`](HeadLock::disarm), the checkout may be between the two
    /// commits: dropped meanwhile, the lock file stays as the record of that.
    pub(crate) fn arm(&mut self) {
        self.armed = true;
    }

    /// The checkout is whole again (moved with its branch, or put back).
    pub(crate) fn disarm(&mut self) {
        self.armed = false;
    }
}

impl Drop for HeadLock {
    fn drop(&mut self) {
        held(|tokens| tokens.remove(&self.token));
        if self.armed {
            tracing::warn!(path = %self.path.display(), "a move of the checkout was cut short; its HEAD.lock stays until the next merge puts the checkout right");
            return;
        }
        if let Err(err) = std::fs::remove_file(&self.path) {
            tracing::warn!(path = %self.path.display(), %err, "could not remove HEAD.lock");
        }
    }
}

/// What [`GitRepo::clear_abandoned_head_lock`] found.
pub(crate) enum Abandoned {
    /// The lock was left by a Factory process that is gone; the checkout is whole again and the
    /// lock removed.
    Cleared,
    /// Someone holds the lock (a git command, or a live Factory run).
    Held,
    /// An abandoned lock that cannot be cleared yet; why.
    NotYet(String),
}

impl GitRepo {
    /// When `at`'s `HEAD.lock` was left by a Factory process that no longer holds it: puts the
    /// checkout back where `into` is if it had been moved to the merge without `into`, and
    /// removes the lock.
    pub(crate) async fn clear_abandoned_head_lock(
        &self,
        at: &Checkout,
        into: &str,
    ) -> Result<Abandoned, VcsError> {
        let path = at.git_dir.join("HEAD.lock");
        let Some(marker) = std::fs::read_to_string(&path)
            .ok()
            .and_then(|text| Marker::parse(&text))
        else {
            return Ok(Abandoned::Held);
        };
        if marker.holder_alive() {
            return Ok(Abandoned::Held);
        }
        // The cut-short `read-tree` may still be finishing (git commands are not stopped with Factory).
        if std::fs::symlink_metadata(at.git_dir.join("index.lock")).is_ok() {
            return Ok(Abandoned::NotYet(format!(
                "a git command is writing your checkout at {} ({} exists); run again once it has finished",
                at.work_tree.display(),
                at.git_dir.join("index.lock").display()
            )));
        }
        let into_owned = into.to_owned();
        let tip = self
            .read_main(move |repo| read::branch_tip(repo, &into_owned))
            .await?;
        let (old, merged) = (marker.old, marker.merged);
        if tip != Some(merged) && self.index_at(at, old, merged).await? {
            // Moved to the merge, but `into` was not: move it back.
            let (merged_hex, old_hex) = (merged.to_string(), old.to_string());
            let back = self
                .git
                .run(at, ["read-tree", "-m", "-u", &merged_hex, &old_hex])
                .await?;
            if !back.success() {
                return Ok(Abandoned::NotYet(format!(
                    "an interrupted Factory run left your checkout at {} on merge {merged} while `{into}` stayed at {old}, and putting it back failed: {}; run `git read-tree -m -u {merged} {old}` there, then remove {}",
                    at.work_tree.display(),
                    back.stderr,
                    path.display()
                )));
            }
            tracing::info!(checkout = %at.work_tree.display(), %merged, %old, "put back a checkout an interrupted merge had moved");
        }
        std::fs::remove_file(&path).map_err(|source| VcsError::Io {
            context: format!("removing the abandoned {}", path.display()),
            source,
        })?;
        Ok(Abandoned::Cleared)
    }

    /// Whether `at`'s index holds `merged`'s version of every path `old..merged` changes.
    async fn index_at(
        &self,
        at: &Checkout,
        old: ObjectId,
        merged: ObjectId,
    ) -> Result<bool, VcsError> {
        let changed = self
            .read_main(move |repo| read::changed_files(repo, old, merged))
            .await?;
        if changed.is_empty() {
            return Ok(false);
        }
        let merged_hex = merged.to_string();
        let differing = self
            .git
            .ok(
                at,
                ["diff-index", "--cached", "--name-only", "-z", &merged_hex],
            )
            .await?
            .nul_separated();
        Ok(changed
            .iter()
            .all(|change| !differing.contains(&change.path)))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn markers_read_back() {
        let marker = Marker {
            pid: 42,
            start: Some(7),
            token: 3,
            old: ObjectId::from_hex(b"1111111111111111111111111111111111111111").unwrap(),
            merged: ObjectId::from_hex(b"2222222222222222222222222222222222222222").unwrap(),
        };
        assert_eq!(Marker::parse(&marker.render()), Some(marker));
        assert_eq!(Marker::parse(""), None);
        assert_eq!(Marker::parse("ref: refs/heads/main\n"), None);
    }
}
