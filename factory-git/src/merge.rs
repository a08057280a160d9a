//! `--no-ff` merges that never touch the user's uncommitted work.
//!
//! 1. If the branch is already reachable from `into`, there is nothing to do.
//! 2. The merge commit is made in Factory's own merge worktree (detached at `into`'s tip; reset
//!    and cleaned first unless it already is exactly that, which is what the previous merge
//!    leaves), so a conflict or a crash never leaves anything in the user's checkout.
//! 3. The new commit lands on `into`:
//!    - if some worktree (normally the user's checkout) has `into` checked out, and none of its
//!      uncommitted paths (modified, staged, untracked, or ignored-but-in-the-way) is touched by
//!      the merge, that checkout is fast-forwarded with `git merge --ff-only`, which moves index,
//!      files and branch together and keeps every unrelated change as it was; otherwise the
//!      outcome is `Waiting` and nothing moves;
//!    - if no worktree has it checked out, the ref moves with a compare-and-swap `update-ref`.

use std::path::Path;

use factory_core::ports::{CommitId, MergeOutcome, VcsError};
use gix::ObjectId;
use tracing::Instrument;

use crate::read::{self, with_repo};
use crate::repo::GitRepo;
use crate::worktree::{normalize, same_path};

impl GitRepo {
    /// See the module documentation.
    pub(crate) async fn merge(
        &self,
        branch: &str,
        into: &str,
        message: &str,
    ) -> Result<MergeOutcome, VcsError> {
        let _merging = self.merge_lock.lock().await;
        let span = tracing::debug_span!("merge_no_ff", branch, into);
        self.merge_locked(branch, into, message)
            .instrument(span)
            .await
    }

    /// [`merge`](GitRepo::merge) once the merge worktree is ours.
    async fn merge_locked(
        &self,
        branch: &str,
        into: &str,
        message: &str,
    ) -> Result<MergeOutcome, VcsError> {
        let (branch_owned, into_owned) = (branch.to_owned(), into.to_owned());
        let (tip, old) = with_repo(&self.root, move |repo| {
            let tip = read::resolve_commit(repo, &branch_owned)?;
            let old = read::branch_tip(repo, &into_owned)?
                .ok_or_else(|| VcsError::MissingBranch(into_owned.clone()))?;
            let merged = read::is_ancestor(repo, tip, old)?;
            Ok((if merged { None } else { Some(tip) }, old))
        })
        .await?;
        let Some(tip) = tip else {
            tracing::debug!(%old, "already merged");
            return Ok(MergeOutcome::AlreadyMerged(CommitId(old.to_string())));
        };

        self.prepare_merge_worktree(old).await?;
        let worktree = self.merge_worktree.clone();
        let tip_hex = tip.to_string();
        let out = self
            .git
            .run(
                &worktree,
                [
                    "merge",
                    "--no-ff",
                    "--no-edit",
                    "--no-verify-signatures",
                    "--quiet",
                    "-m",
                    message,
                    &tip_hex,
                ],
            )
            .await?;
        if !out.success() {
            let files = self.git.unmerged_paths(&worktree).await;
            let abort = self.git.run(&worktree, ["merge", "--abort"]).await?;
            if !abort.success() {
                tracing::debug!(stderr = %abort.stderr, "merge --abort failed");
                self.reset_merge_worktree(old).await?;
            }
            return match files {
                Ok(files) if !files.is_empty() => {
                    tracing::debug!(?files, "merge conflicts");
                    Ok(MergeOutcome::Conflict { files })
                }
                _ => Err(out.into_error()),
            };
        }
        let merged = with_repo(&worktree, read::head_commit).await?;
        tracing::debug!(%merged, "merge commit made");
        self.land(branch, into, old, merged).await
    }

