//! One task's pipeline: prepare the worktree, then worker → review → verify rounds until QA
//! passes (→ merge queue) or the round budget is spent (→ blocked).

use serde_json::json;
use tracing::Instrument;

use crate::agent::{AgentId, AgentRole, AgentState};
use crate::event::{DomainEvent, Verdict, VerifyStage};
use crate::mail::{HUMAN, MailFilter};
use crate::ports::{AgentRequest, CommandSpec, CommitId, VcsError};
use crate::protocol::{ReviewOutput, WorkerNotes};
use crate::task::{Task, TaskChanges, TaskEvent, TaskId, TaskState};

use super::artifacts::{SpecFiles, VerifySummary};
use super::{Factory, JobEnd, OrchestrateError};

impl Factory {
    /// Moves one task forward until it is queued for merge, blocked, or needs nothing more.
    pub(super) async fn drive_task(&self, id: TaskId) -> Result<JobEnd, OrchestrateError> {
        let task = self.store_ref().task(id).await?;
        let span = tracing::info_span!("task", spec = %task.spec_id);
        async move {
            let files = SpecFiles::new(self.layout().spec_dir(&task.spec_id));
            let mut task = task;
            loop {
                let next = match task.state {
                    TaskState::Assigned => Some(self.prepare(task, &files).await?),
                    TaskState::InProgress => self.work_round(task, &files).await?,
                    TaskState::Review => self.qa_round(task, &files).await?,
                    _ => None,
                };
                match next {
                    Some(t) if !matches!(t.state, TaskState::Merging) => task = t,
                    _ => return Ok(JobEnd::Done),
                }
            }
        }
        .instrument(span)
        .await
    }

    /// Creates the worktree and the spec dir; `Assigned → InProgress`.
    async fn prepare(&self, task: Task, files: &SpecFiles) -> Result<Task, OrchestrateError> {
        let config = self.config();
        let main = &config.git.main_branch;
        let vcs = &self.inner.ports.vcs;
        let branch = task.spec_id.branch();
        let worktree = self.layout().task_worktree(&task.spec_id);
        vcs.create_worktree(&worktree, &branch, main).await?;
        let base = vcs.branch_head(main).await?;
        let epic = self.store_ref().epic(task.epic_id).await?;
        let mut dep_tasks = Vec::with_capacity(task.depends_on.len());
        for id in &task.depends_on {
            dep_tasks.push(self.store_ref().task(*id).await?);
        }
        let deps: Vec<&Task> = dep_tasks.iter().collect();
        let context = json!({
            "repository": self.layout().repo_root(),
            "epic_id": epic.id,
            "epic_title": epic.title,
            "main_branch": main,
            "base_commit": base,
            "branch": branch,
            "worktree": worktree,
            "spec_dir": files.dir(),
            "verify_command": config.verify.command,
            "max_rounds": config.qa.max_rounds,
        });
        files.write_initial(&epic, &task, &deps, context)?;
        files.write_plan(1, &[])?;
        files.progress(
            self.now(),
            &format!(
                "assigned: worktree {} on branch {branch}",
                worktree.display()
            ),
        )?;
        let task = self
            .update_task(
                &task,
                Some(TaskEvent::Start),
                TaskChanges {
                    branch: Some(Some(branch)),
                    ..TaskChanges::default()
                },
            )
            .await?;
        files.write_metadata(&task)?;
        Ok(task)
    }

