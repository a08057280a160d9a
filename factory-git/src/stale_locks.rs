//! Lock files an interrupted git command left in Factory's own worktrees.
//!
//! Git removes its lock files when it exits, and on SIGINT or SIGTERM; Factory never stops a
//! git command half-way. But a signal in a command's first instants (before git has installed
//! its handlers; Ctrl-C in a terminal reaches every git Factory is running), a crash or SIGKILL
//! leaves them, and git then refuses that worktree ("index.lock: File exists") until someone
//! removes them. Factory owns its task and
//! merge worktrees and their branches, and a run holds the run lease, so before a run touches
//! them it removes the locks there once no process runs in them any more (a git command of a
//! killed run finishes on its own, holding its locks until it does). In the user's checkout only
//! the `HEAD.lock` a dead Factory process left (see `head_lock.rs`) is cleared.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use factory_core::ports::VcsError;

use crate::head_lock::Abandoned;
use crate::health::admin_dir_of;
use crate::read;
use crate::repo::GitRepo;
use crate::worktree::normalize;

/// How long to wait for the processes still running in a worktree (a finishing git command)
/// before leaving its locks alone.
const WAIT_FOR_PROCESSES: Duration = Duration::from_secs(10);

impl GitRepo {
    /// See [`Vcs::clear_stale_locks`](factory_core::ports::Vcs::clear_stale_locks).
    pub(crate) async fn clear_stale_locks_in(
        &self,
        main: &str,
        worktrees: &[PathBuf],
        branches: &[String],
    ) -> Result<Vec<PathBuf>, VcsError> {
        let mut removed = Vec::new();
        let checkout = self.main_checkout();
        if let Abandoned::Cleared = self.clear_abandoned_head_lock(&checkout, main).await? {
            removed.push(checkout.git_dir.join("HEAD.lock"));
        }
        // A marker a killed Factory staged but never linked into place as `HEAD.lock`.
        for staged in crate::head_lock::orphaned_markers(&checkout.git_dir) {
            remove(&staged, &mut removed)?;
        }
        for worktree in worktrees {
            let worktree = normalize(worktree);
            let Some(admin) = admin_dir_of(&self.common_dir, &worktree) else {
                continue;
            };
            let Ok(entries) = std::fs::read_dir(&admin) else {
                continue;
            };
            let locks: Vec<PathBuf> = entries
                .flatten()
                .filter(|entry| {
                    entry.path().extension().is_some_and(|ext| ext == "lock")
                        && entry.file_type().is_ok_and(|t| t.is_file())
                })
                .map(|entry| entry.path())
                .collect();
            // Only a worktree that has locks is worth the scan of every process's directory.
            if locks.is_empty() {
                continue;
            }
            if !unused_soon(&worktree).await {
                tracing::warn!(path = %worktree.display(), "processes still run in the worktree; leaving its locks");
                continue;
            }
            for lock in locks {
                remove(&lock, &mut removed)?;
            }
        }
        for branch in branches {
            let lock = self
                .common_dir
                .join(format!("{}.lock", read::branch_ref(branch)));
            if std::fs::symlink_metadata(&lock).is_ok_and(|meta| meta.is_file()) {
                remove(&lock, &mut removed)?;
            }
        }
        Ok(removed)
    }
}

fn remove(path: &Path, removed: &mut Vec<PathBuf>) -> Result<(), VcsError> {
    match std::fs::remove_file(path) {
        Ok(()) => {
            removed.push(path.to_owned());
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(VcsError::Io {
            context: format!("removing the stale lock {}", path.display()),
            source,
        }),
    }
}

/// Whether no process runs in `dir` (or below it), waiting up to [`WAIT_FOR_PROCESSES`] for
/// those that do to end. Where `/proc` cannot tell, assumes none does.
async fn unused_soon(dir: &Path) -> bool {
    let deadline = Instant::now() + WAIT_FOR_PROCESSES;
    loop {
        if !process_in(dir) {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Whether some process has its working directory in `dir` or below.
fn process_in(dir: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return false;
    };
    entries.flatten().any(|entry| {
        entry.file_name().to_string_lossy().parse::<u32>().is_ok()
            && std::fs::read_link(entry.path().join("cwd")).is_ok_and(|cwd| cwd.starts_with(dir))
    })
}
