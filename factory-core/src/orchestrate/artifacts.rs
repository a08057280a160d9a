//! The files in `.factory/specs/<spec-id>/`, written as the task moves so a person (or an agent)
//! can read where it stands without the database.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::json;

use crate::Timestamp;
use crate::epic::Epic;
use crate::event::Verdict;
use crate::ports::CommandOutput;
use crate::protocol::ReviewOutput;
use crate::spec::artifact;
use crate::task::Task;

use super::OrchestrateError;

/// Steps of `implementation_plan.json`, in order.
pub(crate) const STEPS: &[&str] = &["prepare", "implement", "review", "verify", "merge"];

/// One task's spec dir.
pub(crate) struct SpecFiles {
    dir: PathBuf,
}

fn io_err(path: &Path, source: std::io::Error) -> OrchestrateError {
    OrchestrateError::Artifact {
        path: path.to_owned(),
        source,
    }
}

impl SpecFiles {
    pub(crate) fn new(dir: PathBuf) -> SpecFiles {
        SpecFiles { dir }
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn write(&self, name: &str, contents: &str) -> Result<(), OrchestrateError> {
        fs::create_dir_all(&self.dir).map_err(|e| io_err(&self.dir, e))?;
        let path = self.path(name);
        // Write-then-rename so a reader (or a crash) never sees half a file.
        let tmp = self.path(&format!(".{name}.tmp"));
        fs::write(&tmp, contents).map_err(|e| io_err(&tmp, e))?;
        fs::rename(&tmp, &path).map_err(|e| io_err(&path, e))
    }

    fn write_json(&self, name: &str, value: &serde_json::Value) -> Result<(), OrchestrateError> {
        let text = serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string());
        self.write(name, &format!("{text}\n"))
    }

