//! Cleaning up after finished tasks: a merged task's worktree is removed and its branch deleted
//! (unless `[merge] keep_branches`), a cancelled task's worktree is removed and its branch kept.
//! Done right after each merge, and again when a run starts, for whatever an interrupted run
//! left behind.
//!
//! A branch is deleted only by compare-and-swap from a tip that main contains (normally the
//! very commit the queue merged), and only while no checkout has it checked out: a branch that
//! moved past the merged commit holds work that is not on main, so it is kept and the decision
//! log says why. At start-up a worktree holding uncommitted files is kept the same way (a
//! merge leaves its worktree clean). Git failures here never fail the task or the run: the next
//! run tries again.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crate::decision::DecisionFilter;
use crate::mail::ORCHESTRATOR;
use crate::ports::{BranchDeletion, CommitId, VcsError};
use crate::task::{Task, TaskState};

use super::artifacts::SpecFiles;
use super::{Factory, OrchestrateError};

/// What became of a merged task's branch.
enum BranchCleanup {
    /// Deleted now.
    Deleted,
    /// There was none (already deleted).
    Missing,
    /// Left in place, for this reason.
    Kept(String),
}

impl Factory {
    /// After `task` merged: removes its worktree and, unless `[merge] keep_branches`, deletes
    /// its branch if it still holds nothing main lacks. `merged` is the branch commit the queue
    /// merged (`None`: the task's recorded verified commit). What could not be cleaned up is
    /// logged and written to the task's progress file; only store and spec-file failures are
    /// errors.
    pub(super) async fn clean_up_merged(
        &self,
        task: &Task,
        merged: Option<&CommitId>,
    ) -> Result<(), OrchestrateError> {
        let files = SpecFiles::new(self.layout().spec_dir(&task.spec_id));
        let worktree = self.layout().task_worktree(&task.spec_id);
        if let Err(e) = self.inner.ports.vcs.remove_worktree(&worktree).await {
            tracing::warn!(spec = %task.spec_id, error = %e, "could not remove a merged task's worktree");
            files.progress(
                self.now(),
                &format!("could not remove the worktree ({e}); the next run tries again"),
            )?;
        }
        if self.config().merge.keep_branches {
            return Ok(());
        }
        self.clean_up_branch(task, merged, &files).await
    }

    /// Deletes a merged task's branch when safe and records what happened.
    async fn clean_up_branch(
        &self,
        task: &Task,
        merged: Option<&CommitId>,
        files: &SpecFiles,
    ) -> Result<(), OrchestrateError> {
        let branch = task_branch(task);
        match self.delete_merged_branch(task, &branch, merged).await {
            Ok(BranchCleanup::Deleted) => {
                files.progress(self.now(), &format!("deleted branch {branch}"))?;
            }
            Ok(BranchCleanup::Missing) => {}
            Ok(BranchCleanup::Kept(reason)) => {
                tracing::info!(spec = %task.spec_id, %branch, %reason, "kept a merged task's branch");
                self.record_kept_branch(task, &branch, &reason, files)
                    .await?;
            }
            Err(e) => {
                tracing::warn!(spec = %task.spec_id, %branch, error = %e, "could not delete a merged task's branch");
                files.progress(
                    self.now(),
                    &format!("could not delete branch {branch} ({e}); the next run tries again"),
                )?;
            }
        }
        Ok(())
    }

    /// Deletes `branch` of the merged `task` by compare-and-swap from its current tip, if main
    /// contains that tip: the merged commit itself, or (a branch the user merged by hand, or
    /// reset to an older commit) another commit main has. Anything else is kept.
    async fn delete_merged_branch(
        &self,
        task: &Task,
        branch: &str,
        merged: Option<&CommitId>,
    ) -> Result<BranchCleanup, VcsError> {
        let vcs = &self.inner.ports.vcs;
        let main = &self.config().git.main_branch;
        let Some(tip) = vcs.branch_head(branch).await? else {
            return Ok(BranchCleanup::Missing);
        };
        let expected = merged
            .cloned()
            .or_else(|| task.verified_commit.clone().map(CommitId));
        if !vcs.is_merged(&tip.0, main).await? {
            let merged = expected.map_or_else(|| "the merged commit".to_owned(), |c| short(&c.0));
            return Ok(BranchCleanup::Kept(format!(
                "{branch} moved past the merged commit ({merged}, now {}): it holds commits that are not on {main}",
                short(&tip.0)
            )));
        }
        Ok(match vcs.delete_branch(branch, &tip).await? {
            BranchDeletion::Deleted => BranchCleanup::Deleted,
            BranchDeletion::Missing => BranchCleanup::Missing,
            BranchDeletion::Moved { actual } => BranchCleanup::Kept(format!(
                "{branch} moved to {} while it was being deleted",
                short(&actual.0)
            )),
            BranchDeletion::CheckedOut { worktree } => {
                BranchCleanup::Kept(format!("{branch} is checked out in {}", worktree.display()))
            }
        })
    }

