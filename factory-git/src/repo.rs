//! [`GitRepo`]: the handle the orchestrator holds, and its [`Vcs`] implementation.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use factory_core::ports::{
    BranchDeletion, BranchTip, BranchUpdate, CheckoutStatus, CommitId, ConflictRound, GitIdentity,
    MergeOutcome, OversizedFile, UpdateOutcome, Vcs, VcsError, WorktreeDamage, WorktreeInfo,
};

use crate::cli::{Checkout, GitCli};
use crate::health;
use crate::read::{self, Files, MainRepo, read_err};
use crate::worktree::{self, WorktreeEntry, normalize, same_path};

/// A git repository Factory works in: the user's checkout (the main worktree), the task
/// worktrees it creates, and one worktree reserved for making merges.
///
/// Cheap to share behind an `Arc`; merges are serialised internally because they share the
/// merge worktree.
#[derive(Debug)]
pub struct GitRepo {
    pub(crate) root: PathBuf,
    pub(crate) git: GitCli,
    pub(crate) merge_worktree: PathBuf,
    /// The repository's shared git directory (`.git` of the main checkout), to recognise the
    /// merge worktree as ours without asking git.
    pub(crate) common_dir: PathBuf,
    /// The main repository, kept open for reads of refs and objects (see
    /// [`GitRepo::read_main`]).
    pub(crate) main: MainRepo,
    /// Where reads of work trees, indexes and the worktree registry run.
    pub(crate) files: Files,
    pub(crate) merge_lock: tokio::sync::Mutex<()>,
    /// Held while changing the worktree list or reading it with git: `git worktree list` (and
    /// `add`) fail on an entry that a concurrent `git worktree add` is still writing. The
    /// in-process read ([`GitRepo::worktree_entries_in_process`]) skips such entries instead.
    pub(crate) worktree_lock: tokio::sync::Mutex<()>,
}

/// The main repository of the one containing `path` (from a linked worktree: its main checkout).
fn discover_main(path: &Path) -> Result<gix::Repository, VcsError> {
    let repo = gix::discover(path).map_err(|_| VcsError::NotARepository(path.to_owned()))?;
    repo.main_repo().map_err(read_err)
}

/// The top-level directory of the user's checkout of the repository containing `path`, as
/// [`GitRepo::open`] finds it; for locating `.factory/` before the configuration is read.
pub fn discover_root(path: &Path) -> Result<PathBuf, VcsError> {
    let main = discover_main(path)?;
    main.workdir()
        .map(normalize)
        .ok_or_else(|| VcsError::NotARepository(path.to_owned()))
}

impl GitRepo {
    /// Opens the repository containing `path`. Factory commits as `identity`, and makes merges in
    /// `merge_worktree` (normally [`Layout::merge_worktree`](factory_core::layout::Layout::merge_worktree);
    /// a relative path is taken from the repository root).
    ///
    /// From inside a linked worktree this still opens the repository's main checkout, since
    /// that is where the user works and where `.factory/` lives.
    pub fn open(
        path: &Path,
        identity: GitIdentity,
        merge_worktree: PathBuf,
    ) -> Result<GitRepo, VcsError> {
        let not_a_repo = || VcsError::NotARepository(path.to_owned());
        let main = discover_main(path)?;
        let root = normalize(main.workdir().ok_or_else(not_a_repo)?);
        let common_dir = normalize(main.common_dir());
        let merge_worktree = if merge_worktree.is_absolute() {
            normalize(&merge_worktree)
        } else {
            normalize(&root.join(merge_worktree))
        };
        tracing::debug!(root = %root.display(), merge_worktree = %merge_worktree.display(), "opened repository");
        let main_root = root.clone();
        Ok(GitRepo {
            root,
            git: GitCli::new(identity),
            merge_worktree,
            common_dir,
            main: MainRepo::new(main_root),
            files: Files::new(),
            merge_lock: tokio::sync::Mutex::new(()),
            worktree_lock: tokio::sync::Mutex::new(()),
        })
    }

    /// Runs `f` on the main repository's open handle, for reads of refs and objects (and
    /// writes of both) as they are now; status and directory walks use a fresh handle instead.
    pub(crate) async fn read_main<T, F>(&self, f: F) -> Result<T, VcsError>
    where
        T: Send + 'static,
        F: FnOnce(&gix::Repository) -> Result<T, VcsError> + Send + 'static,
    {
        self.main.run(f).await
    }