    /// One worker round: prompt, edits, commit; `InProgress → Review`. `None` when blocked.
    async fn work_round(
        &self,
        task: Task,
        files: &SpecFiles,
    ) -> Result<Option<Task>, OrchestrateError> {
        let max_rounds = self.config().qa.max_rounds;
        // A round counts once its QA verdict is recorded: a round cut short by a stop or a
        // crash has the same number when it runs again.
        let round = task.current_round();
        if task.rounds_used() >= max_rounds {
            let reason = format!(
                "QA did not pass in {max_rounds} round(s); see {}/qa_report.md",
                files.dir().display()
            );
            self.block(&task, reason).await?;
            return Ok(None);
        }
        let worktree = self.layout().task_worktree(&task.spec_id);
        let branch = task.branch.clone().unwrap_or_else(|| task.spec_id.branch());
        // What the round changed is judged by the branch's tip, not by who committed: against
        // the tip when this round first started, which a run interrupted after committing the
        // round (but before recording it) has already moved.
        let round_start = match &task.round_start {
            Some(start) => Some(CommitId(start.clone())),
            None => self.inner.ports.vcs.branch_head(&branch).await?,
        };
        let task = self
            .update_task(
                &task,
                None,
                TaskChanges {
                    attempts: Some(task.attempts + 1),
                    round_start: Some(round_start.as_ref().map(|c| c.0.clone())),
                    ..TaskChanges::default()
                },
            )
            .await?;
        let tip_before = round_start;
        let agent_id = AgentId::new(AgentRole::Worker, &task.spec_id);
        let fix_request = if round > 1 {
            files.read_fix_request()
        } else {
            None
        };
        let mail = self
            .store_ref()
            .list_mail(MailFilter {
                to: Some(agent_id.to_string()),
                unread_only: true,
            })
            .await?;
        let request = AgentRequest {
            role: AgentRole::Worker,
            agent_id: agent_id.clone(),
            prompt: super::prompt::worker(&task, round, fix_request.as_deref(), &mail),
            workdir: worktree.clone(),
            spec_id: Some(task.spec_id.clone()),
            spec_dir: Some(files.dir().to_owned()),
            task_key: Some(task.key.clone()),
            round,
        };
        for m in &mail {
            self.store_ref().mark_mail_read(m.id).await?;
        }
        files.progress(self.now(), &format!("worker round {round} started"))?;
        let scope = task.spec_id.to_string();
        let output = match self
            .run_agent(AgentRole::Worker, &agent_id, Some(task.id), request, &scope)
            .await?
        {
            Ok(output) => output,
            Err(e) => {
                self.block(&task, format!("worker failed in round {round}: {e}"))
                    .await?;
                return Ok(None);
            }
        };
        let notes = WorkerNotes::parse(&output);
        for (decision, reasoning) in &notes.decisions {
            self.decide(
                task.epic_id,
                Some(task.id),
                agent_id.as_str(),
                decision,
                reasoning,
                json!({ "round": round }),
            )
            .await?;
        }
        for body in &notes.mail {
            self.send_mail(
                agent_id.as_str(),
                HUMAN,
                &format!("{} round {round}", task.spec_id),
                body,
                Some(task.id),
            )
            .await?;
        }
        // A conflict round is resolved only when no conflict markers are left.
        let resolving = !task.conflict_files.is_empty();
        if resolving {
            let unresolved = self.unresolved_conflicts(&task);
            if !unresolved.is_empty() {
                return self.conflict_left_unresolved(&task, &unresolved).await;
            }
        }
        let message = format!("{}: {} (round {round})", task.spec_id, task.title);
        let vcs = &self.inner.ports.vcs;
        let committed = match vcs.commit_all(&worktree, &branch, &message).await {
            Ok(committed) => committed,
            Err(damaged @ VcsError::WorktreeDamaged { .. }) => {
                self.block(&task, damaged.to_string()).await?;
                return Ok(None);
            }
            Err(e) => return Err(e.into()),
        };
        // The agent may have committed its own work: that counts as a change too.
        let tip_after = vcs.branch_head(&branch).await?;
        let changed = committed.or(tip_after.filter(|tip| Some(tip) != tip_before.as_ref()));
        let Some(commit) = changed else {
            let reason = if resolving {
                format!(
                    "the conflict resolution in round {round} leaves nothing of the task's change on top of {}",
                    self.config().git.main_branch
                )
            } else if round == 1 {
                "the worker made no changes in round 1".to_owned()
            } else {
                format!(
                    "round {round} changed nothing after QA asked for changes; see QA_FIX_REQUEST.md"
                )
            };
            self.block(&task, reason).await?;
            return Ok(None);
        };
        if self.block_if_oversized(&task, &commit.0).await? {
            return Ok(None);
        }
        let summary = notes
            .summary
            .as_deref()
            .unwrap_or("(the worker gave no summary)");
        self.decide(
            task.epic_id,
            Some(task.id),
            agent_id.as_str(),
            &format!("submit round {round} for review"),
            summary,
            json!({ "round": round, "commit": commit }),
        )
        .await?;
        self.set_agent(
            &agent_id,
            AgentRole::Worker,
            Some(task.id),
            AgentState::Waiting,
        )
        .await?;
        files.progress(
            self.now(),
            &format!("worker round {round} committed {commit}"),
        )?;
        files.write_plan(2, &[("implement", format!("round {round}: {commit}"))])?;
        let task = self
            .update_task(
                &task,
                Some(TaskEvent::SubmitForReview),
                TaskChanges {
                    conflict_files: resolving.then(Vec::new),
                    round_start: Some(None),
                    ..TaskChanges::default()
                },
            )
            .await?;
        files.write_metadata(&task)?;
        Ok(Some(task))
    }