    /// Moves `into` from `old` to `merged` (see the module documentation).
    async fn land(
        &self,
        branch: &str,
        into: &str,
        old: ObjectId,
        merged: ObjectId,
    ) -> Result<MergeOutcome, VcsError> {
        let into_ref = read::branch_ref(into);
        let merged_hex = merged.to_string();
        let old_hex = old.to_string();
        // Read in-process, without `worktree_lock`: unlike `git worktree list`, this read skips an
        // entry a concurrent `git worktree add` is still writing instead of failing on it, and
        // such an entry (a task branch being checked out) never holds `into`. Waiting for the
        // lock would put a task's `worktree add` on the merge queue's path.
        let entries = self.worktree_entries_in_process().await?;
        let holder = entries.into_iter().find(|entry| {
            !entry.prunable
                && entry.branch.as_deref() == Some(into_ref.as_str())
                && !same_path(&entry.path, &self.merge_worktree)
        });
        let Some(holder) = holder else {
            let reflog = format!("factory: merge {branch} into {into}");
            self.git
                .ok(
                    &self.root,
                    [
                        "update-ref",
                        "-m",
                        &reflog,
                        &into_ref,
                        &merged_hex,
                        &old_hex,
                    ],
                )
                .await?;
            return Ok(MergeOutcome::Merged(CommitId(merged_hex)));
        };

        let checkout = holder.path;
        let blockers = self.blocking_paths(&checkout, old, merged).await?;
        if !blockers.is_empty() {
            return Ok(waiting_for_changes(into, &checkout, blockers));
        }
        let out = self
            .git
            .run(
                &checkout,
                [
                    "merge",
                    "--ff-only",
                    "--no-autostash",
                    "--no-overwrite-ignore",
                    "--no-verify-signatures",
                    "--quiet",
                    &merged_hex,
                ],
            )
            .await?;
        if !out.success() {
            // A failed fast-forward leaves the checkout as it was. Something changed since we
            // looked: the user committed, or touched a file the merge changes.
            let into_owned = into.to_owned();
            let now =
                with_repo(&self.root, move |repo| read::branch_tip(repo, &into_owned)).await?;
            if now != Some(old) {
                return Ok(MergeOutcome::Waiting {
                    reason: format!("`{into}` moved while merging; run again"),
                    files: Vec::new(),
                });
            }
            let blockers = self.blocking_paths(&checkout, old, merged).await?;
            if !blockers.is_empty() {
                return Ok(waiting_for_changes(into, &checkout, blockers));
            }
            return Ok(MergeOutcome::Waiting {
                reason: format!(
                    "could not move your checkout at {} to the merge: {}; resolve that and run again",
                    checkout.display(),
                    out.stderr
                ),
                files: Vec::new(),
            });
        }
        Ok(MergeOutcome::Merged(CommitId(merged_hex)))
    }

    /// The uncommitted paths in `checkout` that moving it from `old` to `merged` would touch:
    /// dirty paths equal to, inside, or containing a changed path, plus files the merge adds
    /// where something (an ignored file) already sits.
    async fn blocking_paths(
        &self,
        checkout: &Path,
        old: ObjectId,
        merged: ObjectId,
    ) -> Result<Vec<String>, VcsError> {
        let changes = with_repo(&self.root, move |repo| {
            read::changed_files(repo, old, merged)
        })
        .await?;
        let dirty = with_repo(checkout, read::dirty_paths).await?;
        let mut blockers: Vec<String> = dirty
            .iter()
            .filter(|path| changes.iter().any(|change| overlaps(path, &change.path)))
            .cloned()
            .collect();
        for change in &changes {
            if change.added
                && !blockers.contains(&change.path)
                && std::fs::symlink_metadata(checkout.join(&change.path)).is_ok()
            {
                blockers.push(change.path.clone());
            }
        }
        blockers.sort();
        blockers.dedup();
        Ok(blockers)
    }

    /// Makes the merge worktree exist, detached and clean at `at`.
    ///
    /// The usual case needs no git process: the merge worktree is ours (its `.git` file leads to
    /// this repository) and the last merge left it as a clean checkout of what is now `into`'s
    /// tip. Otherwise a forced checkout and a clean put it right; and if it is missing or not
    /// (or no longer) registered, it is recreated with git's worktree list as the reference.
    async fn prepare_merge_worktree(&self, at: ObjectId) -> Result<(), VcsError> {
        let worktree = self.merge_worktree.clone();
        if self.root.starts_with(&worktree) {
            return Err(VcsError::Io {
                context: format!(
                    "using {} as the merge worktree, which contains the repository",
                    worktree.display()
                ),
                source: std::io::Error::from(std::io::ErrorKind::InvalidInput),
            });
        }
        match self.merge_worktree_state(at).await {
            Ok(MergeWorktree::Pristine) => return Ok(()),
            Ok(MergeWorktree::Stale) => match self.reset_merge_worktree(at).await {
                Ok(()) => return Ok(()),
                Err(err) => {
                    tracing::debug!(%err, "resetting the merge worktree failed; recreating it");
                }
            },
            Ok(MergeWorktree::Missing) => {
                let _admin = self.worktree_lock.lock().await;
                match self.add_merge_worktree(at).await {
                    Ok(()) => return Ok(()),
                    Err(err) => {
                        // A registration left behind by a deleted directory, most likely.
                        tracing::debug!(%err, "adding the merge worktree failed; checking registrations");
                    }
                }
            }
            Ok(MergeWorktree::Unknown) => {}
            Err(err) => tracing::debug!(%err, "reading the merge worktree failed"),
        }

        let _admin = self.worktree_lock.lock().await;
        let entries = self.worktree_entries().await?;
        let registered = entries
            .iter()
            .find(|entry| same_path(&entry.path, &worktree));
        match registered {
            Some(entry) if !entry.prunable => self.reset_merge_worktree(at).await,
            stale => {
                if stale.is_some() {
                    self.prune_worktrees().await?;
                }
                self.clear_stale_merge_dir(&worktree).await?;
                self.add_merge_worktree(at).await
            }
        }
    }

