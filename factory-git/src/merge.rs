//! `--no-ff` merges of exactly the verified commit, that never touch the user's uncommitted work
//! and move no ref but `into`, and that only by compare-and-swap.
//!
//! 1. The verified commit is looked up on `into`: if it is already there (a retried step, or the
//!    user merged the branch by hand), the outcome is `AlreadyMerged` with the first-parent
//!    commit that brought it in. Otherwise the branch's tip must still be that commit
//!    (`TipMoved` if not).
//! 2. When the verified commit already has `into`'s tip in its history (the merge queue rebased
//!    it there), the `--no-ff` merge's tree is the verified commit's own tree: the merge commit
//!    (parents: the tip, then the verified commit) is written directly, with no worktree and no
//!    git process. Otherwise it is made by `git merge` in Factory's own merge worktree (detached
//!    at `into`'s tip; reset and cleaned first unless it already is exactly that, which is what
//!    the previous merge leaves), so a conflict or a crash never leaves anything in the user's
//!    checkout.
//! 3. The new commit lands on `into` ([`GitRepo::land`]). Factory takes `HEAD.lock` of the user's
//!    checkout (and of any other worktree that has `into` checked out), git's own lock, so for
//!    those few milliseconds no git command can switch branches or commit there. Under it:
//!    - a checkout with an operation in progress that concerns `into` → `Waiting`: a rebase of
//!      `into` (finishing later, it would find `into` moved and fail), a merge, cherry-pick or
//!      revert being made on `into`, a bisect started from it. The user rebasing or merging
//!      another branch does not hold up `into`, which then moves without touching the checkout;
//!    - a checkout whose `HEAD` is `into` at that instant is brought from the old tip to the merge
//!      with `git read-tree -m -u`, which changes only files that are clean there and moves no
//!      ref; if one of its uncommitted paths is touched by the merge → `Waiting`, nothing moves;
//!    - then `into` moves by compare-and-swap from the old tip (in-process, so the held
//!      `HEAD.lock` does not stand in the way). If that loses (someone moved `into`), the checkout
//!      is put back and the outcome is `MainMoved`.
//!
//!    Unlike `git merge --ff-only` in the user's checkout, nothing here follows `HEAD` to
//!    whatever branch the user just switched to.

use std::path::Path;

use factory_core::ports::{CommitId, MergeOutcome, VcsError, paths_overlap};
use gix::ObjectId;
use tracing::Instrument;

use crate::cli::Checkout;
use crate::head_lock::{Abandoned, HeadLock};
use crate::read::{self, read_err};
use crate::repo::GitRepo;
use crate::worktree::{normalize, same_path};

/// What a merge found on `into` and the branch before making anything.
enum Preflight {
    /// Nothing to do, or nothing allowed.
    Done(MergeOutcome),
    /// Merge `verified` onto `old`.
    Merge { old: ObjectId, verified: ObjectId },
    /// `verified` descends from `old`: the merge commit `merged` is written; land it.
    Written { old: ObjectId, merged: ObjectId },
}

impl GitRepo {
    /// See the module documentation.
    pub(crate) async fn merge(
        &self,
        branch: &str,
        verified: &CommitId,
        into: &str,
        message: &str,
    ) -> Result<MergeOutcome, VcsError> {
        let _merging = self.merge_lock.lock().await;
        let span = tracing::debug_span!("merge_verified", branch, %verified, into);
        self.merge_locked(branch, verified, into, message)
            .instrument(span)
            .await
    }

