//! `factory gc`: removes what finished or forgotten tasks left in the repository — worktrees
//! under `.factory/worktrees/` whose task is finished or unknown to the database, `factory/*`
//! branches of such tasks, and registrations of Factory's worktrees whose directories are gone
//! — listing each with the reason.
//!
//! What it never does: touch a worktree or branch of a task that is not finished (even when
//! forced), touch anything outside `.factory/worktrees/` and `refs/heads/factory/`, or delete a
//! branch any checkout has checked out. Without `force` it also keeps, saying why, a worktree
//! with uncommitted files or with commits on no branch, and a branch holding commits no other
//! branch has. Branches are deleted only by compare-and-swap from the tip it inspected.
//! A real collection holds the run lease, so it never races a `factory run`.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use crate::lease::LeaseHolder;
use crate::ports::{BranchDeletion, StoreError, VcsError, WorktreeInfo};
use crate::spec::SpecId;
use crate::task::{Task, TaskState};

use super::{Factory, OrchestrateError};

/// How long a collection's run lease lasts; a collection holds it only while it runs, and the
/// lease of one that died is released by the next run on this machine.
const GC_LEASE_TTL: Duration = Duration::from_secs(300);

/// How `factory gc` behaves.
#[derive(Debug, Clone)]
pub struct GcOptions {
    /// Only say what would be removed; change nothing (and take no lease).
    pub dry_run: bool,
    /// Also remove worktrees with uncommitted files or commits on no branch, and branches
    /// holding commits no other branch has. Unfinished tasks' things stay regardless.
    pub force: bool,
    /// Who collects, as recorded in the run lease.
    pub holder: LeaseHolder,
}

impl Default for GcOptions {
    fn default() -> Self {
        GcOptions {
            dry_run: false,
            force: false,
            holder: LeaseHolder {
                pid: std::process::id(),
                host: String::from("localhost"),
                label: String::from("factory gc"),
            },
        }
    }
}

/// What kind of thing a [`GcEntry`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GcKind {
    /// A worktree directory and its registration.
    Worktree,
    /// A `factory/*` branch.
    Branch,
    /// A worktree registration (under `.git/worktrees/`) whose directory is gone.
    StaleEntry,
}

impl std::fmt::Display for GcKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            GcKind::Worktree => "worktree",
            GcKind::Branch => "branch",
            GcKind::StaleEntry => "stale worktree entry",
        })
    }
}

/// One thing `factory gc` removed, would remove, or kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GcEntry {
    /// Worktree, branch or stale entry.
    pub kind: GcKind,
    /// The branch name, or the worktree's path (relative to the repository root when inside it).
    pub name: String,
    /// Why it was removed or kept.
    pub reason: String,
    /// Kept only because it holds work found nowhere else (uncommitted files, commits on no
    /// other branch): `force` would remove it.
    pub forceable: bool,
}

/// What `factory gc` did (or, with `dry_run`, would do).
#[derive(Debug, Clone, Default, Serialize)]
pub struct GcReport {
    /// Nothing was changed: `removed` is what would be removed.
    pub dry_run: bool,
    /// Removed (or, in a dry run, to be removed), in the order done.
    pub removed: Vec<GcEntry>,
    /// Left in place, each with why.
    pub kept: Vec<GcEntry>,
    /// Removing these failed; they are still there.
    pub failed: Vec<GcEntry>,
    /// `[merge] keep_branches = true`: no branch was considered.
    pub branches_kept_by_config: bool,
    /// Worktrees and branches of tasks that are not finished, left alone.
    pub unfinished_left: usize,
}

/// Whose a worktree or branch is.
enum Owner<'a> {
    /// A task that is not finished: never touched.
    Live,
    /// A finished task, or none.
    Finished(Option<&'a Task>),
}