    /// The user's checkout, named explicitly for git.
    pub(crate) fn main_checkout(&self) -> Checkout {
        Checkout {
            git_dir: self.common_dir.clone(),
            work_tree: self.root.clone(),
        }
    }

    /// The linked worktree at `path` named explicitly for git (its registration found from the
    /// repository's side), for worktrees Factory owns without a branch to check (the merge
    /// worktree). `None` when git has no registration for `path`.
    pub(crate) async fn registered_checkout(&self, path: &Path) -> Option<Checkout> {
        let (common_dir, path) = (self.common_dir.clone(), normalize(path));
        self.files
            .run(move || {
                Ok(
                    health::admin_dir_of(&common_dir, &path).map(|git_dir| Checkout {
                        git_dir,
                        work_tree: path,
                    }),
                )
            })
            .await
            .ok()
            .flatten()
    }

    /// The task worktree at `path`, checked to still be `branch`'s registered worktree and
    /// free of nested repositories, named explicitly for git;
    /// [`VcsError::WorktreeDamaged`] otherwise.
    pub(crate) async fn task_checkout(
        &self,
        path: &Path,
        branch: &str,
    ) -> Result<Checkout, VcsError> {
        let branch_ref = read::branch_ref(short_branch(branch));
        health::checked(&self.files, &self.common_dir, path, &branch_ref).await
    }

    /// The top-level directory of the user's checkout.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where merges are made; Factory's own, reset before every merge.
    pub fn merge_worktree(&self) -> &Path {
        &self.merge_worktree
    }

    /// The branch checked out in the user's checkout; `None` when `HEAD` is detached or the
    /// branch has no commits yet.
    pub async fn current_branch(&self) -> Result<Option<String>, VcsError> {
        self.read_main(read::checked_out_branch).await
    }

    /// What the user has not committed in their checkout: modified or deleted tracked files,
    /// staged changes, conflicts, and untracked files that are not ignored. Sorted paths
    /// relative to [`root`](GitRepo::root). `.factory/` is ignored through `.git/info/exclude`.
    pub async fn dirty_paths(&self) -> Result<Vec<String>, VcsError> {
        self.files.with_repo(&self.root, read::dirty_paths).await
    }

    /// Adds `pattern` to the repository's `info/exclude` (once), so Factory's files stay out of
    /// `git status` without touching the user's `.gitignore`.
    pub async fn exclude(&self, pattern: &str) -> Result<(), VcsError> {
        let out = self
            .git
            .ok(
                &self.main_checkout(),
                [
                    "rev-parse",
                    "--path-format=absolute",
                    "--git-path",
                    "info/exclude",
                ],
            )
            .await?;
        let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        let io = |context: String| move |source| VcsError::Io { context, source };
        let existing = match tokio::fs::read_to_string(&path).await {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(io(format!("reading {}", path.display()))(e)),
        };
        if existing.lines().any(|l| l.trim() == pattern) {
            return Ok(());
        }
        if let Some(dir) = path.parent() {
            tokio::fs::create_dir_all(dir)
                .await
                .map_err(io(format!("creating {}", dir.display())))?;
        }
        let mut text = existing;
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(pattern);
        text.push('\n');
        tokio::fs::write(&path, text)
            .await
            .map_err(io(format!("writing {}", path.display())))
    }

    /// Removes the merge worktree (the branches stay). Call at the end of a run so only the
    /// user's checkout and any remaining task worktrees are left. Idempotent.
    pub async fn remove_merge_worktree(&self) -> Result<(), VcsError> {
        let _merging = self.merge_lock.lock().await;
        let merge_worktree = self.merge_worktree.clone();
        self.remove_worktree(&merge_worktree).await
    }

    /// Every worktree git knows, the main checkout first.
    pub(crate) async fn worktree_entries(&self) -> Result<Vec<WorktreeEntry>, VcsError> {
        let out = self
            .git
            .ok(&self.main_checkout(), ["worktree", "list", "--porcelain"])
            .await?;
        Ok(worktree::parse_porcelain(&String::from_utf8_lossy(
            &out.stdout,
        )))
    }