    /// [`merge`](GitRepo::merge) once the merge worktree is ours.
    async fn merge_locked(
        &self,
        branch: &str,
        verified: &CommitId,
        into: &str,
        message: &str,
    ) -> Result<MergeOutcome, VcsError> {
        let (branch_owned, into_owned, verified_owned) =
            (branch.to_owned(), into.to_owned(), verified.clone());
        let (identity, message_owned) = (self.git.identity().clone(), message.to_owned());
        let preflight = self
            .read_main(move |repo| {
                let verified = read::resolve_commit(repo, &verified_owned.0)?;
                let old = read::branch_tip(repo, &into_owned)?
                    .ok_or_else(|| VcsError::MissingBranch(into_owned.clone()))?;
                if let Some(brought_in) = read::first_parent_containing(repo, verified, old)? {
                    return Ok(Preflight::Done(MergeOutcome::AlreadyMerged(CommitId(
                        brought_in.to_string(),
                    ))));
                }
                let tip = read::branch_tip(repo, &branch_owned)?;
                if tip != Some(verified) {
                    return Ok(Preflight::Done(MergeOutcome::TipMoved {
                        expected: verified_owned,
                        actual: tip.map(|tip| CommitId(tip.to_string())),
                    }));
                }
                if read::is_ancestor(repo, old, verified)? {
                    let merged =
                        write_merge_commit(repo, old, verified, &identity, &message_owned)?;
                    return Ok(Preflight::Written { old, merged });
                }
                Ok(Preflight::Merge { old, verified })
            })
            .await?;
        let (old, verified) = match preflight {
            Preflight::Done(outcome) => {
                tracing::debug!(?outcome, "nothing to merge");
                return Ok(outcome);
            }
            Preflight::Written { old, merged } => {
                tracing::debug!(%merged, "merge commit written on top of the verified commit");
                return self.land(branch, into, old, merged).await;
            }
            Preflight::Merge { old, verified } => (old, verified),
        };

        self.prepare_merge_worktree(old).await?;
        let worktree = self.merge_checkout().await?;
        let verified_hex = verified.to_string();
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
                    &verified_hex,
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
        let merged = self
            .files
            .with_repo(&worktree.work_tree, read::head_commit)
            .await?;
        tracing::debug!(%merged, "merge commit made");
        self.land(branch, into, old, merged).await
    }

    /// The merge worktree, named explicitly for git; it must be registered.
    async fn merge_checkout(&self) -> Result<Checkout, VcsError> {
        self.registered_checkout(&self.merge_worktree)
            .await
            .ok_or_else(|| VcsError::Io {
                context: format!(
                    "finding the registration of the merge worktree {}",
                    self.merge_worktree.display()
                ),
                source: std::io::Error::from(std::io::ErrorKind::NotFound),
            })
    }