impl Factory {
    /// Removes orphaned worktrees, finished tasks' branches and stale worktree entries (see the
    /// module documentation). A real collection fails with [`OrchestrateError::AlreadyRunning`]
    /// while a run holds the repository; a dry run changes nothing and needs no lease.
    pub async fn gc(&self, options: GcOptions) -> Result<GcReport, OrchestrateError> {
        if options.dry_run {
            return self.collect(&options).await;
        }
        let lease = match self
            .store_ref()
            .acquire_run_lease(options.holder.clone(), GC_LEASE_TTL)
            .await
        {
            Err(StoreError::LeaseHeld(lease)) => {
                return Err(OrchestrateError::AlreadyRunning(lease));
            }
            other => other?,
        };
        let report = self.collect(&options).await;
        if let Err(e) = self.store_ref().release_run_lease(lease.token).await {
            tracing::warn!(error = %e, "could not release the run lease after gc; it expires by itself");
        }
        report
    }

    async fn collect(&self, options: &GcOptions) -> Result<GcReport, OrchestrateError> {
        let mut report = GcReport {
            dry_run: options.dry_run,
            ..GcReport::default()
        };
        let tasks = self.store_ref().list_tasks(None).await?;
        let worktrees = self.inner.ports.vcs.worktrees().await?;
        let removed = self
            .collect_worktrees(options, &tasks, &worktrees, &mut report)
            .await?;
        self.report_unregistered_dirs(&tasks, &worktrees, &mut report);
        if self.config().merge.keep_branches {
            report.branches_kept_by_config = true;
        } else {
            self.collect_branches(options, &tasks, &worktrees, &removed, &mut report)
                .await?;
        }
        Ok(report)
    }

    /// Worktrees and stale entries under `.factory/worktrees/`; returns the paths removed (or,
    /// in a dry run, to be removed).
    async fn collect_worktrees(
        &self,
        options: &GcOptions,
        tasks: &[Task],
        worktrees: &[WorktreeInfo],
        report: &mut GcReport,
    ) -> Result<HashSet<PathBuf>, OrchestrateError> {
        let vcs = &self.inner.ports.vcs;
        let ours = self.layout().factory_dir().join("worktrees");
        let merge_worktree = self.layout().merge_worktree();
        let mut removed = HashSet::new();
        for wt in worktrees.iter().skip(1) {
            let name = self.display_path(&wt.path);
            let entry = |kind, reason: String, forceable| GcEntry {
                kind,
                name: name.clone(),
                reason,
                forceable,
            };
            let inside = wt.path.starts_with(&ours);
            if wt.prunable && inside && wt.path.symlink_metadata().is_ok() {
                // Git calls it prunable because its `.git` file is gone, but the directory is
                // there, with files no commit holds.
                if matches!(
                    owner_of_worktree(tasks, &wt.path, wt.branch.as_deref()),
                    Owner::Live
                ) {
                    report.unfinished_left += 1;
                } else {
                    report.kept.push(entry(
                        GcKind::Worktree,
                        "it is damaged (its .git file is gone), so what it holds cannot be checked"
                            .into(),
                        false,
                    ));
                }
                continue;
            }
            if wt.prunable {
                if inside
                    && matches!(
                        owner_of_worktree(tasks, &wt.path, wt.branch.as_deref()),
                        Owner::Live
                    )
                {
                    report.unfinished_left += 1;
                } else if !inside {
                    report.kept.push(entry(
                        GcKind::StaleEntry,
                        "its directory is gone, but it is not Factory's (outside .factory/worktrees)".into(),
                        false,
                    ));
                } else if wt.locked {
                    report.kept.push(entry(
                        GcKind::StaleEntry,
                        "its directory is gone, but it is locked (git worktree lock)".into(),
                        false,
                    ));
                } else {
                    let done = if options.dry_run {
                        Ok(())
                    } else {
                        vcs.forget_worktree(&wt.path).await
                    };
                    let reason = "its directory is gone".to_owned();
                    match done {
                        Ok(()) => {
                            removed.insert(wt.path.clone());
                            report
                                .removed
                                .push(entry(GcKind::StaleEntry, reason, false));
                        }
                        Err(e) => report.failed.push(entry(
                            GcKind::StaleEntry,
                            format!("{reason}; forgetting it failed: {e}"),
                            false,
                        )),
                    }
                }
                continue;
            }
            if !inside {
                // The user's own worktree.
                continue;
            }
            let reason = if wt.path == merge_worktree {
                "Factory's merge worktree; the next merge makes it again".to_owned()
            } else {
                let Owner::Finished(task) =
                    owner_of_worktree(tasks, &wt.path, wt.branch.as_deref())
                else {
                    report.unfinished_left += 1;
                    continue;
                };
                if wt.locked {
                    report.kept.push(entry(
                        GcKind::Worktree,
                        "it is locked (git worktree lock)".into(),
                        false,
                    ));
                    continue;
                }
                let dirty = match vcs.uncommitted_paths(&wt.path).await {
                    Ok(dirty) => dirty,
                    Err(VcsError::WorktreeDamaged { damage, .. }) => {
                        report.kept.push(entry(
                            GcKind::Worktree,
                            format!("it is damaged ({damage}), so what it holds cannot be checked"),
                            false,
                        ));
                        continue;
                    }
                    Err(e) => {
                        report.kept.push(entry(
                            GcKind::Worktree,
                            format!("it cannot be inspected: {e}"),
                            false,
                        ));
                        continue;
                    }
                };
                let stranded = match (&wt.branch, &wt.head) {
                    (None, Some(head)) => vcs.commits_only_on(&head.0, &[]).await?,
                    _ => 0,
                };
                let mut at_risk = Vec::new();
                if !dirty.is_empty() {
                    at_risk.push(format!(
                        "{} uncommitted file(s): {}",
                        dirty.len(),
                        list_some(&dirty)
                    ));
                }
                if stranded > 0 {
                    at_risk.push(format!(
                        "its detached HEAD has {stranded} commit(s) on no branch"
                    ));
                }
                let why = owner_reason(task);
                if at_risk.is_empty() {
                    why
                } else if options.force {
                    format!("{why}; forced: {} discarded", at_risk.join(" and "))
                } else {
                    report.kept.push(entry(
                        GcKind::Worktree,
                        format!("{why}, but it holds {}", at_risk.join(" and ")),
                        true,
                    ));
                    continue;
                }
            };
            let done = if options.dry_run {
                Ok(())
            } else {
                vcs.remove_worktree(&wt.path).await
            };
            match done {
                Ok(()) => {
                    removed.insert(wt.path.clone());
                    report.removed.push(entry(GcKind::Worktree, reason, false));
                }
                Err(e) => report.failed.push(entry(
                    GcKind::Worktree,
                    format!("{reason}; removing it failed: {e}"),
                    false,
                )),
            }
        }
        Ok(removed)
    }

