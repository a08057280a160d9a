//! The merge queue's step for one task: bring the branch up to date with main, re-verify if it
//! moved, merge `--no-ff`, remove the worktree. A conflict goes back to the worker
//! (`conflict.rs`). The run loop runs at most one of these at a time.

use tracing::Instrument;

use crate::agent::{AgentId, AgentRole, AgentState};
use crate::event::VerifyStage;
use crate::ports::{MergeOutcome, UpdateOutcome, VcsError};
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

            // A retried step (or a user who merged the branch by hand) finds the branch already
            // merged and skips straight to recording it. Otherwise the commit to merge is the
            // one verified here: the tip that passed QA, or the rebased tip re-verified below.
            let mut verified = None;
            if !vcs.is_merged(&branch, &main).await? {
                let update = match vcs.update_branch(&worktree, &branch, &main).await {
                    Ok(update) => update,
                    Err(damaged @ VcsError::WorktreeDamaged { .. }) => {
                        self.block(&task, damaged.to_string()).await?;
                        return Ok(JobEnd::Done);
                    }
                    Err(e) => return Err(e.into()),
                };
                if !update.discarded.is_empty() {
                    files.progress(
                        self.now(),
                        &format!(
                            "discarded uncommitted changes before rebasing: {}",
                            update.discarded.join(", ")
                        ),
                    )?;
                }
                let mut outcome = update.outcome;
                // A merge step interrupted after its rebase (the rebase ends on its own) leaves
                // the verified change rebased onto main but neither verified nor recorded: that
                // is Factory's own move, verified again below like any rebase.
                if let UpdateOutcome::UpToDate(tip) = &outcome
                    && let Some(expected) = &task.verified_commit
                    && tip.0 != *expected
                    && vcs.same_change(&main, expected, &tip.0).await?
                {
                    files.progress(
                        self.now(),
                        &format!("{branch} holds the verified change rebased onto {main} by an interrupted run"),
                    )?;
                    outcome = UpdateOutcome::Rebased(tip.clone());
                }
                match outcome {
                    UpdateOutcome::UpToDate(tip) => {
                        // Merge exactly the commit that passed QA: a branch that moved since (an
                        // agent or a person committed or reset it) is not merged unverified.
                        if let Some(expected) = &task.verified_commit
                            && tip.0 != *expected
                        {
                            let reason = format!(
                                "{branch} moved after it passed verify (verified {}, now {}); retry the task to verify it again",
                                short(expected),
                                short(&tip.0)
                            );
                            self.block(&task, reason).await?;
                            return Ok(JobEnd::Done);
                        }
                        verified = Some(tip);
                    }
                    UpdateOutcome::Conflict { files: paths } => {
                        let what = format!("bringing {branch} up to date with {main}");
                        self.hand_back_conflict(&task, &paths, &what).await?;
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
                        verified = Some(tip);
                    }
                }
            }
            let verified = match verified {
                Some(commit) => commit,
                None => match vcs.branch_head(&branch).await? {
                    Some(tip) => tip,
                    None => {
                        self.block(&task, format!("branch {branch} no longer exists")).await?;
                        return Ok(JobEnd::Done);
                    }
                },
            };
            if self.block_if_oversized(&task, &verified.0).await? {
                return Ok(JobEnd::Done);
            }

            let message = format!(
                "Merge {branch}: {}\n\nFactory task {} (spec {}) of epic {}; QA rounds: {}.",
                task.title, task.id, task.spec_id, task.epic_id, task.qa_rounds
            );
            match vcs.merge_verified(&branch, &verified, &main, &message).await? {
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
                    self.clean_up_merged(&task, Some(&verified)).await?;
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
                    let what = format!("merging {branch} into {main}");
                    self.hand_back_conflict(&task, &paths, &what).await?;
                    Ok(JobEnd::Done)
                }
                MergeOutcome::TipMoved { expected, actual } => {
                    let now = actual.map_or_else(|| "gone".to_owned(), |tip| tip.to_string());
                    let reason = format!(
                        "{branch} moved after verify ({expected} passed, the tip is now {now}); nothing was merged"
                    );
                    self.block(&task, reason).await?;
                    Ok(JobEnd::Done)
                }
                MergeOutcome::MainMoved { expected, .. } => {
                    // Still `Merging`: the next step rebases onto the new main and re-verifies.
                    files.progress(self.now(), &format!("{main} moved from {expected} while merging; retrying"))?;
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
