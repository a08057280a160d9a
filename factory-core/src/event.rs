//! Typed domain events the orchestration emits. Subscribers (the CLI's progress lines, later the
//! snapshot service and the durable event queue) receive these, never strings.

use serde::{Deserialize, Serialize};

use crate::Timestamp;
use crate::agent::{AgentId, AgentRole};
use crate::epic::{Epic, EpicId, EpicState};
use crate::mail::{Mail, MailId};
use crate::spec::SpecId;
use crate::task::{Task, TaskId, TaskState};

/// An event as persisted in the journal, with its sequence number.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredEvent {
    /// Position in the journal: 1, 2, 3, … with no gaps, in commit order.
    pub seq: u64,
    /// When it was committed.
    pub at: Timestamp,
    /// The event.
    pub event: DomainEvent,
}

/// The reviewer's verdict on one QA round.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Good to merge (if verify also passes).
    Approve,
    /// Back to the worker with a fix request.
    ChangesRequested,
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Verdict::Approve => "approve",
            Verdict::ChangesRequested => "changes_requested",
        })
    }
}

/// When a verify run happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VerifyStage {
    /// Inside the QA loop, on the worker's branch.
    Qa,
    /// In the merge queue, on the branch brought up to date with main.
    PreMerge,
}

/// Something that happened. The `type` tag names follow DESIGN §5 where one exists.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum DomainEvent {
    /// An epic was added.
    #[serde(rename = "epic.created")]
    EpicCreated {
        /// The epic.
        epic_id: EpicId,
        /// Its title.
        title: String,
    },
    /// An epic changed state.
    #[serde(rename = "epic.state_changed")]
    EpicStateChanged {
        /// The epic.
        epic_id: EpicId,
        /// Old state.
        from: EpicState,
        /// New state.
        to: EpicState,
    },
    /// The planner created a task.
    #[serde(rename = "task.created")]
    TaskCreated {
        /// The epic.
        epic_id: EpicId,
        /// The task.
        task_id: TaskId,
        /// Its spec id.
        spec_id: SpecId,
        /// Its title.
        title: String,
        /// What it waits for.
        depends_on: Vec<TaskId>,
    },
    /// Every dependency of a task is merged.
    #[serde(rename = "task.ready")]
    TaskReady {
        /// The task.
        task_id: TaskId,
        /// Its spec id.
        spec_id: SpecId,
    },
    /// A task changed state.
    #[serde(rename = "task.state_changed")]
    TaskStateChanged {
        /// The task.
        task_id: TaskId,
        /// Its spec id.
        spec_id: SpecId,
        /// Old state.
        from: TaskState,
        /// New state.
        to: TaskState,
        /// Why, when blocked or sent back.
        reason: Option<String>,
    },
    /// An agent run began.
    #[serde(rename = "agent.started")]
    AgentStarted {
        /// Which agent.
        agent_id: AgentId,
        /// Its role.
        role: AgentRole,
        /// The task, if any.
        task_id: Option<TaskId>,
        /// Round number (1-based) for workers and reviewers.
        round: u32,
    },
    /// An agent run ended.
    #[serde(rename = "agent.completed")]
    AgentCompleted {
        /// Which agent.
        agent_id: AgentId,
        /// Its role.
        role: AgentRole,
        /// The task, if any.
        task_id: Option<TaskId>,
        /// Round number.
        round: u32,
        /// Whether it produced usable output.
        ok: bool,
        /// How long it ran.
        duration_ms: u64,
    },
    /// The reviewer judged a round.
    #[serde(rename = "qa.reported")]
    QaReported {
        /// The task.
        task_id: TaskId,
        /// Its spec id.
        spec_id: SpecId,
        /// Round number.
        round: u32,
        /// The verdict.
        verdict: Verdict,
        /// The reviewer's summary.
        summary: String,
    },
    /// The verify command finished.
    #[serde(rename = "verify.completed")]
    VerifyCompleted {
        /// The task.
        task_id: TaskId,
        /// Its spec id.
        spec_id: SpecId,
        /// Round number.
        round: u32,
        /// Inside QA or before merge.
        stage: VerifyStage,
        /// Whether it exited 0.
        passed: bool,
        /// Its exit code (None if killed).
        exit_code: Option<i32>,
        /// How long it ran.
        duration_ms: u64,
    },
    /// A task entered the merge queue.
    #[serde(rename = "merge.requested")]
    MergeRequested {
        /// The task.
        task_id: TaskId,
        /// Its spec id.
        spec_id: SpecId,
    },
    /// A merge cannot happen yet; not an error.
    #[serde(rename = "merge.waiting")]
    MergeWaiting {
        /// The task.
        task_id: TaskId,
        /// Its spec id.
        spec_id: SpecId,
        /// Why.
        reason: String,
    },
    /// A task's branch was merged `--no-ff` into main.
    #[serde(rename = "merge.completed")]
    MergeCompleted {
        /// The task.
        task_id: TaskId,
        /// Its spec id.
        spec_id: SpecId,
        /// The merge commit.
        commit: String,
    },
    /// A message was sent.
    #[serde(rename = "mail.sent")]
    MailSent {
        /// The message.
        mail_id: MailId,
        /// Sender.
        from: String,
        /// Recipient.
        to: String,
        /// Subject.
        subject: String,
    },
}