    /// Moves `into` from `old` to `merged` and, if the user has `into` checked out, their
    /// checkout with it (see the module documentation).
    pub(crate) async fn land(
        &self,
        branch: &str,
        into: &str,
        old: ObjectId,
        merged: ObjectId,
    ) -> Result<MergeOutcome, VcsError> {
        let into_ref = read::branch_ref(into);
        // The user's checkout, plus any linked worktree (not the merge worktree) the registry
        // says has `into` checked out. Read in-process, without `worktree_lock`: this read skips
        // an entry a concurrent `git worktree add` is still writing instead of failing on it,
        // and such an entry (a task branch being checked out) never holds `into`.
        let entries = self.worktree_entries_in_process().await?;
        let mut checkouts = vec![self.main_checkout()];
        for entry in entries.iter().skip(1) {
            if !entry.prunable
                && entry.branch.as_deref() == Some(into_ref.as_str())
                && !same_path(&entry.path, &self.merge_worktree)
                && let Some(at) = self.registered_checkout(&entry.path).await
            {
                checkouts.push(at);
            }
        }
        let mut locks = Vec::new();
        for at in &checkouts {
            match self.lock_head(at, into, old, merged).await? {
                Ok(lock) => locks.push(lock),
                Err(waiting) => return Ok(waiting),
            }
        }
        // From here until the locks drop, no git command can change these checkouts' HEADs.
        let mut holder = None;
        for (i, at) in checkouts.iter().enumerate() {
            let head = std::fs::read_to_string(at.git_dir.join("HEAD")).unwrap_or_default();
            let head_on_into =
                head.trim().strip_prefix("ref:").map(str::trim) == Some(into_ref.as_str());
            if let Some(busy) = read::operation_on(&at.git_dir, &into_ref, head_on_into) {
                return Ok(MergeOutcome::Waiting {
                    reason: format!(
                        "merging into `{into}` is waiting: {busy} is in progress in {}; finish or abort it and run again",
                        at.work_tree.display()
                    ),
                    files: Vec::new(),
                });
            }
            if head_on_into {
                holder = Some(i);
            }
        }

        let Some(holder) = holder else {
            return self.swap_branch(branch, into, old, merged).await;
        };
        let checkout = checkouts[holder].clone();
        let lock = &mut locks[holder];
        // Nothing can commit through this checkout's HEAD now, but `into` may already have moved
        // (a commit made before the lock, a fetch into it): then leave the checkout alone.
        let into_owned = into.to_owned();
        let now = self
            .read_main(move |repo| read::branch_tip(repo, &into_owned))
            .await?;
        if now != Some(old) {
            return Ok(MergeOutcome::MainMoved {
                expected: CommitId(old.to_string()),
                actual: now.map(|now| CommitId(now.to_string())),
            });
        }
        if let Some(waiting) = self.checkout_in_the_way(into, &checkout, old, merged).await {
            return Ok(waiting);
        }
        let (old_hex, merged_hex) = (old.to_string(), merged.to_string());
        let read_tree = ["read-tree", "-m", "-u", &old_hex, &merged_hex];
        // From here the checkout may be on the merge while `into` is not: should this step be
        // cut short, the lock stays as the record the next merge puts the checkout back by.
        // Git commands are never stopped half-way (see `GitCli::run`).
        lock.arm();
        let mut out = self.git.run(&checkout, read_tree).await?;
        if !out.success() {
            // Perhaps only stale stat information in the index (a file touched but unchanged),
            // which read-tree takes for a modification: refresh it, as `git status` would, and
            // try once more.
            let _ = self
                .git
                .run(&checkout, ["update-index", "-q", "--refresh"])
                .await?;
            out = self.git.run(&checkout, read_tree).await?;
        }
        if !out.success() {
            lock.disarm();
            // read-tree checks every path before writing any: the checkout is as it was.
            if let Some(waiting) = self.checkout_in_the_way(into, &checkout, old, merged).await {
                return Ok(waiting);
            }
            return Ok(MergeOutcome::Waiting {
                reason: format!(
                    "merging into `{into}` is waiting: could not bring your checkout at {} to the merge: {}; resolve that and run again",
                    checkout.work_tree.display(),
                    out.stderr
                ),
                files: Vec::new(),
            });
        }
        let outcome = self.swap_branch(branch, into, old, merged).await;
        if !matches!(outcome, Ok(MergeOutcome::Merged(_))) {
            // `into` did not move: put the checkout back where its branch still is.
            let back = self
                .git
                .run(&checkout, ["read-tree", "-m", "-u", &merged_hex, &old_hex])
                .await?;
            if !back.success() {
                tracing::warn!(stderr = %back.stderr, "could not put the checkout back after losing the compare-and-swap");
            }
        }
        lock.disarm();
        outcome
    }

