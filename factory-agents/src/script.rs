//! [`AgentScript`]: what a [`crate::ScriptedAgent`] replays, and its TOML form.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use factory_core::event::Verdict;
use factory_core::protocol::PlannedTask;
use serde::{Deserialize, Serialize};

/// Everything a scripted agent says and does, for every role: the plan, and per task key each
/// worker round's edits and each review round's verdict.
///
/// Worker round N uses `rounds[N-1]` and review round N uses `reviews[N-1]`; past the end, the
/// last entry repeats. Loaded from TOML (or built in code):
///
/// ```toml
/// [plan]                                  # printed by the planner as PlanOutput JSON
/// reasoning = "Greeting first, the CLI uses it."
/// [[plan.tasks]]
/// key = "greeting"
/// title = "Add greeting module"
/// description = "greet(name) returns 'Hello, <name>!'"
/// acceptance = ["greet('Ada') == 'Hello, Ada!'"]
/// depends_on = []
///
/// [[tasks.greeting.rounds]]               # worker round 1
/// notes = ["DECISION: own module -- keeps main small"]   # printed as stdout lines
/// [[tasks.greeting.rounds.edits]]
/// path = "src/greeting.py"                # relative to the worktree, never outside it
/// write = "def greet(n):\n    return f'Hello, {n}!'\n"  # or append = "…", or delete = true
///
/// [[tasks.greeting.rounds]]               # worker round 2 (and 3, 4, … : the last repeats)
/// fail = "out of ideas"                   # optional: edits applied, then the run fails
///
/// [[tasks.greeting.reviews]]              # reviewer round 1: printed as ReviewOutput JSON
/// verdict = "changes_requested"
/// summary = "No tests."
/// issues = ["Add tests"]
/// [[tasks.greeting.reviews]]
/// raw_output = "LGTM!"                    # optional: printed verbatim instead of JSON
/// ```
///
/// Every entry (plan, round, review) takes `fail = "message"` (the run ends with
/// [`factory_core::ports::AgentError::Exited`], code 1, `message` on stderr) and
/// `raw_output = "text"` (printed exactly, instead of what the entry would print), for tests of
/// failure paths and malformed output.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentScript {
    /// What the planner prints; a planner request fails without it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<ScriptedPlan>,
    /// Worker rounds and reviews by task key.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tasks: BTreeMap<String, ScriptedTask>,
}

/// `[plan]`: serialized to the planner's JSON output.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptedPlan {
    /// Why the epic was split this way.
    #[serde(default)]
    pub reasoning: String,
    /// The tasks, exactly as a planner would print them.
    #[serde(default)]
    pub tasks: Vec<PlannedTask>,
    /// Fail the run with this message on stderr.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail: Option<String>,
    /// Print exactly this instead of the plan JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_output: Option<String>,
}

/// `[tasks.<key>]`: one task's worker rounds and reviews.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptedTask {
    /// Worker round N uses `rounds[N-1]`; the last repeats.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rounds: Vec<ScriptedRound>,
    /// Review round N uses `reviews[N-1]`; the last repeats.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reviews: Vec<ScriptedReview>,
}

/// `[[tasks.<key>.rounds]]`: one worker round.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptedRound {
    /// Lines printed on stdout (`DECISION: … -- …`, `MAIL: …`, or anything).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// File changes, applied in order inside the worktree.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub edits: Vec<FileEdit>,
    /// Fail the run with this message on stderr, after the edits are applied (like an agent that
    /// crashes half-way).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail: Option<String>,
    /// Print exactly this instead of the notes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_output: Option<String>,
}

/// `[[tasks.<key>.reviews]]`: one review verdict, serialized to the reviewer's JSON output.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptedReview {
    /// Required unless `fail` or `raw_output` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<Verdict>,
    /// One paragraph.
    #[serde(default)]
    pub summary: String,
    /// What must change.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub issues: Vec<String>,
    /// Fail the run with this message on stderr.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail: Option<String>,
    /// Print exactly this instead of the review JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_output: Option<String>,
}

/// One file change. In TOML: `path` plus exactly one of `write = "…"`, `append = "…"` or
/// `delete = true`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawEdit", into = "RawEdit")]
pub struct FileEdit {
    /// Relative to the worktree; `..` and absolute paths are refused.
    pub path: PathBuf,
    /// What happens to the file.
    pub action: EditAction,
}

/// What a [`FileEdit`] does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EditAction {
    /// Replace the file's contents (creating it and its directories).
    Write(String),
    /// Add to the end of the file (creating it and its directories).
    Append(String),
    /// Remove the file; already absent is fine, so a repeated round stays valid.
    Delete,
}

