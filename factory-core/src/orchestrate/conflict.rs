//! Conflict hand-back: a task whose branch no longer applies on main goes back to its worker for
//! a conflict round (the files, both sides, the task), at most `[merge] conflict_attempts` times;
//! after that it is blocked with the files named, and the human gets mail.
//!
//! The round itself is an ordinary worker round: main is merged into the task's worktree
//! uncommitted ([`Vcs::start_conflict_round`](crate::ports::Vcs::start_conflict_round)), the
//! worker edits the conflicted files, Factory checks no conflict markers are left and commits
//! the resolution as one commit on main; review and verify then run on it as on any round (with
//! a fresh round budget), and the merge queue takes it again.

use std::path::Path;

use serde_json::json;

use crate::mail::ORCHESTRATOR;
use crate::ports::{ConflictRound, VcsError};
use crate::task::{Task, TaskChanges, TaskEvent};

use super::artifacts::SpecFiles;
use super::{Factory, OrchestrateError};

/// How QA_FIX_REQUEST.md starts when it describes a conflict round.
pub(super) const CONFLICT_HEADING: &str = "# Conflict round";

impl Factory {
    /// `task` (merging) conflicts with main in `paths` (`what` says where it showed): hand it
    /// back to the worker, or block it once its conflict rounds are spent.
    pub(super) async fn hand_back_conflict(
        &self,
        task: &Task,
        paths: &[String],
        what: &str,
    ) -> Result<(), OrchestrateError> {
        let attempts = self.config().merge.conflict_attempts;
        let main = self.config().git.main_branch.clone();
        let branch = task.branch.clone().unwrap_or_else(|| task.spec_id.branch());
        if task.conflict_rounds >= attempts {
            let rounds = match task.conflict_rounds {
                0 => "conflict rounds are off ([merge] conflict_attempts = 0)".to_owned(),
                n => format!("{n} conflict round(s) did not resolve it"),
            };
            let reason = format!(
                "{what} conflicts in: {}; {rounds}. Resolve it on {branch} and retry the task",
                paths.join(", ")
            );
            self.block(task, reason).await?;
            return Ok(());
        }
        let worktree = self.layout().task_worktree(&task.spec_id);
        let round = match self
            .inner
            .ports
            .vcs
            .start_conflict_round(&worktree, &branch, &main)
            .await
        {
            Ok(round) => round,
            Err(damaged @ VcsError::WorktreeDamaged { .. }) => {
                self.block(task, damaged.to_string()).await?;
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        };
        let files = SpecFiles::new(self.layout().spec_dir(&task.spec_id));
        let attempt = task.conflict_rounds + 1;
        files.write_fix_request(&conflict_request(task, &round, &main, attempt, attempts))?;
        let conflicted: Vec<String> = round.files.iter().map(|f| f.path.clone()).collect();
        files.progress(
            self.now(),
            &format!(
                "{what} conflicts in: {}; conflict round {attempt} of {attempts} handed to the worker",
                paths.join(", ")
            ),
        )?;
        self.decide(
            task.epic_id,
            Some(task.id),
            ORCHESTRATOR,
            "hand the conflict back to the worker",
            &format!("{what} conflicts in: {}", paths.join(", ")),
            json!({
                "conflict_round": attempt,
                "conflict_attempts": attempts,
                "files": conflicted,
                "onto": round.onto,
                "task_tip": round.task_tip,
            }),
        )
        .await?;
        // A fresh round budget: the resolved change is new work, reviewed and verified again.
        let task = self
            .update_task(
                task,
                Some(TaskEvent::RequestChanges),
                TaskChanges {
                    conflict_rounds: Some(attempt),
                    conflict_files: Some(conflicted),
                    rounds_base: Some(task.qa_rounds),
                    verified_commit: Some(None),
                    waiting_reason: Some(None),
                    ..TaskChanges::default()
                },
            )
            .await?;
        files.write_metadata(&task)?;
        Ok(())
    }

    /// After a conflict round's worker run: the conflicted files that still hold conflict
    /// markers (a file the worker deleted is resolved).
    pub(super) fn unresolved_conflicts(&self, task: &Task) -> Vec<String> {
        let worktree = self.layout().task_worktree(&task.spec_id);
        task.conflict_files
            .iter()
            .filter(|path| file_has_markers(&worktree, path))
            .cloned()
            .collect()
    }

    /// A conflict round ended with markers left in `unresolved`: another round, or blocked once
    /// the rounds are spent. Returns the task when it gets another round.
    pub(super) async fn conflict_left_unresolved(
        &self,
        task: &Task,
        unresolved: &[String],
    ) -> Result<Option<Task>, OrchestrateError> {
        let attempts = self.config().merge.conflict_attempts;
        let files = SpecFiles::new(self.layout().spec_dir(&task.spec_id));
        let listed = unresolved.join(", ");
        if task.conflict_rounds >= attempts {
            let reason = format!(
                "conflict markers are still in {listed} after {} conflict round(s); resolve the conflict on {} and retry the task",
                task.conflict_rounds,
                task.branch.clone().unwrap_or_else(|| task.spec_id.branch()),
            );
            self.block(task, reason).await?;
            return Ok(None);
        }
        let attempt = task.conflict_rounds + 1;
        files.progress(
            self.now(),
            &format!("conflict markers left in {listed}; conflict round {attempt} of {attempts}"),
        )?;
        let mut request = files.read_fix_request().unwrap_or_default();
        request.push_str(&format!(
            "\n## Still unresolved after the last round\n\nConflict markers are still in: {listed}. \
Remove every `<<<<<<<`, `=======` and `>>>>>>>` line, keeping what both sides need.\n"
        ));
        files.write_fix_request(&request)?;
        let task = self
            .update_task(
                task,
                None,
                TaskChanges {
                    conflict_rounds: Some(attempt),
                    conflict_files: Some(unresolved.to_vec()),
                    ..TaskChanges::default()
                },
            )
            .await?;
        Ok(Some(task))
    }
}

/// QA_FIX_REQUEST.md for a conflict round: the files, both sides' changes, and what to do.
fn conflict_request(
    task: &Task,
    round: &ConflictRound,
    main: &str,
    attempt: u32,
    attempts: u32,
) -> String {
    let mut text = format!(
        "{CONFLICT_HEADING} {attempt} of {attempts}\n\n\
`{main}` moved on (to {onto}) while task {spec} waited to merge, and the task's change no \
longer applies on it. `{main}` is now merged into this worktree, uncommitted",
        onto = round.onto,
        spec = task.spec_id,
    );
    if round.files.is_empty() {
        text.push_str(
            " and without conflicts.\n\nCheck that the change still does what the task asks on \
top of the new main, and fix what it broke.\n",
        );
        return text;
    }
    text.push_str(
        ". The files below hold conflict markers (`<<<<<<<`, `=======`, `>>>>>>>`). Edit each one \
so it keeps what main changed and what the task needs, and remove every marker. Do not commit: \
Factory commits the resolution, then review and verify run again.\n",
    );
    for file in &round.files {
        text.push_str(&format!(
            "\n## {path}\n\n### What this task changed\n\n```diff\n{ours}```\n\n### What {main} changed\n\n```diff\n{theirs}```\n",
            path = file.path,
            ours = ensure_newline(&file.task_change),
            theirs = ensure_newline(&file.main_change),
        ));
    }
    text
}

fn ensure_newline(text: &str) -> String {
    if text.is_empty() || text.ends_with('\n') {
        text.to_owned()
    } else {
        format!("{text}\n")
    }
}

/// Whether the file `rel` in `worktree` still holds a conflict block (a `<<<<<<<` line and a
/// `>>>>>>>` line). A missing or unreadable file holds none.
fn file_has_markers(worktree: &Path, rel: &str) -> bool {
    let rel = Path::new(rel);
    if rel.is_absolute()
        || rel
            .components()
            .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return false;
    }
    std::fs::read(worktree.join(rel)).is_ok_and(|bytes| has_conflict_markers(&bytes))
}