    /// `HEAD.lock` of `at`, for moving it from `old` to `merged`; or, while someone else holds
    /// it, the `Waiting` outcome. A lock an interrupted Factory run left is cleared first.
    async fn lock_head(
        &self,
        at: &Checkout,
        into: &str,
        old: ObjectId,
        merged: ObjectId,
    ) -> Result<Result<HeadLock, MergeOutcome>, VcsError> {
        let mut acquired = HeadLock::acquire_soon(&at.git_dir, old, merged).await;
        if acquired
            .as_ref()
            .is_err_and(|err| err.kind() == std::io::ErrorKind::AlreadyExists)
        {
            match self.clear_abandoned_head_lock(at, into).await? {
                Abandoned::Cleared => acquired = HeadLock::acquire(&at.git_dir, old, merged),
                Abandoned::Held => {}
                Abandoned::NotYet(why) => {
                    return Ok(Err(MergeOutcome::Waiting {
                        reason: format!("merging into `{into}` is waiting: {why}"),
                        files: Vec::new(),
                    }));
                }
            }
        }
        match acquired {
            Ok(lock) => Ok(Ok(lock)),
            Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {
                Ok(Err(MergeOutcome::Waiting {
                    reason: format!(
                        "merging into `{into}` is waiting: a git command is running in {} ({} exists); run again once it has finished, or remove that file if no git command is running",
                        at.work_tree.display(),
                        at.git_dir.join("HEAD.lock").display()
                    ),
                    files: Vec::new(),
                }))
            }
            Err(source) => Err(VcsError::Io {
                context: format!("locking {}", at.git_dir.join("HEAD").display()),
                source,
            }),
        }
    }

    /// Compare-and-swap of `refs/heads/<into>` from `old` to `merged`, in-process: git's
    /// `update-ref` would also lock `HEAD` (for its reflog) when `HEAD` points at `into`, and
    /// [`land`](GitRepo::land) holds that lock.
    async fn swap_branch(
        &self,
        branch: &str,
        into: &str,
        old: ObjectId,
        merged: ObjectId,
    ) -> Result<MergeOutcome, VcsError> {
        use gix::refs::Target;
        use gix::refs::transaction::{Change, LogChange, PreviousValue, RefEdit, RefLog};

        let into_ref = read::branch_ref(into);
        let message = format!("factory: merge {branch} into {into}");
        let identity = self.git.identity().clone();
        let swapped = self
            .read_main(move |repo| {
                let name = gix::refs::FullName::try_from(into_ref.as_str()).map_err(read_err)?;
                let edit = RefEdit {
                    change: Change::Update {
                        log: LogChange {
                            mode: RefLog::AndReference,
                            force_create_reflog: false,
                            message: message.into(),
                        },
                        expected: PreviousValue::MustExistAndMatch(Target::Object(old)),
                        new: Target::Object(merged),
                    },
                    name,
                    deref: false,
                };
                let committer = gix::actor::Signature {
                    name: identity.name.into(),
                    email: identity.email.into(),
                    time: gix::date::Time::now_local_or_utc(),
                };
                let mut time = gix::date::parse::TimeBuf::default();
                match repo.edit_references_as([edit], Some(committer.to_ref(&mut time))) {
                    Ok(_) => Ok(None),
                    Err(err) => Ok(Some(error_chain(&err))),
                }
            })
            .await?;
        let Some(failure) = swapped else {
            return Ok(MergeOutcome::Merged(CommitId(merged.to_string())));
        };
        let into_owned = into.to_owned();
        let now = self
            .read_main(move |repo| read::branch_tip(repo, &into_owned))
            .await?;
        if now == Some(old) {
            if failure.to_lowercase().contains("lock") {
                // Another git command was writing `into` (a commit on it, a fetch): transient.
                return Ok(MergeOutcome::Waiting {
                    reason: format!(
                        "merging into `{into}` is waiting: could not lock `{into}` ({failure}); run again"
                    ),
                    files: Vec::new(),
                });
            }
            return Err(VcsError::Refused {
                command: format!("update-ref refs/heads/{into} {merged} {old}"),
                reason: failure,
            });
        }
        tracing::info!(%old, now = ?now, "`{into}` moved during the merge");
        Ok(MergeOutcome::MainMoved {
            expected: CommitId(old.to_string()),
            actual: now.map(|now| CommitId(now.to_string())),
        })
    }

