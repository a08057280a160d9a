//! [`ScriptedAgent`]: a deterministic stand-in for every role, replaying an [`AgentScript`].

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use factory_core::agent::AgentRole;
use factory_core::ports::{
    AgentBackend, AgentError, AgentRequest, AgentResponse, Clock, TranscriptKind,
};
use factory_core::protocol::{PlanOutput, ReviewOutput};
use factory_core::spec::artifact::QA_FIX_REQUEST_MD;
use tokio::io::AsyncWriteExt;

use crate::script::{
    AgentScript, EditAction, FileEdit, ScriptedTask, check_edit_path, review_verdict,
};
use crate::transcript::Transcript;

/// The line a worker round prints when `<spec_dir>/QA_FIX_REQUEST.md` existed as it started.
pub const SAW_FIX_REQUEST: &str = "NOTE: saw QA_FIX_REQUEST.md";
/// The line a worker round prints when it did not.
const NO_FIX_REQUEST: &str = "NOTE: no QA_FIX_REQUEST.md";

/// Plays every role from an [`AgentScript`], in zero time and the same way every run, so demos
/// and tests drive the real orchestration (store, git, verify) without a model.
///
/// - planner: prints `[plan]` as PlanOutput JSON;
/// - worker: applies round N's edits inside `request.workdir`, prints
///   [`SAW_FIX_REQUEST`] (or `NOTE: no QA_FIX_REQUEST.md`) then the round's notes;
/// - reviewer: prints review N as ReviewOutput JSON.
///
/// Its transcript has the same shape as a [`crate::CommandAgent`]'s, plus one `edit` entry per file.
pub struct ScriptedAgent {
    script: AgentScript,
    clock: Arc<dyn Clock>,
}

impl ScriptedAgent {
    /// An agent replaying `script`; transcript times come from `clock`.
    pub fn new(script: AgentScript, clock: Arc<dyn Clock>) -> ScriptedAgent {
        ScriptedAgent { script, clock }
    }

    /// The task entry a worker or reviewer request refers to.
    fn task(&self, request: &AgentRequest) -> Result<(&str, &ScriptedTask), AgentError> {
        let key = request.task_key.as_deref().ok_or_else(|| {
            AgentError::Script(format!(
                "a {} request needs a task key; the scripted agent looks up [tasks.<key>] by it",
                request.role
            ))
        })?;
        let (key, task) = self.script.tasks.get_key_value(key).ok_or_else(|| {
            let known: Vec<&str> = self.script.tasks.keys().map(String::as_str).collect();
            AgentError::Script(format!(
                "no [tasks.{key}] in the script (it has: {}); add [[tasks.{key}.rounds]] and [[tasks.{key}.reviews]]",
                if known.is_empty() { "none".to_owned() } else { known.join(", ") }
            ))
        })?;
        Ok((key.as_str(), task))
    }

    /// Planner: the plan JSON (or the raw output), and the failure message if any.
    fn plan(&self) -> Result<(String, Option<String>), AgentError> {
        let plan = self.script.plan.as_ref().ok_or_else(|| {
            AgentError::Script("the script has no [plan] for the planner".to_owned())
        })?;
        let output = match &plan.raw_output {
            Some(raw) => raw.clone(),
            None => json_line(&PlanOutput {
                reasoning: plan.reasoning.clone(),
                tasks: plan.tasks.clone(),
            })?,
        };
        Ok((output, plan.fail.clone()))
    }

    /// Reviewer: review N's JSON (or raw output), and the failure message if any.
    fn review(&self, request: &AgentRequest) -> Result<(String, Option<String>), AgentError> {
        let (key, task) = self.task(request)?;
        let review = for_round(&task.reviews, request.round).ok_or_else(|| {
            AgentError::Script(format!(
                "[tasks.{key}] has no [[tasks.{key}.reviews]] for review round {}",
                request.round
            ))
        })?;
        let verdict = review_verdict(review)
            .map_err(|e| AgentError::Script(format!("tasks.{key}.reviews: {e}")))?;
        let output = match (&review.raw_output, verdict) {
            (Some(raw), _) => raw.clone(),
            (None, Some(verdict)) => json_line(&ReviewOutput {
                verdict,
                summary: review.summary.clone(),
                issues: review.issues.clone(),
            })?,
            (None, None) => String::new(),
        };
        Ok((output, review.fail.clone()))
    }