    /// `git worktree add --detach` of the merge worktree at `at`. Hold `worktree_lock`.
    async fn add_merge_worktree(&self, at: ObjectId) -> Result<(), VcsError> {
        let worktree = &self.merge_worktree;
        read::create_parent_dir(worktree).await?;
        let at = at.to_string();
        self.git
            .ok(
                &self.root,
                [
                    "worktree".as_ref(),
                    "add".as_ref(),
                    "--detach".as_ref(),
                    "--quiet".as_ref(),
                    worktree.as_os_str(),
                    at.as_ref(),
                ],
            )
            .await?;
        Ok(())
    }

    /// What the merge worktree directory holds, read in-process.
    async fn merge_worktree_state(&self, at: ObjectId) -> Result<MergeWorktree, VcsError> {
        let worktree = self.merge_worktree.clone();
        if tokio::fs::symlink_metadata(&worktree).await.is_err() {
            return Ok(MergeWorktree::Missing);
        }
        let is_gitfile = tokio::fs::symlink_metadata(worktree.join(".git"))
            .await
            .is_ok_and(|meta| meta.is_file());
        if !is_gitfile {
            return Ok(MergeWorktree::Unknown);
        }
        let common_dir = self.common_dir.clone();
        tokio::task::spawn_blocking(move || {
            // Opening fails when the registration the `.git` file points to is gone.
            let Ok(repo) = gix::open(&worktree) else {
                return Ok(MergeWorktree::Unknown);
            };
            let ours = normalize(repo.common_dir()) == common_dir
                && repo
                    .workdir()
                    .is_some_and(|workdir| same_path(workdir, &worktree));
            if !ours {
                return Ok(MergeWorktree::Unknown);
            }
            Ok(if read::is_pristine_checkout_of(&repo, at)? {
                MergeWorktree::Pristine
            } else {
                MergeWorktree::Stale
            })
        })
        .await
        .map_err(read::read_err)?
    }

    /// Puts the (registered) merge worktree back to a clean detached checkout of `at`, whatever
    /// an interrupted earlier merge left there: a forced checkout discards tracked changes and
    /// any half-finished merge, and `clean` removes untracked and ignored files.
    async fn reset_merge_worktree(&self, at: ObjectId) -> Result<(), VcsError> {
        let worktree = &self.merge_worktree;
        let at = at.to_string();
        self.git
            .ok(
                worktree,
                ["checkout", "--detach", "--force", "--quiet", &at],
            )
            .await?;
        self.git.ok(worktree, ["clean", "-fdxq"]).await?;
        Ok(())
    }

    /// A merge-worktree directory git no longer knows (its registration was pruned) is left-over
    /// Factory state: remove it so `git worktree add` can recreate it. Anything else there that
    /// is not empty is not ours to delete.
    async fn clear_stale_merge_dir(&self, worktree: &Path) -> Result<(), VcsError> {
        let io = |context: String| move |source| VcsError::Io { context, source };
        let Ok(mut dir) = tokio::fs::read_dir(worktree).await else {
            return Ok(());
        };
        let is_empty = dir
            .next_entry()
            .await
            .map_err(io(format!("reading {}", worktree.display())))?
            .is_none();
        if is_empty {
            return Ok(());
        }
        if tokio::fs::symlink_metadata(worktree.join(".git"))
            .await
            .is_ok_and(|meta| meta.is_file())
        {
            tracing::debug!(path = %worktree.display(), "removing stale merge worktree directory");
            return tokio::fs::remove_dir_all(worktree)
                .await
                .map_err(io(format!("removing stale {}", worktree.display())));
        }
        Err(VcsError::Io {
            context: format!(
                "{} exists and is not a git worktree; move it away so Factory can make merges there",
                worktree.display()
            ),
            source: std::io::Error::from(std::io::ErrorKind::AlreadyExists),
        })
    }
}