impl DomainEvent {
    /// The event's type name, e.g. `task.created`.
    pub fn kind(&self) -> &'static str {
        match self {
            DomainEvent::EpicCreated { .. } => "epic.created",
            DomainEvent::EpicStateChanged { .. } => "epic.state_changed",
            DomainEvent::TaskCreated { .. } => "task.created",
            DomainEvent::TaskReady { .. } => "task.ready",
            DomainEvent::TaskStateChanged { .. } => "task.state_changed",
            DomainEvent::AgentStarted { .. } => "agent.started",
            DomainEvent::AgentCompleted { .. } => "agent.completed",
            DomainEvent::QaReported { .. } => "qa.reported",
            DomainEvent::VerifyCompleted { .. } => "verify.completed",
            DomainEvent::MergeRequested { .. } => "merge.requested",
            DomainEvent::MergeWaiting { .. } => "merge.waiting",
            DomainEvent::MergeCompleted { .. } => "merge.completed",
            DomainEvent::MailSent { .. } => "mail.sent",
        }
    }
}

/// The journal entries that a state change brings with it. The store writes these in the same
/// transaction as the change (an outbox), so a reader of the journal never sees a change without
/// its events or an event without its change. These functions are the one place that decides
/// which change announces what.
pub mod journal {
    use super::*;

    /// For a new epic.
    pub fn epic_created(epic: &Epic) -> Vec<DomainEvent> {
        vec![DomainEvent::EpicCreated {
            epic_id: epic.id,
            title: epic.title.clone(),
        }]
    }

    /// For an epic write: a state change, if there was one.
    pub fn epic_changed(before: &Epic, after: &Epic) -> Vec<DomainEvent> {
        if before.state == after.state {
            return Vec::new();
        }
        vec![DomainEvent::EpicStateChanged {
            epic_id: after.id,
            from: before.state,
            to: after.state,
        }]
    }

    /// For a task created by a plan.
    pub fn task_created(task: &Task) -> Vec<DomainEvent> {
        vec![DomainEvent::TaskCreated {
            epic_id: task.epic_id,
            task_id: task.id,
            spec_id: task.spec_id.clone(),
            title: task.title.clone(),
            depends_on: task.depends_on.clone(),
        }]
    }

    /// For a task write: the state change, and what it means (ready, queued for merge, merged,
    /// waiting).
    pub fn task_changed(before: &Task, after: &Task) -> Vec<DomainEvent> {
        let mut events = Vec::new();
        let (task_id, spec_id) = (after.id, after.spec_id.clone());
        if before.state != after.state {
            let reason = match after.state {
                TaskState::Blocked | TaskState::Failed => after.blocked_reason.clone(),
                _ => None,
            };
            events.push(DomainEvent::TaskStateChanged {
                task_id,
                spec_id: spec_id.clone(),
                from: before.state,
                to: after.state,
                reason,
            });
            match (before.state, after.state) {
                (TaskState::Pending, TaskState::Assigned) => {
                    events.push(DomainEvent::TaskReady {
                        task_id,
                        spec_id: spec_id.clone(),
                    });
                }
                (_, TaskState::Merging) => events.push(DomainEvent::MergeRequested {
                    task_id,
                    spec_id: spec_id.clone(),
                }),
                (_, TaskState::Completed) => {
                    if let Some(commit) = &after.merge_commit {
                        events.push(DomainEvent::MergeCompleted {
                            task_id,
                            spec_id: spec_id.clone(),
                            commit: commit.clone(),
                        });
                    }
                }
                _ => {}
            }
        }
        if let Some(reason) = &after.waiting_reason
            && before.waiting_reason.as_ref() != Some(reason)
        {
            events.push(DomainEvent::MergeWaiting {
                task_id,
                spec_id,
                reason: reason.clone(),
            });
        }
        events
    }

    /// For a message.
    pub fn mail_sent(mail: &Mail) -> Vec<DomainEvent> {
        vec![DomainEvent::MailSent {
            mail_id: mail.id,
            from: mail.from.clone(),
            to: mail.to.clone(),
            subject: mail.subject.clone(),
        }]
    }
}