    /// The worktrees, read in-process from the repository's administrative files (the same
    /// entries `git worktree list` would print). Needs no `worktree_lock`: an entry that a
    /// concurrent `git worktree add` has only partly written is reported as prunable or left out,
    /// never as an error.
    pub(crate) async fn worktree_entries_in_process(&self) -> Result<Vec<WorktreeEntry>, VcsError> {
        self.read_main(read::registered_worktrees).await
    }

    /// `git worktree prune`: forgets worktrees whose directories are gone.
    pub(crate) async fn prune_worktrees(&self) -> Result<(), VcsError> {
        self.git
            .ok(&self.main_checkout(), ["worktree", "prune"])
            .await?;
        Ok(())
    }

    /// `git worktree add` of `branch` at `path` (which must not be a worktree yet), creating the
    /// branch from `base` if it does not exist. Hold `worktree_lock`.
    async fn add_worktree(&self, path: &Path, branch: &str, base: &str) -> Result<(), VcsError> {
        let (branch_owned, base_owned) = (branch.to_owned(), base.to_owned());
        let base_commit = self
            .read_main(move |repo| match read::branch_tip(repo, &branch_owned)? {
                Some(_) => Ok(None),
                None => read::resolve_commit(repo, &base_owned).map(Some),
            })
            .await?;
        let path_arg = path.as_os_str();
        match base_commit {
            None => {
                self.git
                    .ok(
                        &self.main_checkout(),
                        [
                            "worktree".as_ref(),
                            "add".as_ref(),
                            "--quiet".as_ref(),
                            path_arg,
                            branch.as_ref(),
                        ],
                    )
                    .await?;
            }
            Some(base) => {
                let base = base.to_string();
                self.git
                    .ok(
                        &self.main_checkout(),
                        [
                            "worktree".as_ref(),
                            "add".as_ref(),
                            "--quiet".as_ref(),
                            "-b".as_ref(),
                            branch.as_ref(),
                            path_arg,
                            base.as_ref(),
                        ],
                    )
                    .await?;
            }
        }
        Ok(())
    }

    /// Aborts a rebase left half-done in the worktree at `path` (Factory's own, interrupted by a
    /// crash, or the agent's): while it is in progress `HEAD` is detached, which would read as
    /// damage, and the branch is still where the rebase started.
    pub(crate) async fn abort_interrupted_rebase(&self, path: &Path) -> Result<(), VcsError> {
        let Some(at) = self.registered_checkout(path).await else {
            return Ok(());
        };
        let rebasing = ["rebase-merge", "rebase-apply"]
            .iter()
            .any(|dir| std::fs::symlink_metadata(at.git_dir.join(dir)).is_ok());
        if rebasing {
            tracing::info!(path = %path.display(), "aborting an interrupted rebase");
            let out = self.git.run(&at, ["rebase", "--abort"]).await?;
            if !out.success() {
                tracing::debug!(stderr = %out.stderr, "rebase --abort failed");
            }
        }
        Ok(())
    }

    /// Brings the checked task worktree `at` back to its branch's committed state: tracked
    /// changes are reset and untracked (not ignored) files removed. Returns what was there.
    /// Ignored files (build output) stay: they never take part in a commit or a rebase.
    /// An unresolved conflict round ([`GitRepo::conflict_round`]) is discarded too.
    pub(crate) async fn restore_committed_state(
        &self,
        at: &Checkout,
    ) -> Result<Vec<String>, VcsError> {
        let discarded = self
            .files
            .with_repo(&at.work_tree, read::dirty_paths)
            .await?;
        if discarded.is_empty() && GitRepo::merge_in_progress(at).is_none() {
            return Ok(discarded);
        }
        tracing::info!(path = %at.work_tree.display(), ?discarded, "discarding uncommitted changes before rebasing");
        self.git.ok(at, ["reset", "--hard", "--quiet"]).await?;
        self.git.ok(at, ["clean", "-fdq"]).await?;
        Ok(discarded)
    }