    fn append(&self, name: &str, text: &str) -> Result<(), OrchestrateError> {
        fs::create_dir_all(&self.dir).map_err(|e| io_err(&self.dir, e))?;
        let path = self.path(name);
        let mut file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| io_err(&path, e))?;
        file.write_all(text.as_bytes())
            .map_err(|e| io_err(&path, e))
    }

    pub(crate) fn exists(&self, name: &str) -> bool {
        self.path(name).exists()
    }

    /// spec.md, requirements.json, context.json; written when the task is assigned. Existing files are rewritten (they derive from the store).
    pub(crate) fn write_initial(
        &self,
        epic: &Epic,
        task: &Task,
        dependencies: &[&Task],
        context: serde_json::Value,
    ) -> Result<(), OrchestrateError> {
        let mut md = format!(
            "# {}\n\nSpec `{}` · epic {} — {}\n\n## What to build\n\n{}\n",
            task.title,
            task.spec_id,
            epic.id,
            epic.title,
            task.description.trim()
        );
        md.push_str("\n## Acceptance criteria\n\n");
        if task.acceptance.is_empty() {
            md.push_str("- (none given; the reviewer judges against the description)\n");
        }
        for a in &task.acceptance {
            md.push_str(&format!("- {a}\n"));
        }
        md.push_str("\n## Depends on\n\n");
        if dependencies.is_empty() {
            md.push_str("- nothing\n");
        }
        for d in dependencies {
            md.push_str(&format!("- `{}` {}\n", d.spec_id, d.title));
        }
        self.write(artifact::SPEC_MD, &md)?;
        self.write_json(
            artifact::REQUIREMENTS_JSON,
            &json!({
                "spec_id": task.spec_id,
                "task_key": task.key,
                "title": task.title,
                "description": task.description,
                "acceptance_criteria": task.acceptance,
                "depends_on": dependencies.iter().map(|d| d.spec_id.to_string()).collect::<Vec<_>>(),
            }),
        )?;
        // implementation_plan.json and task_metadata.json follow from the caller, once the
        // task has started.
        self.write_json(artifact::CONTEXT_JSON, &context)
    }

    /// implementation_plan.json with the first `done` steps done and `current` in progress.
    pub(crate) fn write_plan(
        &self,
        done: usize,
        notes: &[(&str, String)],
    ) -> Result<(), OrchestrateError> {
        let steps: Vec<_> = STEPS
            .iter()
            .enumerate()
            .map(|(i, step)| {
                let status = if i < done {
                    "done"
                } else if i == done {
                    "in_progress"
                } else {
                    "pending"
                };
                let note = notes
                    .iter()
                    .find(|(s, _)| s == step)
                    .map(|(_, n)| n.clone());
                json!({ "step": step, "status": status, "note": note })
            })
            .collect();
        self.write_json(
            artifact::IMPLEMENTATION_PLAN_JSON,
            &json!({ "steps": steps }),
        )
    }

    /// task_metadata.json: the task as stored.
    pub(crate) fn write_metadata(&self, task: &Task) -> Result<(), OrchestrateError> {
        self.write_json(
            artifact::TASK_METADATA_JSON,
            &json!({
                "task_id": task.id,
                "epic_id": task.epic_id,
                "spec_id": task.spec_id,
                "state": task.state,
                "version": task.version,
                "attempts": task.attempts,
                "qa_rounds": task.qa_rounds,
                "branch": task.branch,
                "blocked_reason": task.blocked_reason,
                "waiting_reason": task.waiting_reason,
                "merge_commit": task.merge_commit,
                "created_at": task.created_at,
                "updated_at": task.updated_at,
            }),
        )
    }

    /// One line in build-progress.txt.
    pub(crate) fn progress(&self, at: Timestamp, line: &str) -> Result<(), OrchestrateError> {
        self.append(
            artifact::BUILD_PROGRESS_TXT,
            &format!("{} {line}\n", at.format("%Y-%m-%dT%H:%M:%SZ")),
        )
    }

    /// One QA round's section in qa_report.md.
    pub(crate) fn append_qa_round(
        &self,
        round: u32,
        review: &ReviewOutput,
        verify: &VerifySummary,
        passed: bool,
    ) -> Result<(), OrchestrateError> {
        let mut text = String::new();
        if !self.exists(artifact::QA_REPORT_MD) {
            text.push_str("# QA report\n");
        }
        let verdict = match (passed, review.verdict) {
            (true, _) => "PASSED",
            (false, Verdict::Approve) => "FAILED (verify)",
            (false, Verdict::ChangesRequested) => "CHANGES REQUESTED",
        };
        text.push_str(&format!("\n## Round {round}: {verdict}\n\n"));
        text.push_str(&format!("- Reviewer verdict: {}\n", review.verdict));
        text.push_str(&format!("- Verify: {}\n", verify.line()));
        if !review.summary.trim().is_empty() {
            text.push_str(&format!("\n{}\n", review.summary.trim()));
        }
        for issue in &review.issues {
            text.push_str(&format!("- [ ] {issue}\n"));
        }
        self.append(artifact::QA_REPORT_MD, &text)
    }

    /// QA_FIX_REQUEST.md for the worker's next round.
    pub(crate) fn write_fix_request(&self, text: &str) -> Result<(), OrchestrateError> {
        self.write(artifact::QA_FIX_REQUEST_MD, text)
    }

    /// The fix request, if QA asked for one.
    pub(crate) fn read_fix_request(&self) -> Option<String> {
        fs::read_to_string(self.path(artifact::QA_FIX_REQUEST_MD)).ok()
    }

    /// Removes QA_FIX_REQUEST.md once QA passes.
    pub(crate) fn remove_fix_request(&self) -> Result<(), OrchestrateError> {
        let path = self.path(artifact::QA_FIX_REQUEST_MD);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_err(&path, e)),
            _ => Ok(()),
        }
    }
}

/// The outcome of a verify run, as reports show it.
#[derive(Debug, Clone)]
pub(crate) enum VerifySummary {
    /// No verify command is configured.
    NotConfigured,
    /// It ran.
    Ran {
        command: String,
        output: CommandOutput,
    },
}

impl VerifySummary {
    pub(crate) fn passed(&self) -> bool {
        match self {
            VerifySummary::NotConfigured => true,
            VerifySummary::Ran { output, .. } => output.success(),
        }
    }

    pub(crate) fn line(&self) -> String {
        match self {
            VerifySummary::NotConfigured => "not configured".into(),
            VerifySummary::Ran { command, output } => {
                let result = if output.timed_out {
                    "timed out".to_string()
                } else if output.success() {
                    "passed".to_string()
                } else {
                    format!(
                        "failed (exit {})",
                        output.exit_code.map_or("signal".into(), |c| c.to_string())
                    )
                };
                format!("`{command}` {result} in {} ms", output.duration.as_millis())
            }
        }
    }

    /// The last lines of the verify output, for the fix request.
    pub(crate) fn tail(&self, max_lines: usize) -> String {
        match self {
            VerifySummary::NotConfigured => String::new(),
            VerifySummary::Ran { output, .. } => {
                let all = format!("{}{}", output.stdout, output.stderr);
                let lines: Vec<&str> = all.lines().collect();
                lines[lines.len().saturating_sub(max_lines)..].join("\n")
            }
        }
    }
}