    /// Writes why a merged task's branch was kept to its progress file and, once, to the
    /// decision log.
    async fn record_kept_branch(
        &self,
        task: &Task,
        branch: &str,
        reason: &str,
        files: &SpecFiles,
    ) -> Result<(), OrchestrateError> {
        let decision = format!("keep the merged branch {branch}");
        self.record_once(
            task,
            &decision,
            reason,
            files,
            serde_json::json!({ "branch": branch }),
        )
        .await
    }

    /// Records `decision` for `task` with `reason` in its progress file and the decision log,
    /// unless the same decision and reason are already logged (start-up finds the same things
    /// on every run).
    async fn record_once(
        &self,
        task: &Task,
        decision: &str,
        reason: &str,
        files: &SpecFiles,
        context: serde_json::Value,
    ) -> Result<(), OrchestrateError> {
        let recorded = self
            .store_ref()
            .list_decisions(DecisionFilter {
                epic_id: None,
                task_id: Some(task.id),
            })
            .await?
            .iter()
            .any(|d| d.decision == decision && d.reasoning == reason);
        if recorded {
            return Ok(());
        }
        files.progress(self.now(), &format!("{decision}: {reason}"))?;
        self.decide(
            task.epic_id,
            Some(task.id),
            ORCHESTRATOR,
            decision,
            reason,
            context,
        )
        .await
    }

    /// Finishes the cleanup an interrupted run left: merged tasks whose worktree or branch is
    /// still there, cancelled tasks whose worktree is. Called when a run starts, under its
    /// lease. Git failures are logged, not fatal.
    pub(super) async fn finish_interrupted_cleanup(&self) -> Result<(), OrchestrateError> {
        let tasks: Vec<Task> = self
            .store_ref()
            .list_tasks(None)
            .await?
            .into_iter()
            .filter(|t| matches!(t.state, TaskState::Completed | TaskState::Cancelled))
            .collect();
        if tasks.is_empty() {
            return Ok(());
        }
        let vcs = &self.inner.ports.vcs;
        let registered: HashSet<PathBuf> = match vcs.worktrees().await {
            Ok(worktrees) => worktrees.into_iter().skip(1).map(|w| w.path).collect(),
            Err(e) => {
                tracing::warn!(error = %e, "could not list worktrees to finish an interrupted cleanup");
                HashSet::new()
            }
        };
        let branches: HashSet<String> = if self.config().merge.keep_branches {
            HashSet::new()
        } else {
            match vcs.branches("refs/heads/").await {
                Ok(branches) => branches.into_iter().map(|b| b.name).collect(),
                Err(e) => {
                    tracing::warn!(error = %e, "could not list branches to finish an interrupted cleanup");
                    HashSet::new()
                }
            }
        };
        for task in &tasks {
            let files = SpecFiles::new(self.layout().spec_dir(&task.spec_id));
            let worktree = self.layout().task_worktree(&task.spec_id);
            if worktree.symlink_metadata().is_ok() || registered.contains(&worktree) {
                self.remove_leftover_worktree(task, &worktree, &files)
                    .await?;
            }
            if task.state == TaskState::Completed && branches.contains(&task_branch(task)) {
                self.clean_up_branch(task, None, &files).await?;
            }
        }
        Ok(())
    }
}

impl Factory {
    /// Removes a finished task's worktree found at start-up, unless it holds uncommitted files
    /// (a merge leaves its worktree clean, so someone put them there since) or cannot be
    /// inspected: such a worktree is kept, and the decision log says why; `factory gc --force`
    /// removes it.
    async fn remove_leftover_worktree(
        &self,
        task: &Task,
        worktree: &Path,
        files: &SpecFiles,
    ) -> Result<(), OrchestrateError> {
        let vcs = &self.inner.ports.vcs;
        let keep = if worktree.symlink_metadata().is_err() {
            // Only a registration is left: forgetting it loses nothing.
            None
        } else {
            match vcs.uncommitted_paths(worktree).await {
                Ok(dirty) if dirty.is_empty() => None,
                Ok(dirty) => Some(format!(
                    "its worktree {} holds {} uncommitted file(s) ({}), so it was kept",
                    worktree.display(),
                    dirty.len(),
                    dirty.join(", ")
                )),
                Err(e) => Some(format!(
                    "its worktree {} cannot be inspected ({e}), so it was kept",
                    worktree.display()
                )),
            }
        };
        if let Some(reason) = keep {
            tracing::info!(spec = %task.spec_id, %reason, "kept a finished task's worktree");
            let decision = format!("keep the worktree of {}", task.spec_id);
            return self
                .record_once(task, &decision, &reason, files, serde_json::json!({}))
                .await;
        }
        match vcs.remove_worktree(worktree).await {
            Ok(()) => files.progress(
                self.now(),
                "removed the worktree an interrupted run left behind",
            )?,
            Err(e) => {
                tracing::warn!(spec = %task.spec_id, error = %e, "could not remove a finished task's worktree");
            }
        }
        Ok(())
    }
}

/// The task's branch name.
fn task_branch(task: &Task) -> String {
    task.branch.clone().unwrap_or_else(|| task.spec_id.branch())
}

/// The first 10 characters of a commit id, for messages.
fn short(commit: &str) -> String {
    commit.get(..10).unwrap_or(commit).to_owned()
}
