//! What agents must print: the planner's plan, the reviewer's verdict, and the worker's optional
//! decision and mail lines. Documented for users in README "Agent formats".

use serde::{Deserialize, Serialize};

use crate::agent::AgentRole;
use crate::event::Verdict;
use crate::task::NewTask;

/// The planner's stdout: one JSON object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanOutput {
    /// Why the epic was split this way (goes to the decision log).
    #[serde(default)]
    pub reasoning: String,
    /// At least one task.
    pub tasks: Vec<PlannedTask>,
}

/// One task in a plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlannedTask {
    /// Short key unique in the plan, referenced by `depends_on`.
    pub key: String,
    /// One line; also gives the spec id's slug.
    pub title: String,
    /// What to build.
    #[serde(default)]
    pub description: String,
    /// What the reviewer checks.
    #[serde(default)]
    pub acceptance: Vec<String>,
    /// Keys of tasks that must be merged first.
    #[serde(default)]
    pub depends_on: Vec<String>,
}

impl From<PlannedTask> for NewTask {
    fn from(t: PlannedTask) -> NewTask {
        NewTask {
            key: t.key,
            title: t.title,
            description: t.description,
            acceptance: t.acceptance,
            depends_on: t.depends_on,
        }
    }
}

/// The reviewer's stdout: one JSON object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReviewOutput {
    /// `approve` or `changes_requested`.
    pub verdict: Verdict,
    /// One paragraph; goes to qa_report.md and the decision log.
    #[serde(default)]
    pub summary: String,
    /// What must change (for `changes_requested`); goes to QA_FIX_REQUEST.md.
    #[serde(default)]
    pub issues: Vec<String>,
}

/// A worker line `DECISION: <what> -- <why>`, recorded in the decision log.
pub const DECISION_PREFIX: &str = "DECISION:";
/// A worker line `MAIL: <text>`, sent to the human's mailbox.
pub const MAIL_PREFIX: &str = "MAIL:";

/// Agent output that does not follow the format for its role.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{role} output is not valid: {message}; see README \"Agent formats\" (output began: {excerpt:?})"
)]
pub struct ProtocolError {
    /// Whose output.
    pub role: AgentRole,
    /// What is wrong.
    pub message: String,
    /// The first characters of the output.
    pub excerpt: String,
}

fn protocol_error(role: AgentRole, output: &str, message: impl Into<String>) -> ProtocolError {
    ProtocolError {
        role,
        message: message.into(),
        excerpt: output.trim().chars().take(80).collect(),
    }
}

/// The JSON object in `output`: the whole output if it is one, else the last line that is one.
fn parse_json_object<T: for<'de> Deserialize<'de>>(
    role: AgentRole,
    output: &str,
) -> Result<T, ProtocolError> {
    let trimmed = output.trim();
    if trimmed.is_empty() {
        return Err(protocol_error(
            role,
            output,
            "output is empty, expected one JSON object",
        ));
    }
    let whole = serde_json::from_str::<T>(trimmed);
    let whole_err = match whole {
        Ok(v) => return Ok(v),
        Err(e) => e,
    };
    for line in trimmed.lines().rev() {
        let line = line.trim();
        if line.starts_with('{') {
            return serde_json::from_str::<T>(line)
                .map_err(|e| protocol_error(role, output, format!("bad JSON object: {e}")));
        }
    }
    Err(protocol_error(
        role,
        output,
        format!("expected one JSON object: {whole_err}"),
    ))
}

impl PlanOutput {
    /// Parses and checks a planner's output: at least one task, keys unique and non-empty,
    /// titles non-empty, `depends_on` naming keys of the plan.
    pub fn parse(output: &str) -> Result<PlanOutput, ProtocolError> {
        let role = AgentRole::Planner;
        let plan: PlanOutput = parse_json_object(role, output)?;
        if plan.tasks.is_empty() {
            return Err(protocol_error(role, output, "the plan has no tasks"));
        }
        let mut keys = std::collections::HashSet::new();
        for t in &plan.tasks {
            if t.key.trim().is_empty() || t.title.trim().is_empty() {
                return Err(protocol_error(
                    role,
                    output,
                    "every task needs a non-empty key and title",
                ));
            }
            if !keys.insert(t.key.as_str()) {
                return Err(protocol_error(
                    role,
                    output,
                    format!("task key `{}` appears twice", t.key),
                ));
            }
        }
        for t in &plan.tasks {
            for d in &t.depends_on {
                if !keys.contains(d.as_str()) {
                    return Err(protocol_error(
                        role,
                        output,
                        format!("task `{}` depends on unknown key `{d}`", t.key),
                    ));
                }
            }
        }
        Ok(plan)
    }
}

impl ReviewOutput {
    /// Parses a reviewer's output.
    pub fn parse(output: &str) -> Result<ReviewOutput, ProtocolError> {
        parse_json_object(AgentRole::Reviewer, output)
    }
}

/// The `DECISION:` and `MAIL:` lines of a worker's output.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkerNotes {
    /// `(decision, reasoning)` pairs.
    pub decisions: Vec<(String, String)>,
    /// Mail bodies for the human.
    pub mail: Vec<String>,
    /// The last non-empty line that is not a marked (`DECISION:`, `MAIL:`, `NOTE:`) line.
    pub summary: Option<String>,
}

impl WorkerNotes {
    /// Collects the marked lines; other lines are transcript only.
    pub fn parse(output: &str) -> WorkerNotes {
        let mut notes = WorkerNotes::default();
        for line in output.lines().map(str::trim) {
            if let Some(rest) = line.strip_prefix(DECISION_PREFIX) {
                let (decision, reasoning) = rest.split_once("--").unwrap_or((rest, ""));
                notes
                    .decisions
                    .push((decision.trim().to_owned(), reasoning.trim().to_owned()));
            } else if let Some(rest) = line.strip_prefix(MAIL_PREFIX) {
                notes.mail.push(rest.trim().to_owned());
            } else if !line.is_empty() && !line.starts_with("NOTE:") {
                notes.summary = Some(line.to_owned());
            }
        }
        notes
    }
}