    /// Why the user's `checkout` (which has `into` checked out) cannot be moved from `old` to
    /// `merged` right now, as a `Waiting` outcome; `None` when nothing is in the way. A git
    /// command writing the checkout (a `git checkout` takes `HEAD.lock` only after switching the
    /// index and files), or a checkout changing under the status walk, is in the way too.
    async fn checkout_in_the_way(
        &self,
        into: &str,
        checkout: &Checkout,
        old: ObjectId,
        merged: ObjectId,
    ) -> Option<MergeOutcome> {
        let index_lock = checkout.git_dir.join("index.lock");
        if std::fs::symlink_metadata(&index_lock).is_ok() {
            return Some(MergeOutcome::Waiting {
                reason: format!(
                    "merging into `{into}` is waiting: a git command is writing your checkout at {} ({} exists); run again once it has finished",
                    checkout.work_tree.display(),
                    index_lock.display()
                ),
                files: Vec::new(),
            });
        }
        match self.blocking_paths(&checkout.work_tree, old, merged).await {
            Ok(blockers) if blockers.is_empty() => None,
            Ok(blockers) => Some(waiting_for_changes(into, &checkout.work_tree, blockers)),
            Err(err) => Some(MergeOutcome::Waiting {
                reason: format!(
                    "merging into `{into}` is waiting: could not read your checkout at {} ({err}); run again",
                    checkout.work_tree.display()
                ),
                files: Vec::new(),
            }),
        }
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
        let changes = self
            .read_main(move |repo| read::changed_files(repo, old, merged))
            .await?;
        let dirty = self.files.with_repo(checkout, read::dirty_paths).await?;
        let mut blockers: Vec<String> = dirty
            .iter()
            .filter(|path| {
                changes
                    .iter()
                    .any(|change| paths_overlap(path, &change.path))
            })
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
                &self.main_checkout(),
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
        self.files
            .run(move || {
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
    }

    /// Puts the (registered) merge worktree back to a clean detached checkout of `at`, whatever
    /// an interrupted earlier merge left there: a forced checkout discards tracked changes and
    /// any half-finished merge, and `clean` removes untracked and ignored files.
    async fn reset_merge_worktree(&self, at: ObjectId) -> Result<(), VcsError> {
        let worktree = self.merge_checkout().await?;
        let at = at.to_string();
        self.git
            .ok(
                &worktree,
                ["checkout", "--detach", "--force", "--quiet", &at],
            )
            .await?;
        self.git.ok(&worktree, ["clean", "-fdxq"]).await?;
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

/// Writes the `--no-ff` merge of `verified` into `old` when `old` is already in `verified`'s
/// history: a commit with `verified`'s tree (the tree a merge of a descendant always has),
/// parents `old` then `verified`, made by `identity` now, with `message` cleaned up as
/// `git merge -m` does. Returns the new commit; no ref moves.
fn write_merge_commit(
    repo: &gix::Repository,
    old: ObjectId,
    verified: ObjectId,
    identity: &factory_core::ports::GitIdentity,
    message: &str,
) -> Result<ObjectId, VcsError> {
    let tree = repo
        .find_commit(verified)
        .map_err(read_err)?
        .tree_id()
        .map_err(read_err)?
        .detach();
    let signature = gix::actor::Signature {
        name: identity.name.as_str().into(),
        email: identity.email.as_str().into(),
        time: gix::date::Time::now_local_or_utc(),
    };
    let commit = gix::objs::Commit {
        tree,
        parents: vec![old, verified].into(),
        author: signature.clone(),
        committer: signature,
        encoding: None,
        message: clean_message(message).into(),
        extra_headers: Vec::new(),
    };
    Ok(repo.write_object(&commit).map_err(read_err)?.detach())
}

/// A commit message as git stores one given with `-m` and no editor (`--cleanup=whitespace`,
/// `git stripspace`): trailing whitespace removed from each line, runs of empty lines made one,
/// leading and trailing empty lines dropped, and a final newline.
fn clean_message(message: &str) -> String {
    let mut out = String::with_capacity(message.len() + 1);
    let mut pending_blank = false;
    for line in message.split('\n') {
        let line = line.trim_end_matches([' ', '\t', '\r']);
        if line.is_empty() {
            pending_blank = !out.is_empty();
            continue;
        }
        if pending_blank {
            out.push('\n');
            pending_blank = false;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
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

/// An error and its sources, `: `-separated: gix puts the cause (a held lock) in a source.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
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

    use factory_core::ports::{CommitId, MergeOutcome, Vcs};

    use super::MergeWorktree;
    use crate::read::{self, with_repo};
    use crate::repo::tests::{git, sample_repo};
    use factory_core::ports::paths_overlap as overlaps;

    /// After a merge made by git the merge worktree is a clean checkout of the new tip, so the
    /// next one starts without running git; anything out of place sends it down the slower paths.
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
        repo.commit_all(&task, "factory/one", "one")
            .await
            .unwrap()
            .unwrap();
        // Main moves on, so the branch is not on top of it and git makes the merge.
        std::fs::write(root.join("user.txt"), "user\n").unwrap();
        git(&root, &["add", "user.txt"]);
        git(&root, &["commit", "-q", "-m", "user"]);
        let main = with_repo(&root, read::head_commit).await.unwrap();
        assert!(matches!(
            repo.merge_worktree_state(main).await.unwrap(),
            MergeWorktree::Missing
        ));

        let tip = repo.branch_head("factory/one").await.unwrap().unwrap();
        let outcome = repo
            .merge_verified("factory/one", &tip, "main", "m")
            .await
            .unwrap();
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

    /// Main moves between the merge reading it and landing the merge (the user commits on it):
    /// the compare-and-swap loses, nothing is lost, and the user's checkout, already brought to
    /// the merge by then, is put back to their commit's state.
    #[tokio::test]
    async fn a_lost_compare_and_swap_is_main_moved_and_changes_nothing() {
        let (_tmp, root, repo) = sample_repo();
        git(&root, &["branch", "factory/one"]);
        git(
            &root,
            &["worktree", "add", "-q", ".factory/one", "factory/one"],
        );
        let task = root.join(".factory/one");
        std::fs::write(task.join("one.txt"), "1\n").unwrap();
        let verified = repo
            .commit_all(&task, "factory/one", "one")
            .await
            .unwrap()
            .unwrap();
        let old = with_repo(&root, read::head_commit).await.unwrap();
        let verified = gix::ObjectId::from_hex(verified.0.as_bytes()).unwrap();
        // The merge commit, made the way `merge_locked` makes it.
        repo.prepare_merge_worktree(old).await.unwrap();
        let merge_dir = repo.merge_worktree().to_owned();
        git(
            &merge_dir,
            &["merge", "-q", "--no-ff", "-m", "m", &verified.to_string()],
        );
        let merged = with_repo(&merge_dir, read::head_commit).await.unwrap();

        // Meanwhile the user commits on main, in their checkout of it.
        std::fs::write(root.join("user.txt"), "user\n").unwrap();
        git(&root, &["add", "user.txt"]);
        git(&root, &["commit", "-q", "-m", "user"]);
        let user = with_repo(&root, read::head_commit).await.unwrap();

        let outcome = repo.land("factory/one", "main", old, merged).await.unwrap();
        assert_eq!(
            outcome,
            MergeOutcome::MainMoved {
                expected: CommitId(old.to_string()),
                actual: Some(CommitId(user.to_string())),
            }
        );
        assert_eq!(git(&root, &["rev-parse", "main"]).trim(), user.to_string());
        assert_eq!(
            git(&root, &["symbolic-ref", "HEAD"]).trim(),
            "refs/heads/main"
        );
        assert!(git(&root, &["status", "--porcelain"]).is_empty());
        assert!(!root.join("one.txt").exists());
        assert!(!root.join(".git/HEAD.lock").exists());

        // The same with the user on another branch: main is still not moved.
        git(&root, &["checkout", "-q", "-b", "feature"]);
        let outcome = repo.land("factory/one", "main", old, merged).await.unwrap();
        assert!(
            matches!(outcome, MergeOutcome::MainMoved { .. }),
            "{outcome:?}"
        );
        assert_eq!(git(&root, &["rev-parse", "main"]).trim(), user.to_string());
        assert_eq!(
            git(&root, &["rev-parse", "feature"]).trim(),
            user.to_string()
        );
    }

    /// A branch already on top of main is merged without the merge worktree: the merge commit
    /// has the verified tree, main's old tip and the verified commit as parents, Factory's
    /// identity, and the message as `git merge -m` would store it.
    #[tokio::test]
    async fn a_branch_on_top_of_main_is_merged_without_a_worktree() {
        let (_tmp, root, repo) = sample_repo();
        git(&root, &["branch", "factory/one"]);
        git(
            &root,
            &["worktree", "add", "-q", ".factory/one", "factory/one"],
        );
        let task = root.join(".factory/one");
        std::fs::write(task.join("one.txt"), "1\n").unwrap();
        let verified = repo
            .commit_all(&task, "factory/one", "one")
            .await
            .unwrap()
            .unwrap();
        let old = git(&root, &["rev-parse", "main"]).trim().to_owned();

        let message = "Merge factory/one: a  title  \n\n\n\nbody\t\n\n";
        let outcome = repo
            .merge_verified("factory/one", &verified, "main", message)
            .await
            .unwrap();
        let MergeOutcome::Merged(merged) = outcome else {
            panic!("{outcome:?}");
        };
        assert_eq!(git(&root, &["rev-parse", "main"]).trim(), merged.0);
        assert_eq!(
            git(&root, &["rev-list", "--parents", "-n", "1", &merged.0]).trim(),
            format!("{} {old} {}", merged.0, verified.0)
        );
        assert_eq!(
            git(&root, &["rev-parse", &format!("{}^{{tree}}", merged.0)]),
            git(&root, &["rev-parse", &format!("{}^{{tree}}", verified.0)])
        );
        assert_eq!(
            git(
                &root,
                &["log", "-1", "--format=%an <%ae> %cn <%ce>", &merged.0]
            )
            .trim(),
            "F <f@x> F <f@x>"
        );
        assert_eq!(
            git(&root, &["cat-file", "commit", &merged.0])
                .split_once("\n\n")
                .unwrap()
                .1,
            "Merge factory/one: a  title\n\nbody\n"
        );
        git(&root, &["fsck", "--no-progress"]);
        // The user's checkout followed main; no merge worktree was needed.
        assert_eq!(
            std::fs::read_to_string(root.join("one.txt")).unwrap(),
            "1\n"
        );
        assert!(git(&root, &["status", "--porcelain"]).is_empty());
        assert!(!repo.merge_worktree().exists());
    }

    /// The message cleanup matches `git stripspace`.
    #[test]
    fn messages_are_cleaned_up_as_git_does() {
        let cases = [
            "Merge x: title",
            "title\n",
            "\n\n  \ntitle  \t\n\n\n\nbody line   \n\t\n",
            "a\r\nb\r\n",
            "a\x0b\nb\x0c\n",
            "  indented stays\n\n\n",
            "",
            " \n\t\n",
        ];
        for case in cases {
            let out = std::process::Command::new("git")
                .arg("stripspace")
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .and_then(|mut child| {
                    use std::io::Write;
                    child.stdin.take().unwrap().write_all(case.as_bytes())?;
                    child.wait_with_output()
                })
                .unwrap();
            assert_eq!(
                super::clean_message(case),
                String::from_utf8(out.stdout).unwrap(),
                "{case:?}"
            );
        }
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