/// Whether `bytes` hold a conflict block as git writes it: a line starting `<<<<<<<` followed
/// later by a line starting `>>>>>>>`.
pub(crate) fn has_conflict_markers(bytes: &[u8]) -> bool {
    let mut opened = false;
    for line in bytes.split(|b| *b == b'\n') {
        if line.starts_with(b"<<<<<<<") {
            opened = true;
        } else if opened && line.starts_with(b">>>>>>>") {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::has_conflict_markers;

    #[test]
    fn conflict_blocks_are_found_and_lookalikes_are_not() {
        let block = b"a\n<<<<<<< HEAD\nours\n=======\ntheirs\n>>>>>>> abc123\nb\n";
        assert!(has_conflict_markers(block));
        assert!(has_conflict_markers(b"<<<<<<< HEAD\r\nx\r\n>>>>>>> y\r\n"));
        assert!(!has_conflict_markers(b"plain text\n"));
        assert!(!has_conflict_markers(b"only an opener\n<<<<<<< HEAD\n"));
        assert!(!has_conflict_markers(
            b">>>>>>> closer before\n<<<<<<< opener\n"
        ));
        assert!(!has_conflict_markers(
            b"  <<<<<<< indented\n  >>>>>>> indented\n"
        ));
        assert!(!has_conflict_markers(b"======= a heading underline\n"));
    }
}
