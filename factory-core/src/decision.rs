//! The decision log: what each agent (and the orchestrator) decided, why, and on what basis.

use serde::{Deserialize, Serialize};

use crate::Timestamp;
use crate::epic::EpicId;
use crate::task::TaskId;

/// Store-assigned identifier of a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DecisionId(pub i64);

/// A decision as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// Identifier.
    pub id: DecisionId,
    /// The epic it belongs to.
    pub epic_id: EpicId,
    /// The task it concerns, if any.
    pub task_id: Option<TaskId>,
    /// Who decided (an agent id or `orchestrator`).
    pub actor: String,
    /// What was decided, in one line.
    pub decision: String,
    /// Why.
    pub reasoning: String,
    /// What the decision was based on (round, verdict, files, …).
    pub context: serde_json::Value,
    /// When.
    pub created_at: Timestamp,
}

/// What a caller supplies.
#[derive(Debug, Clone, PartialEq)]
pub struct NewDecision {
    /// The epic it belongs to.
    pub epic_id: EpicId,
    /// The task it concerns, if any.
    pub task_id: Option<TaskId>,
    /// Who decided.
    pub actor: String,
    /// What was decided.
    pub decision: String,
    /// Why.
    pub reasoning: String,
    /// On what basis.
    pub context: serde_json::Value,
}

/// Which decisions to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DecisionFilter {
    /// Only this epic's.
    pub epic_id: Option<EpicId>,
    /// Only this task's.
    pub task_id: Option<TaskId>,
}