/// The TOML shape of a [`FileEdit`].
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEdit {
    path: PathBuf,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    write: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    append: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    delete: bool,
}

impl TryFrom<RawEdit> for FileEdit {
    type Error = String;

    fn try_from(raw: RawEdit) -> Result<FileEdit, String> {
        let action = match (raw.write, raw.append, raw.delete) {
            (Some(text), None, false) => EditAction::Write(text),
            (None, Some(text), false) => EditAction::Append(text),
            (None, None, true) => EditAction::Delete,
            _ => {
                return Err(format!(
                    "edit of {} must set exactly one of write = \"…\", append = \"…\" or delete = true",
                    raw.path.display()
                ));
            }
        };
        Ok(FileEdit {
            path: raw.path,
            action,
        })
    }
}

impl From<FileEdit> for RawEdit {
    fn from(edit: FileEdit) -> RawEdit {
        let mut raw = RawEdit {
            path: edit.path,
            write: None,
            append: None,
            delete: false,
        };
        match edit.action {
            EditAction::Write(text) => raw.write = Some(text),
            EditAction::Append(text) => raw.append = Some(text),
            EditAction::Delete => raw.delete = true,
        }
        raw
    }
}

/// An agent script that cannot be read, parsed or written.
#[derive(Debug, thiserror::Error)]
pub enum ScriptError {
    /// The file could not be read.
    #[error(
        "cannot read agent script {path}: {source}; check [agent] script in .factory/config.toml"
    )]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Not valid TOML, an unknown key, or an entry that breaks a rule (see [`AgentScript`]).
    #[error("invalid agent script {path}: {message}")]
    Invalid {
        /// The file (or the name given for inline text).
        path: PathBuf,
        /// What is wrong and where.
        message: String,
    },
    /// The script could not be written as TOML.
    #[error("cannot write agent script as TOML: {0}")]
    Serialize(String),
}

impl AgentScript {
    /// Parses and checks a script; `path` only names it in errors.
    pub fn from_toml_str(text: &str, path: &Path) -> Result<AgentScript, ScriptError> {
        let invalid = |message: String| ScriptError::Invalid {
            path: path.to_owned(),
            message,
        };
        let script: AgentScript =
            toml::from_str(text).map_err(|e| invalid(e.to_string().trim().replace('\n', " ")))?;
        script.check().map_err(invalid)?;
        Ok(script)
    }

    /// Reads, parses and checks the script file at `path`.
    pub fn load(path: &Path) -> Result<AgentScript, ScriptError> {
        let text = std::fs::read_to_string(path).map_err(|source| ScriptError::Read {
            path: path.to_owned(),
            source,
        })?;
        AgentScript::from_toml_str(&text, path)
    }

    /// The script as TOML that [`AgentScript::from_toml_str`] reads back unchanged.
    pub fn to_toml_string(&self) -> Result<String, ScriptError> {
        toml::to_string(self).map_err(|e| ScriptError::Serialize(e.to_string()))
    }

    /// The rules TOML cannot express: edit paths stay inside the worktree, reviews say a verdict.
    fn check(&self) -> Result<(), String> {
        for (key, task) in &self.tasks {
            for (i, round) in task.rounds.iter().enumerate() {
                for edit in &round.edits {
                    check_edit_path(&edit.path)
                        .map_err(|e| format!("tasks.{key}.rounds[{}]: {e}", i + 1))?;
                }
            }
            for (i, review) in task.reviews.iter().enumerate() {
                review_verdict(review)
                    .map_err(|e| format!("tasks.{key}.reviews[{}]: {e}", i + 1))?;
            }
        }
        Ok(())
    }
}

/// Refuses edit paths that could leave the worktree: absolute, `..`, or empty.
pub(crate) fn check_edit_path(path: &Path) -> Result<(), String> {
    let mut has_name = false;
    for c in path.components() {
        match c {
            Component::Normal(_) => has_name = true,
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => {
                return Err(format!(
                    "edit path {} must be relative to the worktree and must not contain `..`",
                    path.display()
                ));
            }
        }
    }
    if has_name {
        Ok(())
    } else {
        Err(format!(
            "edit path {:?} names no file",
            path.display().to_string()
        ))
    }
}

/// The verdict a review prints; only `fail` or `raw_output` may stand in for it.
pub(crate) fn review_verdict(review: &ScriptedReview) -> Result<Option<Verdict>, String> {
    match review.verdict {
        Some(v) => Ok(Some(v)),
        None if review.fail.is_some() || review.raw_output.is_some() => Ok(None),
        None => Err(
            "a review needs verdict = \"approve\" or \"changes_requested\" (or fail / raw_output)"
                .to_owned(),
        ),
    }
}