    /// Directories under `.factory/worktrees/tasks/` that git does not know as worktrees: not
    /// Factory's to delete blindly (their files are in no commit), so only reported.
    fn report_unregistered_dirs(
        &self,
        tasks: &[Task],
        worktrees: &[WorktreeInfo],
        report: &mut GcReport,
    ) {
        let tasks_dir = self.layout().factory_dir().join("worktrees").join("tasks");
        let Ok(entries) = std::fs::read_dir(&tasks_dir) else {
            return;
        };
        let registered: HashSet<&Path> = worktrees.iter().map(|w| w.path.as_path()).collect();
        let mut found: Vec<PathBuf> = entries
            .flatten()
            .map(|entry| entry.path())
            .filter(|path| path.is_dir() && !registered.contains(path.as_path()))
            .filter(|path| std::fs::read_dir(path).is_ok_and(|mut d| d.next().is_some()))
            .collect();
        found.sort();
        for path in found {
            if matches!(owner_of_worktree(tasks, &path, None), Owner::Live) {
                report.unfinished_left += 1;
                continue;
            }
            report.kept.push(GcEntry {
                kind: GcKind::Worktree,
                name: self.display_path(&path),
                reason: "it is not a git worktree of this repository (its registration is gone), so its files are in no commit".into(),
                forceable: false,
            });
        }
    }

