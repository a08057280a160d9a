//! `factory merge --dry-run`: the merge queue in the order the run takes it, and what its next
//! step would do for each task, judged against main as it is now. Read-only: it moves no ref,
//! touches no worktree and writes nothing to the store (a would-be merge is tried with
//! [`Vcs::merge_conflicts`](crate::ports::Vcs::merge_conflicts), which writes nothing either).

use serde::Serialize;

use crate::ports::{CheckoutStatus, VcsError, paths_overlap};
use crate::spec::SpecId;
use crate::task::{Task, TaskState};

use super::{Factory, OrchestrateError};

/// The merge queue as `factory merge --dry-run` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct MergeQueuePreview {
    /// The branch merges go into.
    pub main: String,
    /// Tasks waiting in the queue, first to be merged first.
    pub queue: Vec<QueuedMerge>,
}

/// One task in the merge queue.
#[derive(Debug, Clone, Serialize)]
pub struct QueuedMerge {
    /// The task.
    pub spec_id: SpecId,
    /// Its title.
    pub title: String,
    /// Its branch.
    pub branch: String,
    /// The commit that passed verify, which is what gets merged.
    pub verified_commit: Option<String>,
    /// Why its last merge attempt waited, if it did.
    pub waiting_reason: Option<String>,
    /// What the queue's next step would do with it.
    pub next: NextMergeStep,
}

/// What the merge queue's next step for a task would do, given main as it is now. Once the
/// first task merges, main moves and later ones need a rebase first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum NextMergeStep {
    /// The verified commit is already on main: recorded as merged, nothing else happens.
    AlreadyMerged,
    /// The branch contains main: merged `--no-ff` as it is.
    Merge,
    /// The branch must be rebased onto main first; the rebase applies cleanly, then verify
    /// runs again before the merge.
    Rebase,
    /// The branch must be rebased onto main first, and that conflicts in these paths.
    RebaseConflicts {
        /// The paths in conflict.
        files: Vec<String>,
    },
    /// The merge would wait: your uncommitted changes in these paths of your checkout of main
    /// would be overwritten.
    WaitForCheckout {
        /// Your uncommitted paths the merge changes.
        files: Vec<String>,
    },
    /// The branch is gone: the task would be blocked.
    BranchGone,
    /// The branch moved after it passed verify: the task would be blocked, nothing merged.
    BranchMoved {
        /// The commit that passed verify.
        verified: String,
        /// The branch's tip now.
        tip: String,
    },
    /// Git could not tell.
    Unknown {
        /// What failed.
        reason: String,
    },
}

impl Factory {
    /// The merge queue and what would happen next to each task in it. Changes nothing.
    pub async fn merge_queue_preview(&self) -> Result<MergeQueuePreview, OrchestrateError> {
        let main = self.config().git.main_branch.clone();
        let open = self.open_epics().await?;
        // The scheduler takes the first `Merging` task of an open epic, in the store's order.
        let queued: Vec<Task> = self
            .store_ref()
            .list_tasks(None)
            .await?
            .into_iter()
            .filter(|t| t.state == TaskState::Merging && open.contains(&t.epic_id))
            .collect();
        let mut checkout = None;
        let mut queue = Vec::with_capacity(queued.len());
        for task in queued {
            let branch = task.branch.clone().unwrap_or_else(|| task.spec_id.branch());
            let next = match self
                .next_merge_step(&task, &branch, &main, &mut checkout)
                .await
            {
                Ok(next) => next,
                Err(e) => NextMergeStep::Unknown {
                    reason: e.to_string(),
                },
            };
            queue.push(QueuedMerge {
                spec_id: task.spec_id,
                title: task.title,
                branch,
                verified_commit: task.verified_commit,
                waiting_reason: task.waiting_reason,
                next,
            });
        }
        Ok(MergeQueuePreview { main, queue })
    }

    /// The merge step's decisions for one task (see `merge.rs`), made with reads only.
    async fn next_merge_step(
        &self,
        task: &Task,
        branch: &str,
        main: &str,
        checkout: &mut Option<CheckoutStatus>,
    ) -> Result<NextMergeStep, VcsError> {
        let vcs = &self.inner.ports.vcs;
        if let Some(verified) = &task.verified_commit
            && vcs.is_merged(verified, main).await.unwrap_or(false)
        {
            return Ok(NextMergeStep::AlreadyMerged);
        }
        let Some(tip) = vcs.branch_head(branch).await? else {
            return Ok(NextMergeStep::BranchGone);
        };
        if vcs.is_merged(&tip.0, main).await? {
            return Ok(NextMergeStep::AlreadyMerged);
        }
        if !vcs.is_merged(main, &tip.0).await? {
            let files = vcs.merge_conflicts(&tip.0, main).await?;
            return Ok(if files.is_empty() {
                NextMergeStep::Rebase
            } else {
                NextMergeStep::RebaseConflicts { files }
            });
        }
        if let Some(verified) = &task.verified_commit
            && *verified != tip.0
        {
            return Ok(NextMergeStep::BranchMoved {
                verified: verified.clone(),
                tip: tip.0,
            });
        }
        let status = match checkout {
            Some(status) => status,
            None => checkout.insert(vcs.checkout_status().await?),
        };
        if status.branch.as_deref() == Some(main) && !status.dirty.is_empty() {
            let changed = vcs.changed_paths(main, &tip.0).await?;
            let files: Vec<String> = status
                .dirty
                .iter()
                .filter(|dirty| changed.iter().any(|path| paths_overlap(dirty, path)))
                .cloned()
                .collect();
            if !files.is_empty() {
                return Ok(NextMergeStep::WaitForCheckout { files });
            }
        }
        Ok(NextMergeStep::Merge)
    }
}

#[cfg(test)]
mod tests {
    use crate::ports::paths_overlap as overlaps;

    #[test]
    fn overlap_is_exact_or_by_directory() {
        assert!(overlaps("src/a.rs", "src/a.rs"));
        assert!(overlaps("src", "src/a.rs"));
        assert!(overlaps("src/a.rs/x", "src/a.rs"));
        assert!(!overlaps("src/a.rs", "src/a.rs.bak"));
    }
}