    /// Rebases `branch`, checked out and clean at `at`, onto `onto`; aborts on conflict.
    async fn rebase(
        &self,
        at: &Checkout,
        branch: &str,
        onto: &str,
    ) -> Result<UpdateOutcome, VcsError> {
        let (branch, onto) = (short_branch(branch).to_owned(), onto.to_owned());
        let (tip, onto_id, up_to_date) = self
            .read_main({
                let branch = branch.clone();
                move |repo| {
                    let tip = read::branch_tip(repo, &branch)?
                        .ok_or_else(|| VcsError::MissingBranch(branch.clone()))?;
                    let onto = read::resolve_commit(repo, &onto)?;
                    Ok((tip, onto, read::is_ancestor(repo, onto, tip)?))
                }
            })
            .await?;
        if up_to_date {
            return Ok(UpdateOutcome::UpToDate(CommitId(tip.to_string())));
        }
        let onto_hex = onto_id.to_string();
        let out = self
            .git
            .run(
                at,
                [
                    "rebase",
                    "--quiet",
                    "--no-autostash",
                    "--no-rebase-merges",
                    &onto_hex,
                ],
            )
            .await?;
        if !out.success() {
            let files = self.git.unmerged_paths(at).await;
            let abort = self.git.run(at, ["rebase", "--abort"]).await;
            if let Ok(abort) = &abort
                && !abort.success()
            {
                tracing::debug!(stderr = %abort.stderr, "rebase --abort failed");
            }
            return match files {
                Ok(files) if !files.is_empty() => Ok(UpdateOutcome::Conflict { files }),
                _ => Err(out.into_error()),
            };
        }
        let tip = self
            .read_main(move |repo| {
                read::branch_tip(repo, &branch)?.ok_or(VcsError::MissingBranch(branch))
            })
            .await?;
        Ok(UpdateOutcome::Rebased(CommitId(tip.to_string())))
    }

    /// Checks out the repository's submodules (recursively) in the new worktree `path`, when
    /// its branch has any: `git worktree add` leaves their directories empty.
    async fn init_submodules(&self, path: &Path) -> Result<(), VcsError> {
        if tokio::fs::symlink_metadata(path.join(".gitmodules"))
            .await
            .is_err()
        {
            return Ok(());
        }
        let Some(at) = self.registered_checkout(path).await else {
            return Ok(());
        };
        // Git does not pass a repository's own `protocol.file.allow` on to the clones a submodule
        // update makes; a repository whose configuration allows local submodules means it.
        let file_protocol = self
            .read_main(|repo| {
                Ok(repo
                    .config_snapshot()
                    .string("protocol.file.allow")
                    .map(|value| value.to_string()))
            })
            .await?;
        let mut args = Vec::new();
        if let Some(value) = file_protocol {
            args.push("-c".to_owned());
            args.push(format!("protocol.file.allow={value}"));
        }
        args.extend(["submodule", "update", "--init", "--recursive", "--quiet"].map(str::to_owned));
        self.git.ok(&at, args).await?;
        Ok(())
    }
}

/// A branch name as git's porcelain expects it (`refs/heads/` stripped).
pub(crate) fn short_branch(branch: &str) -> &str {
    branch.strip_prefix("refs/heads/").unwrap_or(branch)
}

/// An error for a request that git would misread (a name that looks like an option).
fn invalid_name(command: &str, name: &str) -> VcsError {
    VcsError::Refused {
        command: command.to_owned(),
        reason: format!("`{name}` is not a valid branch name"),
    }
}

#[async_trait]
impl Vcs for GitRepo {
    async fn branch_head(&self, branch: &str) -> Result<Option<CommitId>, VcsError> {
        let branch = branch.to_owned();
        let tip = self
            .read_main(move |repo| read::branch_tip(repo, &branch))
            .await?;
        Ok(tip.map(|id| CommitId(id.to_string())))
    }

    async fn create_worktree(&self, path: &Path, branch: &str, base: &str) -> Result<(), VcsError> {
        let path = normalize(path);
        let branch = short_branch(branch);
        if branch.is_empty() || branch.starts_with('-') {
            return Err(invalid_name("worktree add", branch));
        }
        let _admin = self.worktree_lock.lock().await;
        if tokio::fs::symlink_metadata(&path).await.is_ok() {
            // Something is there already: reuse it if it is this branch's worktree.
            let wanted = read::branch_ref(branch);
            let entries = self.worktree_entries().await?;
            if let Some(entry) = entries.iter().find(|entry| same_path(&entry.path, &path)) {
                if entry.prunable {
                    self.prune_worktrees().await?;
                } else if entry.branch.as_deref() == Some(wanted.as_str()) {
                    tracing::debug!(path = %path.display(), branch, "reusing worktree");
                    return Ok(());
                } else {
                    return Err(VcsError::Refused {
                        command: format!("worktree add {} {branch}", path.display()),
                        reason: format!(
                            "{} is already a worktree on {}; remove it first",
                            path.display(),
                            entry.branch.as_deref().unwrap_or("a detached HEAD")
                        ),
                    });
                }
            }
        }
        read::create_parent_dir(&path).await?;
        match self.add_worktree(&path, branch, base).await {
            Ok(()) => {}
            Err(VcsError::Git { .. }) => {
                // Most likely a registration whose directory was deleted by hand (at this path,
                // or elsewhere with this branch checked out): forget those and try once more.
                tracing::debug!(path = %path.display(), branch, "worktree add failed; pruning and retrying");
                self.prune_worktrees().await?;
                self.add_worktree(&path, branch, base).await?;
            }
            Err(err) => return Err(err),
        }
        self.init_submodules(&path).await
    }

