//! Agents: the planner, worker and reviewer roles, and the state each agent instance is in.

use serde::{Deserialize, Serialize};

use crate::task::TaskId;
use crate::transition::snake_case_enum;
use crate::{IllegalTransition, Timestamp};

/// What an agent is asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentRole {
    /// Turns an epic into tasks.
    Planner,
    /// Edits a task's worktree.
    Worker,
    /// Judges a task's work.
    Reviewer,
}
snake_case_enum!(AgentRole { Planner => "planner", Worker => "worker", Reviewer => "reviewer" });

/// Stable name of an agent instance: `<role>/<scope>`, e.g. `worker/001-add-greeting` or
/// `planner/epic-1`. Mail is addressed to these names.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AgentId(pub String);

impl AgentId {
    /// The agent that plays `role` for `scope` (a spec id or `epic-N`).
    pub fn new(role: AgentRole, scope: impl std::fmt::Display) -> AgentId {
        AgentId(format!("{role}/{scope}"))
    }

    /// The address people use.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for AgentId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Lifecycle of an agent: `Idle ↔ Busy ↔ Waiting`, any → `Failed`, and `Failed → Idle` on reset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentState {
    /// Not running.
    Idle,
    /// Running.
    Busy,
    /// Paused on something outside itself (review, verify, the merge queue, a person).
    Waiting,
    /// Its last run failed; needs attention.
    Failed,
}
snake_case_enum!(AgentState { Idle => "idle", Busy => "busy", Waiting => "waiting", Failed => "failed" });

/// What can happen to an agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentEvent {
    /// A run starts (from idle) or resumes (from waiting).
    Start,
    /// The run ended and produced output.
    Finish,
    /// The run is paused on something outside the agent.
    Wait,
    /// The run failed.
    Fail,
    /// A failed agent is cleared for another try.
    Reset,
}
snake_case_enum!(AgentEvent { Start => "start", Finish => "finish", Wait => "wait", Fail => "fail", Reset => "reset" });

impl AgentState {
    /// The one place that decides which agent transitions are legal.
    pub fn transition(self, event: AgentEvent) -> Result<AgentState, IllegalTransition> {
        use AgentEvent as E;
        use AgentState as S;
        match (self, event) {
            (S::Idle | S::Waiting, E::Start) => Ok(S::Busy),
            (S::Busy | S::Waiting, E::Finish) => Ok(S::Idle),
            (S::Busy, E::Wait) => Ok(S::Waiting),
            (_, E::Fail) => Ok(S::Failed),
            (S::Failed, E::Reset) => Ok(S::Idle),
            (from, event) => Err(IllegalTransition::new("agent", from, event)),
        }
    }

    /// The shortest sequence of legal events that takes an agent from `self` to `target`
    /// (empty when already there), so orchestration states intent, not event order.
    pub fn path_to(self, target: AgentState) -> &'static [AgentEvent] {
        use AgentEvent as E;
        use AgentState as S;
        match (self, target) {
            (a, b) if a == b => &[],
            (_, S::Failed) => &[E::Fail],
            (S::Idle | S::Waiting, S::Busy) => &[E::Start],
            (S::Failed, S::Busy) => &[E::Reset, E::Start],
            (S::Busy, S::Waiting) => &[E::Wait],
            (S::Idle, S::Waiting) => &[E::Start, E::Wait],
            (S::Failed, S::Waiting) => &[E::Reset, E::Start, E::Wait],
            (S::Busy | S::Waiting, S::Idle) => &[E::Finish],
            (S::Failed, S::Idle) => &[E::Reset],
            _ => &[],
        }
    }
}

/// An agent instance as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Agent {
    /// Name and mail address.
    pub id: AgentId,
    /// Role it plays.
    pub role: AgentRole,
    /// Current state.
    pub state: AgentState,
    /// Bumped on every write; writers compare-and-set on it.
    pub version: u64,
    /// The task it works on, if any.
    pub task_id: Option<TaskId>,
    /// When it last changed.
    pub updated_at: Timestamp,
}

impl Agent {
    /// The agent after `event`, with the version bumped.
    pub fn apply(&self, event: AgentEvent, now: Timestamp) -> Result<Agent, IllegalTransition> {
        let mut next = self.clone();
        next.state = self.state.transition(event)?;
        next.version = self.version + 1;
        next.updated_at = now;
        Ok(next)
    }
}
