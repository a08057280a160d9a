//! Conflict rounds: a task branch that no longer rebases onto main is handed back to its worker
//! with main merged into the worktree (uncommitted, conflict markers where git could not combine
//! the two), and the worker's resolution is committed as one commit on top of main.
//!
//! The branch ref does not move until the resolution is committed, and then only by
//! compare-and-swap from the tip the round started on, so a crash at any point leaves either the
//! old branch (the round is discarded by the next `update_branch`) or the resolved one.

use std::path::Path;

use factory_core::ports::{CommitId, ConflictFile, ConflictRound, VcsError};

use crate::cli::Checkout;
use crate::read;
use crate::repo::{GitRepo, short_branch};

/// A diff (without context lines) without what a rebase changes though the change is the same:
/// blob ids (`index` lines) and line numbers (hunk headers).
fn normalized_diff(diff: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(diff.len());
    for line in diff.split(|b| *b == b'\n') {
        if line.starts_with(b"index ") {
            continue;
        }
        if line.starts_with(b"@@ ") {
            out.extend_from_slice(b"@@");
        } else {
            out.extend_from_slice(line);
        }
        out.push(b'\n');
    }
    out
}

/// Bytes of each side's diff kept for the worker's prompt.
const SIDE_CAP: usize = 16 * 1024;

impl GitRepo {
    /// See [`Vcs::start_conflict_round`](factory_core::ports::Vcs::start_conflict_round).
    pub(crate) async fn conflict_round(
        &self,
        worktree: &Path,
        branch: &str,
        onto: &str,
    ) -> Result<ConflictRound, VcsError> {
        self.abort_interrupted_rebase(worktree).await?;
        let at = self.task_checkout(worktree, branch).await?;
        self.restore_committed_state(&at).await?;
        let (branch_name, onto_rev) = (short_branch(branch).to_owned(), onto.to_owned());
        let (tip, onto_id, base) = self
            .read_main(move |repo| {
                let tip = read::branch_tip(repo, &branch_name)?
                    .ok_or_else(|| VcsError::MissingBranch(branch_name.clone()))?;
                let onto = read::resolve_commit(repo, &onto_rev)?;
                let base = repo
                    .merge_base(tip, onto)
                    .map_err(read::read_err)?
                    .map(|id| id.detach())
                    .ok_or_else(|| {
                        read::read_err(std::io::Error::other(format!(
                            "{branch_name} and {onto} have no common history"
                        )))
                    })?;
                Ok((tip, onto, base))
            })
            .await?;
        let (tip, onto_id, base) = (tip.to_string(), onto_id.to_string(), base.to_string());
        let out = self
            .git
            .run(
                &at,
                [
                    "merge",
                    "--no-commit",
                    "--no-ff",
                    "--no-edit",
                    "--quiet",
                    &onto_id,
                ],
            )
            .await?;
        let paths = self.git.unmerged_paths(&at).await?;
        if !out.success() && paths.is_empty() {
            // Not a conflict: git refused to merge at all. Leave nothing half-done.
            self.git.run(&at, ["merge", "--abort"]).await?;
            return Err(out.into_error());
        }
        let mut files = Vec::with_capacity(paths.len());
        for path in paths {
            let task_change = self.side(&at, &base, &tip, &path).await?;
            let main_change = self.side(&at, &base, &onto_id, &path).await?;
            files.push(ConflictFile {
                path,
                task_change,
                main_change,
            });
        }
        Ok(ConflictRound {
            onto: CommitId(onto_id),
            task_tip: CommitId(tip),
            files,
        })
    }

    /// See [`Vcs::same_change`](factory_core::ports::Vcs::same_change).
    pub(crate) async fn same_change_since(
        &self,
        base: &str,
        a: &str,
        b: &str,
    ) -> Result<bool, VcsError> {
        let at = self.main_checkout();
        let diff = |rev: String| {
            let at = at.clone();
            let range = format!("{base}...{rev}");
            async move {
                let out = self
                    .git
                    .ok(
                        &at,
                        [
                            "diff",
                            "--no-ext-diff",
                            "--no-color",
                            "--no-renames",
                            "--unified=0",
                            &range,
                        ],
                    )
                    .await?;
                Ok::<_, VcsError>(normalized_diff(&out.stdout))
            }
        };
        Ok(diff(a.to_owned()).await? == diff(b.to_owned()).await?)
    }

    /// `git diff from to -- path`, capped for a prompt.
    async fn side(
        &self,
        at: &Checkout,
        from: &str,
        to: &str,
        path: &str,
    ) -> Result<String, VcsError> {
        let out = self
            .git
            .ok(
                at,
                ["diff", "--no-ext-diff", "--no-color", from, to, "--", path],
            )
            .await?;
        let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
        if text.len() > SIDE_CAP {
            let mut cut = SIDE_CAP;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
            text.push_str("\n[... diff cut here ...]\n");
        }
        Ok(text)
    }

    /// The commit `MERGE_HEAD` names in the task checkout `at`, when a conflict round is in
    /// progress there.
    pub(crate) fn merge_in_progress(at: &Checkout) -> Option<String> {
        let text = std::fs::read_to_string(at.git_dir.join("MERGE_HEAD")).ok()?;
        let id = text.lines().next()?.trim();
        (!id.is_empty()).then(|| id.to_owned())
    }

    /// Commits what is in the task checkout `at` as the resolution of the conflict round with
    /// `onto`: one commit whose only parent is `onto`, swapped onto `branch` from its current
    /// tip, then the merge state is dropped (the index and files already match the commit).
    /// `None` when the resolution changes nothing on top of `onto`.
    pub(crate) async fn commit_resolution(
        &self,
        at: &Checkout,
        branch: &str,
        onto: &str,
        message: &str,
    ) -> Result<Option<CommitId>, VcsError> {
        self.git.ok(at, ["add", "--all"]).await?;
        let tree = self.git.ok(at, ["write-tree"]).await?;
        let tree = String::from_utf8_lossy(&tree.stdout).trim().to_owned();
        let branch_name = short_branch(branch).to_owned();
        let (old_tip, onto_tree) = self
            .read_main({
                let onto = onto.to_owned();
                move |repo| {
                    let tip = read::branch_tip(repo, &branch_name)?
                        .ok_or_else(|| VcsError::MissingBranch(branch_name.clone()))?;
                    let onto = read::resolve_commit(repo, &onto)?;
                    let tree = repo
                        .find_commit(onto)
                        .map_err(read::read_err)?
                        .tree_id()
                        .map_err(read::read_err)?
                        .detach();
                    Ok((tip, tree))
                }
            })
            .await?;
        if tree == onto_tree {
            return Ok(None);
        }
        let commit = self
            .git
            .ok(at, ["commit-tree", &tree, "-p", onto, "-m", message])
            .await?;
        let commit = String::from_utf8_lossy(&commit.stdout).trim().to_owned();
        let full_ref = read::branch_ref(short_branch(branch));
        self.git
            .ok(
                at,
                [
                    "update-ref",
                    "-m",
                    "factory: conflict resolved",
                    &full_ref,
                    &commit,
                    &old_tip.to_string(),
                ],
            )
            .await?;
        self.git.ok(at, ["merge", "--quit"]).await?;
        Ok(Some(CommitId(commit)))
    }
}