    async fn remove_worktree(&self, path: &Path) -> Result<(), VcsError> {
        let path = normalize(path);
        if same_path(&path, &self.root) {
            return Err(VcsError::Refused {
                command: format!("worktree remove {}", path.display()),
                reason: "it is the main checkout".to_owned(),
            });
        }
        let _admin = self.worktree_lock.lock().await;
        if tokio::fs::symlink_metadata(&path).await.is_err() {
            // Nothing on disk; a registration may be left over.
            if self.registered_checkout(&path).await.is_none() {
                return Ok(());
            }
            return self.prune_worktrees().await;
        }
        let out = self
            .git
            .run(
                &self.main_checkout(),
                [
                    "worktree".as_ref(),
                    "remove".as_ref(),
                    "--force".as_ref(),
                    path.as_os_str(),
                ],
            )
            .await?;
        if out.success() {
            return Ok(());
        }
        // Not a worktree git knows (nothing to remove), or one git cannot remove (an error).
        let entries = self.worktree_entries().await?;
        if entries
            .iter()
            .any(|entry| !entry.prunable && same_path(&entry.path, &path))
        {
            return Err(out.into_error());
        }
        self.prune_worktrees().await
    }

    async fn list_worktrees(&self) -> Result<Vec<PathBuf>, VcsError> {
        let _admin = self.worktree_lock.lock().await;
        Ok(self
            .worktree_entries()
            .await?
            .into_iter()
            .map(|entry| entry.path)
            .collect())
    }

    async fn clear_stale_locks(
        &self,
        main: &str,
        worktrees: &[PathBuf],
        branches: &[String],
    ) -> Result<Vec<PathBuf>, VcsError> {
        self.clear_stale_locks_in(main, worktrees, branches).await
    }

    async fn worktree_damage(
        &self,
        path: &Path,
        branch: &str,
    ) -> Result<Option<WorktreeDamage>, VcsError> {
        match self.task_checkout(path, branch).await {
            Ok(_) => Ok(None),
            Err(VcsError::WorktreeDamaged { damage, .. }) => Ok(Some(damage)),
            Err(err) => Err(err),
        }
    }

    async fn commit_all(
        &self,
        worktree: &Path,
        branch: &str,
        message: &str,
    ) -> Result<Option<CommitId>, VcsError> {
        let at = self.task_checkout(worktree, branch).await?;
        if let Some(onto) = GitRepo::merge_in_progress(&at) {
            return self.commit_resolution(&at, branch, &onto, message).await;
        }
        self.git.ok(&at, ["add", "--all"]).await?;
        let out = self
            .git
            .run(
                &at,
                [
                    "commit",
                    "--quiet",
                    "--no-verify",
                    "--allow-empty-message",
                    "-m",
                    message,
                ],
            )
            .await?;
        if !out.success() {
            // `git commit` exits with 1 when there is nothing to commit (hooks are off, so
            // nothing else does); it then prints the status, in English under LC_ALL=C.
            if out.code != Some(1) {
                return Err(out.into_error());
            }
            let said = String::from_utf8_lossy(&out.stdout);
            let nothing = [
                "nothing to commit",
                "nothing added to commit",
                "no changes added to commit",
            ]
            .iter()
            .any(|phrase| said.contains(phrase) || out.stderr.contains(phrase));
            if nothing {
                return Ok(None);
            }
            // Unrecognised wording: ask git whether anything was staged.
            let staged = self
                .git
                .run(&at, ["diff", "--cached", "--quiet", "--no-ext-diff"])
                .await?;
            return match staged.code {
                Some(0) => Ok(None),
                _ => Err(out.into_error()),
            };
        }
        // The branch's tip, read from the repository: the commit just made on it.
        let branch = short_branch(branch).to_owned();
        let tip = self
            .read_main(move |repo| {
                read::branch_tip(repo, &branch)?.ok_or(VcsError::MissingBranch(branch))
            })
            .await?;
        Ok(Some(CommitId(tip.to_string())))
    }