    /// One QA round: reviewer verdict and verify; `Review → Merging` on pass, `→ InProgress`
    /// with QA_FIX_REQUEST.md otherwise, blocked once the round budget is spent.
    async fn qa_round(
        &self,
        task: Task,
        files: &SpecFiles,
    ) -> Result<Option<Task>, OrchestrateError> {
        let round = task.current_round();
        let max_rounds = self.config().qa.max_rounds;
        let main = &self.config().git.main_branch;
        let branch = task.spec_id.branch();
        let changed = self.inner.ports.vcs.changed_paths(main, &branch).await?;
        let agent_id = AgentId::new(AgentRole::Reviewer, &task.spec_id);
        let request = AgentRequest {
            role: AgentRole::Reviewer,
            agent_id: agent_id.clone(),
            prompt: super::prompt::reviewer(&task, round, &changed),
            workdir: self.layout().task_worktree(&task.spec_id),
            spec_id: Some(task.spec_id.clone()),
            spec_dir: Some(files.dir().to_owned()),
            task_key: Some(task.key.clone()),
            round,
        };
        let scope = task.spec_id.to_string();
        let review = match self
            .run_agent(
                AgentRole::Reviewer,
                &agent_id,
                Some(task.id),
                request,
                &scope,
            )
            .await?
        {
            Ok(output) => ReviewOutput::parse(&output).map_err(|e| e.to_string()),
            Err(e) => Err(format!("reviewer failed in round {round}: {e}")),
        };
        let review = match review {
            Ok(review) => {
                self.set_agent(
                    &agent_id,
                    AgentRole::Reviewer,
                    Some(task.id),
                    AgentState::Idle,
                )
                .await?;
                review
            }
            Err(reason) => {
                self.set_agent(
                    &agent_id,
                    AgentRole::Reviewer,
                    Some(task.id),
                    AgentState::Failed,
                )
                .await?;
                self.block(&task, reason).await?;
                return Ok(None);
            }
        };
        self.emit(DomainEvent::QaReported {
            task_id: task.id,
            spec_id: task.spec_id.clone(),
            round,
            verdict: review.verdict,
            summary: review.summary.clone(),
        })
        .await?;
        self.decide(
            task.epic_id,
            Some(task.id),
            agent_id.as_str(),
            match review.verdict {
                Verdict::Approve => "approve",
                Verdict::ChangesRequested => "request changes",
            },
            &review.summary,
            json!({ "round": round, "issues": review.issues, "changed_files": changed }),
        )
        .await?;
        files.write_plan(3, &[])?;
        // The reviewer ran in the worktree too: verify only what is still the task's worktree.
        let worktree = self.layout().task_worktree(&task.spec_id);
        let branch = task.branch.clone().unwrap_or_else(|| task.spec_id.branch());
        if let Some(damage) = self
            .inner
            .ports
            .vcs
            .worktree_damage(&worktree, &branch)
            .await?
        {
            let damaged = VcsError::WorktreeDamaged {
                path: worktree,
                damage,
            };
            self.block(&task, damaged.to_string()).await?;
            return Ok(None);
        }
        let verify = self.verify(&task, round, VerifyStage::Qa).await?;
        let passed = review.verdict == Verdict::Approve && verify.passed();
        files.append_qa_round(round, &review, &verify, passed)?;
        if passed {
            // The commit that passed: the merge queue merges exactly this one.
            let verified = self.inner.ports.vcs.branch_head(&branch).await?;
            files.remove_fix_request()?;
            files.write_plan(4, &[("verify", verify.line())])?;
            files.progress(
                self.now(),
                &format!("QA round {round} passed; queued for merge"),
            )?;
            let task = self
                .update_task(
                    &task,
                    Some(TaskEvent::Approve),
                    TaskChanges {
                        qa_rounds: Some(round),
                        verified_commit: Some(verified.map(|c| c.to_string())),
                        ..TaskChanges::default()
                    },
                )
                .await?;
            files.write_metadata(&task)?;
            return Ok(Some(task));
        }
        let task = self
            .update_task(
                &task,
                None,
                TaskChanges {
                    qa_rounds: Some(round),
                    ..TaskChanges::default()
                },
            )
            .await?;
        files.write_fix_request(&fix_request_text(
            round,
            &format!("Reviewer: {}", review.verdict),
            &review.summary,
            &review.issues,
            &verify,
        ))?;
        let why = if verify.passed() {
            "the reviewer requested changes".to_owned()
        } else {
            format!("verify {}", verify.line())
        };
        if task.rounds_used() >= max_rounds {
            self.block(
                &task,
                format!("QA did not pass in {max_rounds} round(s); last round: {why}"),
            )
            .await?;
            return Ok(None);
        }
        files.progress(
            self.now(),
            &format!("QA round {round}: {why}; back to the worker"),
        )?;
        let task = self
            .update_task(
                &task,
                Some(TaskEvent::RequestChanges),
                TaskChanges::default(),
            )
            .await?;
        files.write_metadata(&task)?;
        Ok(Some(task))
    }

