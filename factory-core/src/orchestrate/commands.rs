//! What frontends ask Factory to do besides running: add an epic, send mail, retry or cancel a
//! task, cancel an epic. Each is safe beside a running `factory run` in another process: every
//! write is a compare-and-set, and the run notices cancelled tasks and stops their agents.

use crate::agent::{AgentId, AgentRole, AgentState};
use crate::epic::{Epic, EpicChanges, EpicEvent, EpicState, NewEpic};
use crate::mail::{HUMAN, Mail, NewMail};
use crate::ports::StoreError;
use crate::spec::SpecId;
use crate::task::{Task, TaskChanges, TaskEvent, TaskId, TaskState};

use super::artifacts::SpecFiles;
use super::{Factory, OrchestrateError};

impl Factory {
    /// Adds an epic; it is planned by the next run.
    pub async fn add_epic(&self, text: &str) -> Result<Epic, OrchestrateError> {
        let new = NewEpic::new(text)?;
        let written = self.store_ref().create_epic(new).await?;
        Ok(self.committed(written))
    }

    /// Stores a message; agents read their unread mail in their next prompt.
    pub async fn send_mail(
        &self,
        from: &str,
        to: &str,
        subject: &str,
        body: &str,
        task_id: Option<TaskId>,
    ) -> Result<Mail, OrchestrateError> {
        let written = self
            .store_ref()
            .send_mail(NewMail {
                from: from.to_owned(),
                to: to.to_owned(),
                subject: subject.to_owned(),
                body: body.to_owned(),
                task_id,
            })
            .await?;
        Ok(self.committed(written))
    }

    /// Sends a message from the human to an agent, which reads it in its next prompt. The
    /// address must name an existing epic's planner or an existing task's worker or reviewer
    /// (the agent need not have run yet), or `human`.
    pub async fn mail_agent(
        &self,
        to: &str,
        subject: &str,
        body: &str,
    ) -> Result<Mail, OrchestrateError> {
        let unknown = || OrchestrateError::UnknownRecipient { to: to.to_owned() };
        let task_id = match to.split_once('/') {
            _ if to == HUMAN => None,
            Some(("planner", scope)) => {
                let id = scope.strip_prefix("epic-").ok_or_else(unknown)?;
                self.find_epic(id).await.map_err(|_| unknown())?;
                None
            }
            Some(("worker" | "reviewer", scope)) => {
                let spec: SpecId = scope.parse().map_err(|_| unknown())?;
                match self.store_ref().task_by_spec(&spec).await {
                    Err(StoreError::NotFound { .. }) => return Err(unknown()),
                    other => Some(other?.id),
                }
            }
            _ => return Err(unknown()),
        };
        self.send_mail(HUMAN, to, subject, body, task_id).await
    }

    /// Gives a task a fresh round budget. A blocked task goes back to `Assigned` (and its epic,
    /// if blocked, back to in progress); a task still in progress keeps its state and resumes
    /// with the fresh budget on the next run. Final tasks (completed, failed, cancelled) are
    /// refused.
    pub async fn retry_task(&self, id: &str) -> Result<Task, OrchestrateError> {
        let task = self.find_task(id).await?;
        if task.state.is_terminal() {
            return Err(OrchestrateError::WrongTaskState {
                spec_id: task.spec_id,
                state: task.state,
                why: "a finished task cannot be retried",
            });
        }
        let event = (task.state == TaskState::Blocked).then_some(TaskEvent::Unblock);
        let changes = TaskChanges {
            rounds_base: Some(task.qa_rounds),
            // A pending conflict round stays pending, with its attempts afresh.
            conflict_rounds: Some(0),
            blocked_reason: Some(None),
            waiting_reason: Some(None),
            ..TaskChanges::default()
        };
        let task = self.update_task(&task, event, changes).await?;
        let epic = self.store_ref().epic(task.epic_id).await?;
        if epic.state == EpicState::Blocked {
            self.update_epic(
                &epic,
                Some(EpicEvent::Unblock),
                EpicChanges {
                    blocked_reason: Some(None),
                },
            )
            .await?;
        }
        Ok(task)
    }

    /// Cancels a task that is not finished: state `Cancelled`, its agent stopped (a run in
    /// progress notices within a moment), its worktree removed; its branch is kept.
    pub async fn cancel_task(&self, id: &str) -> Result<Task, OrchestrateError> {
        let task = self.find_task(id).await?;
        if task.state.is_terminal() {
            return Err(OrchestrateError::WrongTaskState {
                spec_id: task.spec_id,
                state: task.state,
                why: "a finished task cannot be cancelled",
            });
        }
        self.cancel(task).await
    }

    /// Cancels an epic and every task of it that is not finished.
    pub async fn cancel_epic(&self, id: &str) -> Result<Epic, OrchestrateError> {
        let epic = self.find_epic(id).await?;
        if epic.state.is_terminal() {
            return Err(OrchestrateError::WrongEpicState {
                epic: epic.id,
                state: epic.state,
                why: "a finished epic cannot be cancelled",
            });
        }
        for task in self.store_ref().list_tasks(Some(epic.id)).await? {
            if !task.state.is_terminal() {
                self.cancel(task).await?;
            }
        }
        let epic = self.store_ref().epic(epic.id).await?;
        self.update_epic(&epic, Some(EpicEvent::Cancel), EpicChanges::default())
            .await
    }

    async fn cancel(&self, task: Task) -> Result<Task, OrchestrateError> {
        let task = self
            .update_task(
                &task,
                Some(TaskEvent::Cancel),
                TaskChanges {
                    waiting_reason: Some(None),
                    ..TaskChanges::default()
                },
            )
            .await?;
        for role in [AgentRole::Worker, AgentRole::Reviewer] {
            let agent = AgentId::new(role, &task.spec_id);
            self.set_agent(&agent, role, Some(task.id), AgentState::Idle)
                .await?;
        }
        self.inner
            .ports
            .vcs
            .remove_worktree(&self.layout().task_worktree(&task.spec_id))
            .await?;
        let files = SpecFiles::new(self.layout().spec_dir(&task.spec_id));
        files.progress(
            self.now(),
            "cancelled; the worktree was removed, the branch kept",
        )?;
        files.write_metadata(&task)?;
        Ok(task)
    }
}