    async fn changed_paths(&self, from: &str, to: &str) -> Result<Vec<String>, VcsError> {
        let (from, to) = (from.to_owned(), to.to_owned());
        self.read_main(move |repo| read::changed_since_fork(repo, &from, &to))
            .await
    }

    async fn update_branch(
        &self,
        worktree: &Path,
        branch: &str,
        onto: &str,
    ) -> Result<BranchUpdate, VcsError> {
        self.abort_interrupted_rebase(worktree).await?;
        let at = self.task_checkout(worktree, branch).await?;
        let discarded = self.restore_committed_state(&at).await?;
        let outcome = self.rebase(&at, branch, onto).await?;
        Ok(BranchUpdate { outcome, discarded })
    }

    async fn merge_verified(
        &self,
        branch: &str,
        verified: &CommitId,
        into: &str,
        message: &str,
    ) -> Result<MergeOutcome, VcsError> {
        self.merge(branch, verified, into, message).await
    }

    async fn start_conflict_round(
        &self,
        worktree: &Path,
        branch: &str,
        onto: &str,
    ) -> Result<ConflictRound, VcsError> {
        self.conflict_round(worktree, branch, onto).await
    }

    async fn same_change(&self, base: &str, a: &str, b: &str) -> Result<bool, VcsError> {
        self.same_change_since(base, a, b).await
    }

    async fn oversized_files(
        &self,
        base: &str,
        tip: &str,
        max_bytes: u64,
    ) -> Result<Vec<OversizedFile>, VcsError> {
        let (base, tip) = (base.to_owned(), tip.to_owned());
        self.read_main(move |repo| read::oversized_since_fork(repo, &base, &tip, max_bytes))
            .await
    }

    async fn is_merged(&self, rev: &str, into: &str) -> Result<bool, VcsError> {
        let (rev, into) = (rev.to_owned(), into.to_owned());
        self.read_main(move |repo| {
            let rev = read::resolve_commit(repo, &rev)?;
            let into = read::resolve_commit(repo, &into)?;
            read::is_ancestor(repo, rev, into)
        })
        .await
    }

    async fn branches(&self, prefix: &str) -> Result<Vec<BranchTip>, VcsError> {
        self.branches_under(prefix).await
    }

    async fn delete_branch(
        &self,
        branch: &str,
        expected: &CommitId,
    ) -> Result<BranchDeletion, VcsError> {
        self.delete_branch_if_at(branch, expected).await
    }

    async fn commits_only_on(&self, rev: &str, ignoring: &[String]) -> Result<u64, VcsError> {
        self.count_commits_only_on(rev, ignoring).await
    }

    async fn worktrees(&self) -> Result<Vec<WorktreeInfo>, VcsError> {
        self.worktree_infos().await
    }

    async fn uncommitted_paths(&self, path: &Path) -> Result<Vec<String>, VcsError> {
        self.worktree_uncommitted(path).await
    }

    async fn forget_worktree(&self, path: &Path) -> Result<(), VcsError> {
        self.forget_stale_worktree(path).await
    }

    async fn merge_conflicts(&self, rev: &str, into: &str) -> Result<Vec<String>, VcsError> {
        self.three_way_conflicts(rev, into).await
    }

    async fn checkout_status(&self) -> Result<CheckoutStatus, VcsError> {
        self.user_checkout_status().await
    }
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::path::Path;
    use std::process::Command;

    use super::*;