    /// `factory/*` branches of finished or unknown tasks.
    async fn collect_branches(
        &self,
        options: &GcOptions,
        tasks: &[Task],
        worktrees: &[WorktreeInfo],
        removed: &HashSet<PathBuf>,
        report: &mut GcReport,
    ) -> Result<(), OrchestrateError> {
        let vcs = &self.inner.ports.vcs;
        // Checkouts that stay, by the branch they have checked out.
        let held: HashMap<&str, &Path> = worktrees
            .iter()
            .filter(|w| !removed.contains(&w.path))
            .filter_map(|w| Some((w.branch.as_deref()?, w.path.as_path())))
            .collect();
        let mut deleted: Vec<String> = Vec::new();
        for branch in vcs.branches("refs/heads/factory/").await? {
            let entry = |reason: String, forceable| GcEntry {
                kind: GcKind::Branch,
                name: branch.name.clone(),
                reason,
                forceable,
            };
            let Owner::Finished(task) = owner_of_branch(tasks, &branch.name) else {
                report.unfinished_left += 1;
                continue;
            };
            let why = owner_reason(task);
            if let Some(path) = held.get(branch.name.as_str()) {
                report.kept.push(entry(
                    format!(
                        "{why}, but it is checked out in {}",
                        self.display_path(path)
                    ),
                    false,
                ));
                continue;
            }
            let mut ignoring = deleted.clone();
            ignoring.push(branch.name.clone());
            let stranded = vcs.commits_only_on(&branch.tip.0, &ignoring).await?;
            let reason = if stranded == 0 {
                why.clone()
            } else if options.force {
                format!("{why}; forced: {stranded} commit(s) on no other branch dropped")
            } else {
                report.kept.push(entry(
                    format!("{why}, but it holds {stranded} commit(s) on no other branch"),
                    true,
                ));
                continue;
            };
            if options.dry_run {
                deleted.push(branch.name.clone());
                report.removed.push(entry(reason, false));
                continue;
            }
            match vcs.delete_branch(&branch.name, &branch.tip).await {
                Ok(BranchDeletion::Deleted) => {
                    deleted.push(branch.name.clone());
                    report.removed.push(entry(reason, false));
                }
                Ok(BranchDeletion::Missing) => {}
                Ok(BranchDeletion::Moved { actual }) => report
                    .kept
                    .push(entry(format!("it moved to {actual} while gc ran"), false)),
                Ok(BranchDeletion::CheckedOut { worktree }) => report.kept.push(entry(
                    format!(
                        "{why}, but it is checked out in {}",
                        self.display_path(&worktree)
                    ),
                    false,
                )),
                Err(e) => report
                    .failed
                    .push(entry(format!("{reason}; deleting it failed: {e}"), false)),
            }
        }
        Ok(())
    }

    /// `path` relative to the repository root when inside it.
    fn display_path(&self, path: &Path) -> String {
        path.strip_prefix(self.layout().repo_root())
            .unwrap_or(path)
            .display()
            .to_string()
    }
}

/// Whose the worktree at `path` (with `branch` checked out) is: the task named by its
/// directory, else the task owning its branch.
fn owner_of_worktree<'a>(tasks: &'a [Task], path: &Path, branch: Option<&str>) -> Owner<'a> {
    let spec: Option<SpecId> = path
        .file_name()
        .and_then(|name| name.to_str())
        .and_then(|name| name.parse().ok());
    let task = spec
        .and_then(|spec| tasks.iter().find(|t| t.spec_id == spec))
        .or_else(|| branch.and_then(|b| tasks.iter().find(|t| task_branch(t) == b)));
    owner(task)
}

/// Whose the branch `name` is.
fn owner_of_branch<'a>(tasks: &'a [Task], name: &str) -> Owner<'a> {
    owner(tasks.iter().find(|t| task_branch(t) == name))
}

fn owner(task: Option<&Task>) -> Owner<'_> {
    match task {
        Some(task) if !task.state.is_terminal() => Owner::Live,
        task => Owner::Finished(task),
    }
}

/// Why a finished or unknown task's things can go.
fn owner_reason(task: Option<&Task>) -> String {
    match task {
        None => "no task in the database uses it".to_owned(),
        Some(task) => {
            let what = match task.state {
                TaskState::Completed => "was merged",
                TaskState::Cancelled => "was cancelled",
                TaskState::Failed => "failed",
                _ => "is finished",
            };
            format!("its task {} {what}", task.spec_id)
        }
    }
}

fn task_branch(task: &Task) -> String {
    task.branch.clone().unwrap_or_else(|| task.spec_id.branch())
}

/// Up to five of `items`, comma-separated, with how many more.
fn list_some(items: &[String]) -> String {
    let mut text = items
        .iter()
        .take(5)
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    if items.len() > 5 {
        text.push_str(&format!(" and {} more", items.len() - 5));
    }
    text
}