    /// Runs the verify command in the task's worktree, logs its output and announces the result.
    pub(super) async fn verify(
        &self,
        task: &Task,
        round: u32,
        stage: VerifyStage,
    ) -> Result<VerifySummary, OrchestrateError> {
        let command = self.config().verify.command.trim().to_owned();
        if command.is_empty() {
            return Ok(VerifySummary::NotConfigured);
        }
        let stage_name = match stage {
            VerifyStage::Qa => "qa",
            VerifyStage::PreMerge => "pre-merge",
        };
        let dir = self.layout().logs_dir(&task.spec_id.to_string());
        let path = dir.join(format!("verify-{stage_name}-round-{round}.log"));
        let output = self
            .inner
            .ports
            .sandbox
            .run(CommandSpec {
                command: command.clone(),
                cwd: self.layout().task_worktree(&task.spec_id),
                env: vec![("FACTORY_SPEC_ID".into(), task.spec_id.to_string())],
                stdin: None,
                timeout: std::time::Duration::from_secs(self.config().verify.timeout_secs),
                writable: vec![self.layout().task_worktree(&task.spec_id)],
                output_log: Some(path.with_extension("overflow.log")),
            })
            .await?;
        let log = format!(
            "$ {command}\n{}\n--- stdout\n{}\n--- stderr\n{}\n",
            crate::ports::exit_description(output.exit_code),
            output.stdout,
            output.stderr
        );
        std::fs::create_dir_all(&dir)
            .and_then(|()| std::fs::write(&path, log))
            .map_err(|source| OrchestrateError::Artifact { path, source })?;
        self.emit(DomainEvent::VerifyCompleted {
            task_id: task.id,
            spec_id: task.spec_id.clone(),
            round,
            stage,
            passed: output.success(),
            exit_code: output.exit_code,
            duration_ms: u64::try_from(output.duration.as_millis()).unwrap_or(u64::MAX),
        })
        .await?;
        if output.command_not_found() {
            return Err(OrchestrateError::VerifyCommandNotFound { command });
        }
        Ok(VerifySummary::Ran { command, output })
    }
}

/// QA_FIX_REQUEST.md: who asked for changes (`heading`), what they said, and what the verify
/// command said.
pub(super) fn fix_request_text(
    round: u32,
    heading: &str,
    summary: &str,
    issues: &[String],
    verify: &VerifySummary,
) -> String {
    let mut text = format!("# QA fix request (after round {round})\n\n## {heading}\n\n");
    if !summary.trim().is_empty() {
        text.push_str(summary.trim());
        text.push_str("\n\n");
    }
    for issue in issues {
        text.push_str(&format!("- {issue}\n"));
    }
    text.push_str(&format!("\n## Verify: {}\n", verify.line()));
    if !verify.passed() {
        text.push_str(&format!("\n```\n{}\n```\n", verify.tail(40)));
    }
    text
}