    /// Runs git in `dir`, isolated from the machine's configuration.
    pub(crate) fn git(dir: &Path, args: &[&str]) -> String {
        let out = Command::new("git")
            .args(args)
            .current_dir(dir)
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_AUTHOR_NAME", "U")
            .env("GIT_AUTHOR_EMAIL", "u@x")
            .env("GIT_COMMITTER_NAME", "U")
            .env("GIT_COMMITTER_EMAIL", "u@x")
            .env_remove("GIT_DIR")
            .env_remove("GIT_WORK_TREE")
            .env_remove("GIT_INDEX_FILE")
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A repository on `main` with one commit, its handle (merge worktree `.factory/merge`), and
    /// the temporary directory holding it.
    pub(crate) fn sample_repo() -> (tempfile::TempDir, PathBuf, GitRepo) {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("repo");
        std::fs::create_dir_all(&root).unwrap();
        let root = root.canonicalize().unwrap();
        git(&root, &["init", "-q", "-b", "main"]);
        std::fs::write(root.join(".git/info/exclude"), ".factory/\n").unwrap();
        std::fs::write(root.join("a.txt"), "a\n").unwrap();
        git(&root, &["add", "-A"]);
        git(&root, &["commit", "-q", "-m", "init"]);
        let identity = GitIdentity {
            name: "F".into(),
            email: "f@x".into(),
        };
        let repo = GitRepo::open(&root, identity, ".factory/merge".into()).unwrap();
        (tmp, root, repo)
    }

    /// The worktree registry read in-process says what `git worktree list` says, for every kind
    /// of entry: the main checkout, a branch, a detached HEAD, a deleted directory, a locked one.
    #[tokio::test]
    async fn worktrees_read_in_process_match_git_worktree_list() {
        let (tmp, root, repo) = sample_repo();
        let wt = |name: &str| tmp.path().join(name).to_str().unwrap().to_owned();
        git(
            &root,
            &["worktree", "add", "-q", "-b", "feature", &wt("on-branch")],
        );
        git(
            &root,
            &["worktree", "add", "-q", "--detach", &wt("detached")],
        );
        git(&root, &["worktree", "add", "-q", "-b", "gone", &wt("gone")]);
        std::fs::remove_dir_all(wt("gone")).unwrap();
        git(
            &root,
            &["worktree", "add", "-q", "-b", "locked", &wt("locked")],
        );
        git(&root, &["worktree", "lock", &wt("locked")]);

        let mut by_git = repo.worktree_entries().await.unwrap();
        let mut in_process = repo.worktree_entries_in_process().await.unwrap();
        assert_eq!(by_git.len(), 5);
        assert_eq!(in_process[0], by_git[0], "the main checkout comes first");
        by_git.sort_by(|a, b| a.path.cmp(&b.path));
        in_process.sort_by(|a, b| a.path.cmp(&b.path));
        assert_eq!(in_process, by_git);
        assert!(by_git.iter().any(|e| e.prunable));
    }

    /// Reading the registry in-process while `git worktree add`s are writing it (unserialised,
    /// straight from git) neither fails nor loses the checkout that holds `main`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn the_in_process_worktree_read_tolerates_concurrent_adds() {
        let (tmp, root, repo) = sample_repo();
        let repo = std::sync::Arc::new(repo);
        let mut adds = tokio::task::JoinSet::new();
        for i in 0..16 {
            let (root, path) = (root.clone(), tmp.path().join(format!("wt-{i}")));
            adds.spawn(async move {
                // Some may fail, racing each other inside git; that is git's problem, not ours.
                let _ = tokio::process::Command::new("git")
                    .args(["worktree", "add", "-q", "-b", &format!("b{i}")])
                    .arg(&path)
                    .current_dir(&root)
                    .env("GIT_CONFIG_GLOBAL", "/dev/null")
                    .env("GIT_CONFIG_NOSYSTEM", "1")
                    .output()
                    .await;
            });
        }
        let adding = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let mut reads = tokio::task::JoinSet::new();
        for _ in 0..3 {
            let (repo, root, adding) = (repo.clone(), root.clone(), adding.clone());
            reads.spawn(async move {
                let mut count = 0;
                while adding.load(std::sync::atomic::Ordering::SeqCst) || count < 10 {
                    let entries = repo.worktree_entries_in_process().await.unwrap();
                    let holders: Vec<_> = entries
                        .iter()
                        .filter(|e| !e.prunable && e.branch.as_deref() == Some("refs/heads/main"))
                        .map(|e| e.path.clone())
                        .collect();
                    assert_eq!(holders, std::slice::from_ref(&root));
                    count += 1;
                }
                count
            });
        }
        while let Some(done) = adds.join_next().await {
            done.unwrap();
        }
        adding.store(false, std::sync::atomic::Ordering::SeqCst);
        while let Some(done) = reads.join_next().await {
            assert!(done.unwrap() >= 10);
        }
    }
}