    /// Worker: applies round N's edits, recording each; returns what it printed and the failure
    /// message if any.
    async fn work(
        &self,
        request: &AgentRequest,
        transcript: &mut Transcript,
    ) -> Result<(String, Option<String>), AgentError> {
        let (key, task) = self.task(request)?;
        let round = for_round(&task.rounds, request.round).ok_or_else(|| {
            AgentError::Script(format!(
                "[tasks.{key}] has no [[tasks.{key}.rounds]] for worker round {}",
                request.round
            ))
        })?;
        // Observed before any edit, so it proves what the round started with.
        let mut lines = Vec::new();
        if let Some(spec_dir) = &request.spec_dir {
            let saw = tokio::fs::try_exists(spec_dir.join(QA_FIX_REQUEST_MD))
                .await
                .unwrap_or(false);
            lines.push(if saw { SAW_FIX_REQUEST } else { NO_FIX_REQUEST }.to_owned());
        }
        let raw = round.raw_output.clone();
        if raw.is_none() {
            transcript.lines(TranscriptKind::Stdout, &lines.join("\n"));
        }
        for edit in &round.edits {
            check_edit_path(&edit.path)
                .map_err(|e| AgentError::Script(format!("tasks.{key}.rounds: {e}")))?;
        }
        if !tokio::fs::metadata(&request.workdir)
            .await
            .is_ok_and(|m| m.is_dir())
        {
            return Err(AgentError::Edit {
                path: request.workdir.clone(),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "the worker's directory does not exist",
                ),
            });
        }
        for edit in &round.edits {
            let done = apply_edit(&request.workdir, edit).await?;
            transcript.push(TranscriptKind::Edit, done);
        }
        let output = match raw {
            Some(raw) => {
                transcript.lines(TranscriptKind::Stdout, &raw);
                raw
            }
            None => {
                transcript.lines(TranscriptKind::Stdout, &round.notes.join("\n"));
                lines.extend(round.notes.iter().cloned());
                lines_output(&lines)
            }
        };
        Ok((output, round.fail.clone()))
    }
}

impl std::fmt::Debug for ScriptedAgent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScriptedAgent")
            .field("script", &self.script)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl AgentBackend for ScriptedAgent {
    fn name(&self) -> &str {
        "scripted"
    }

    async fn run(&self, request: AgentRequest) -> Result<AgentResponse, AgentError> {
        let mut transcript = Transcript::start(self.clock.clone(), &request.prompt);
        let (output, fail) = match request.role {
            AgentRole::Planner => {
                let (output, fail) = self.plan()?;
                transcript.lines(TranscriptKind::Stdout, &output);
                (output, fail)
            }
            AgentRole::Reviewer => {
                let (output, fail) = self.review(&request)?;
                transcript.lines(TranscriptKind::Stdout, &output);
                (output, fail)
            }
            AgentRole::Worker => self.work(&request, &mut transcript).await?,
        };
        if let Some(message) = fail {
            return Err(AgentError::Exited {
                code: Some(1),
                stderr: message,
                stdout: output,
            });
        }
        let took = transcript.elapsed();
        Ok(AgentResponse {
            output,
            transcript: transcript.exit(0, took),
        })
    }
}

/// Entry N (1-based) of `entries`, or the last one past the end.
fn for_round<T>(entries: &[T], round: u32) -> Option<&T> {
    let index = usize::try_from(round.saturating_sub(1)).unwrap_or(usize::MAX);
    entries.get(index).or(entries.last())
}

/// `value` as one line of JSON plus a newline, as an agent prints it.
fn json_line<T: serde::Serialize>(value: &T) -> Result<String, AgentError> {
    serde_json::to_string(value)
        .map(|json| json + "\n")
        .map_err(|e| AgentError::Script(format!("cannot print the scripted output: {e}")))
}

/// Lines as printed: each ended by a newline.
fn lines_output(lines: &[String]) -> String {
    lines.iter().map(|l| format!("{l}\n")).collect()
}

/// Applies one edit under `workdir` (its path already checked); returns the transcript text.
async fn apply_edit(workdir: &Path, edit: &FileEdit) -> Result<String, AgentError> {
    let path = workdir.join(&edit.path);
    let failed = |source| AgentError::Edit {
        path: path.clone(),
        source,
    };
    let shown = edit.path.display();
    match &edit.action {
        EditAction::Write(text) => {
            create_parent(&path).await.map_err(failed)?;
            tokio::fs::write(&path, text).await.map_err(failed)?;
            Ok(format!("write {shown} ({} bytes)", text.len()))
        }
        EditAction::Append(text) => {
            create_parent(&path).await.map_err(failed)?;
            let mut file = tokio::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .await
                .map_err(failed)?;
            file.write_all(text.as_bytes()).await.map_err(failed)?;
            file.flush().await.map_err(failed)?;
            Ok(format!("append {shown} ({} bytes)", text.len()))
        }
        EditAction::Delete => match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(format!("delete {shown}")),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Ok(format!("delete {shown} (already absent)"))
            }
            Err(e) => Err(failed(e)),
        },
    }
}

/// Creates the directories `path` needs.
async fn create_parent(path: &Path) -> std::io::Result<()> {
    match path.parent() {
        Some(parent) => tokio::fs::create_dir_all(parent).await,
        None => Ok(()),
    }
}