/// The merge worktree as found before a merge.
enum MergeWorktree {
    /// Ours, and already a clean detached checkout of the commit wanted.
    Pristine,
    /// Ours, but elsewhere or with leftovers in it.
    Stale,
    /// Nothing at its path.
    Missing,
    /// Not a registered worktree of this repository, or not readable: ask git.
    Unknown,
}

/// Whether a dirty path and a changed path are the same, or one lies inside the other.
fn overlaps(dirty: &str, changed: &str) -> bool {
    let dirty = dirty.trim_end_matches('/');
    dirty == changed
        || changed
            .strip_prefix(dirty)
            .is_some_and(|rest| rest.starts_with('/'))
        || dirty
            .strip_prefix(changed)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// The outcome when the user's uncommitted `files` are in the merge's way.
fn waiting_for_changes(into: &str, checkout: &Path, files: Vec<String>) -> MergeOutcome {
    MergeOutcome::Waiting {
        reason: format!(
            "merging into `{into}` is waiting: uncommitted changes in {} (in {}) would be overwritten; commit or stash them and run again",
            files.join(", "),
            checkout.display()
        ),
        files,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use factory_core::ports::{MergeOutcome, Vcs};

    use super::{MergeWorktree, overlaps};
    use crate::read::{self, with_repo};
    use crate::repo::tests::{git, sample_repo};

    /// After a merge the merge worktree is a clean checkout of the new tip, so the next merge
    /// starts without running git; anything out of place sends it down the slower paths.
    #[tokio::test]
    async fn the_merge_worktree_left_by_a_merge_needs_no_reset() {
        let (_tmp, root, repo) = sample_repo();
        git(&root, &["branch", "factory/one"]);
        git(
            &root,
            &["worktree", "add", "-q", ".factory/one", "factory/one"],
        );
        let task = root.join(".factory/one");
        std::fs::write(task.join("one.txt"), "1\n").unwrap();
        repo.commit_all(&task, "one").await.unwrap().unwrap();
        let main = with_repo(&root, read::head_commit).await.unwrap();
        assert!(matches!(
            repo.merge_worktree_state(main).await.unwrap(),
            MergeWorktree::Missing
        ));

        let outcome = repo.merge_no_ff("factory/one", "main", "m").await.unwrap();
        let MergeOutcome::Merged(merged) = outcome else {
            panic!("{outcome:?}");
        };
        let merged = gix::ObjectId::from_hex(merged.0.as_bytes()).unwrap();
        let state = |at| repo.merge_worktree_state(at);
        assert!(matches!(
            state(merged).await.unwrap(),
            MergeWorktree::Pristine
        ));
        assert!(matches!(state(main).await.unwrap(), MergeWorktree::Stale));

        let merge_dir = repo.merge_worktree().to_owned();
        std::fs::write(merge_dir.join("junk.txt"), "junk\n").unwrap();
        assert!(matches!(state(merged).await.unwrap(), MergeWorktree::Stale));
        std::fs::remove_file(merge_dir.join("junk.txt")).unwrap();
        assert!(matches!(
            state(merged).await.unwrap(),
            MergeWorktree::Pristine
        ));

        // A `.git` file leading to another repository is not ours.
        let (_other_tmp, other_root, _other) = sample_repo();
        git(
            &other_root,
            &["worktree", "add", "-q", "--detach", "../elsewhere"],
        );
        let foreign = std::fs::read(other_root.join("../elsewhere/.git")).unwrap();
        std::fs::write(merge_dir.join(".git"), foreign).unwrap();
        assert!(matches!(
            state(merged).await.unwrap(),
            MergeWorktree::Unknown
        ));
    }

    #[test]
    fn overlap_is_exact_or_by_directory() {
        assert!(overlaps("src/a.rs", "src/a.rs"));
        assert!(overlaps("src", "src/a.rs"));
        assert!(overlaps("src/", "src/a.rs"));
        assert!(overlaps("src/a.rs/x", "src/a.rs"));
        assert!(!overlaps("src/a.rs", "src/a.rs.bak"));
        assert!(!overlaps("src/ab", "src/a"));
    }
}
