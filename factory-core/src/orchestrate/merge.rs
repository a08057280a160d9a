//! The merge queue's step for one task: bring the branch up to date with main, re-verify if it
//! moved, merge `--no-ff`, remove the worktree. The run loop runs at most one of these at a time.

use tracing::Instrument;

use crate::agent::{AgentId, AgentRole, AgentState};
use crate::event::VerifyStage;
use crate::ports::{MergeOutcome, UpdateOutcome};
use crate::task::{TaskChanges, TaskEvent, TaskId, TaskState};

use super::artifacts::SpecFiles;
use super::pipeline::fix_request_text;
use super::{Factory, JobEnd, OrchestrateError};

impl Factory {
    /// Merges one approved task into main, or records why it cannot be merged yet.
    pub(super) async fn merge_task(&self, id: TaskId) -> Result<JobEnd, OrchestrateError> {
        let mut task = self.store_ref().task(id).await?;
        let span = tracing::info_span!("merge", spec = %task.spec_id);
        async move {
            if task.state != TaskState::Merging {
                return Ok(JobEnd::Done);
            }
            let vcs = self.inner.ports.vcs.clone();
            let main = self.config().git.main_branch.clone();
            let branch = task.branch.clone().unwrap_or_else(|| task.spec_id.branch());
            let worktree = self.layout().task_worktree(&task.spec_id);
            let files = SpecFiles::new(self.layout().spec_dir(&task.spec_id));

            // A retried step finds the branch already merged and skips straight to recording it.
            if !vcs.is_merged(&branch, &main).await? && worktree.exists() {
                match vcs.update_branch(&worktree, &main).await? {
                    UpdateOutcome::UpToDate => {}
                    UpdateOutcome::Conflict { files: paths } => {
                        let reason = format!(
                            "bringing {branch} up to date with {main} conflicts in: {}; resolve it on the branch",
                            paths.join(", ")
                        );
                        self.block(&task, reason).await?;
                        return Ok(JobEnd::Done);
                    }
                    UpdateOutcome::Rebased(tip) => {
                        files.progress(self.now(), &format!("rebased onto {main}: {tip}"))?;
                        let verify = self.verify(&task, task.qa_rounds, VerifyStage::PreMerge).await?;
                        if !verify.passed() {
                            files.write_fix_request(&fix_request_text(
                                task.qa_rounds,
                                "Merge queue: verify failed after rebasing",
                                &format!("The change no longer passes verify after being rebased onto {main}."),
                                &["Make the change work on top of the current main branch.".to_owned()],
                                &verify,
                            ))?;
                            if task.rounds_used() >= self.config().qa.max_rounds {
                                let reason = format!("re-verify after rebasing onto {main}: {}", verify.line());
                                self.block(&task, reason).await?;
                            } else {
                                files.progress(self.now(), "re-verify failed after rebase; back to the worker")?;
                                self.update_task(&task, Some(TaskEvent::RequestChanges), TaskChanges::default())
                                    .await?;
                            }
                            return Ok(JobEnd::Done);
                        }
                        // The rebased commit passed verify: it is now the one to merge.
                        task = self
                            .update_task(
                                &task,
                                None,
                                TaskChanges {
                                    verified_commit: Some(Some(tip.to_string())),
                                    ..TaskChanges::default()
                                },
                            )
                            .await?;
                    }
                }
            }

            // Merge exactly the commit that passed verify: a branch that moved since (an agent
            // or a person committed or reset it) is not merged unverified.
            let tip = vcs.branch_head(&branch).await?.map(|c| c.to_string());
            if let (Some(verified), false) = (&task.verified_commit, vcs.is_merged(&branch, &main).await?)
                && tip.as_ref() != Some(verified)
            {
                let reason = format!(
                    "{branch} moved after it passed verify (verified {}, now {}); retry the task to verify it again",
                    short(verified),
                    tip.as_deref().map_or("missing", short)
                );
                self.block(&task, reason).await?;
                return Ok(JobEnd::Done);
            }

            let message = format!(
                "Merge {branch}: {}\n\nFactory task {} (spec {}) of epic {}; QA rounds: {}.",
                task.title, task.id, task.spec_id, task.epic_id, task.qa_rounds
            );
            match vcs.merge_no_ff(&branch, &main, &message).await? {
                MergeOutcome::Merged(commit) | MergeOutcome::AlreadyMerged(commit) => {
                    let task = self
                        .update_task(
                            &task,
                            Some(TaskEvent::Merged),
                            TaskChanges {
                                merge_commit: Some(Some(commit.to_string())),
                                waiting_reason: Some(None),
                                ..TaskChanges::default()
                            },
                        )
                        .await?;
                    let worker = AgentId::new(AgentRole::Worker, &task.spec_id);
                    self.set_agent(&worker, AgentRole::Worker, Some(task.id), AgentState::Idle)
                        .await?;
                    vcs.remove_worktree(&worktree).await?;
                    files.write_plan(super::artifacts::STEPS.len(), &[("merge", commit.to_string())])?;
                    files.progress(self.now(), &format!("merged into {main} as {commit}"))?;
                    files.write_metadata(&task)?;
                    Ok(JobEnd::Done)
                }
                MergeOutcome::Waiting { reason, .. } => {
                    if task.waiting_reason.as_deref() != Some(reason.as_str()) {
                        let task = self
                            .update_task(
                                &task,
                                None,
                                TaskChanges {
                                    waiting_reason: Some(Some(reason.clone())),
                                    ..TaskChanges::default()
                                },
                            )
                            .await?;
                        files.write_metadata(&task)?;
                        files.progress(self.now(), &format!("merge waiting: {reason}"))?;
                    }
                    Ok(JobEnd::MergeWaiting)
                }
                MergeOutcome::Conflict { files: paths } => {
                    let reason = format!("merging {branch} into {main} conflicts in: {}", paths.join(", "));
                    self.block(&task, reason).await?;
                    Ok(JobEnd::Done)
                }
            }
        }
        .instrument(span)
        .await
    }
}

/// The first 10 characters of a commit id, for messages.
fn short(commit: &str) -> &str {
    commit.get(..10).unwrap_or(commit)
}
