//! [`GitRepo`]: the handle the orchestrator holds, and its [`Vcs`] implementation.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use factory_core::ports::{CommitId, GitIdentity, MergeOutcome, UpdateOutcome, Vcs, VcsError};

use crate::cli::GitCli;
use crate::read::{self, read_err, with_repo};
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
    pub(crate) merge_lock: tokio::sync::Mutex<()>,
    /// Held while reading or changing the worktree list: `git worktree list` fails on an entry
    /// that a concurrent `git worktree add` is still writing.
    pub(crate) worktree_lock: tokio::sync::Mutex<()>,
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
        let repo = gix::discover(path).map_err(|_| not_a_repo())?;
        let main = repo.main_repo().map_err(read_err)?;
        let root = normalize(main.workdir().ok_or_else(not_a_repo)?);
        let merge_worktree = if merge_worktree.is_absolute() {
            normalize(&merge_worktree)
        } else {
            normalize(&root.join(merge_worktree))
        };
        tracing::debug!(root = %root.display(), merge_worktree = %merge_worktree.display(), "opened repository");
        Ok(GitRepo {
            root,
            git: GitCli::new(identity),
            merge_worktree,
            merge_lock: tokio::sync::Mutex::new(()),
            worktree_lock: tokio::sync::Mutex::new(()),
        })
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
        with_repo(&self.root, read::checked_out_branch).await
    }

    /// What the user has not committed in their checkout: modified or deleted tracked files,
    /// staged changes, conflicts, and untracked files that are not ignored. Sorted paths
    /// relative to [`root`](GitRepo::root). `.factory/` is ignored through `.git/info/exclude`.
    pub async fn dirty_paths(&self) -> Result<Vec<String>, VcsError> {
        with_repo(&self.root, read::dirty_paths).await
    }

    /// Adds `pattern` to the repository's `info/exclude` (once), so Factory's files stay out of
    /// `git status` without touching the user's `.gitignore`.
    pub async fn exclude(&self, pattern: &str) -> Result<(), VcsError> {
        let out = self
            .git
            .ok(
                &self.root,
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
            .ok(&self.root, ["worktree", "list", "--porcelain"])
            .await?;
        Ok(worktree::parse_porcelain(&String::from_utf8_lossy(
            &out.stdout,
        )))
    }

    /// `git worktree prune`: forgets worktrees whose directories are gone.
    pub(crate) async fn prune_worktrees(&self) -> Result<(), VcsError> {
        self.git.ok(&self.root, ["worktree", "prune"]).await?;
        Ok(())
    }

    /// Resolves `rev` to a commit in this repository.
    pub(crate) async fn resolve(&self, rev: &str) -> Result<gix::ObjectId, VcsError> {
        let rev = rev.to_owned();
        with_repo(&self.root, move |repo| read::resolve_commit(repo, &rev)).await
    }
}

/// A branch name as git's porcelain expects it (`refs/heads/` stripped).
fn short_branch(branch: &str) -> &str {
    branch.strip_prefix("refs/heads/").unwrap_or(branch)
}

/// An error for a request that git would misread (a name that looks like an option).
fn invalid_name(command: &str, name: &str) -> VcsError {
    VcsError::Git {
        command: command.to_owned(),
        code: None,
        stderr: format!("`{name}` is not a valid branch name"),
    }
}

#[async_trait]
impl Vcs for GitRepo {
    async fn branch_head(&self, branch: &str) -> Result<Option<CommitId>, VcsError> {
        let branch = branch.to_owned();
        let tip = with_repo(&self.root, move |repo| read::branch_tip(repo, &branch)).await?;
        Ok(tip.map(|id| CommitId(id.to_string())))
    }

    async fn create_worktree(&self, path: &Path, branch: &str, base: &str) -> Result<(), VcsError> {
        let path = normalize(path);
        let branch = short_branch(branch);
        if branch.is_empty() || branch.starts_with('-') {
            return Err(invalid_name("worktree add", branch));
        }
        let wanted = read::branch_ref(branch);
        let _admin = self.worktree_lock.lock().await;
        let entries = self.worktree_entries().await?;
        if let Some(entry) = entries.iter().find(|entry| same_path(&entry.path, &path)) {
            if entry.prunable {
                self.prune_worktrees().await?;
            } else if entry.branch.as_deref() == Some(wanted.as_str()) {
                tracing::debug!(path = %path.display(), branch, "reusing worktree");
                return Ok(());
            } else {
                return Err(VcsError::Git {
                    command: format!("worktree add {} {branch}", path.display()),
                    code: None,
                    stderr: format!(
                        "{} is already a worktree on {}; remove it first",
                        path.display(),
                        entry.branch.as_deref().unwrap_or("a detached HEAD")
                    ),
                });
            }
        }
        if let Some(parent) = path.parent() {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(|source| VcsError::Io {
                    context: format!("creating {}", parent.display()),
                    source,
                })?;
        }
        let (branch_owned, base_owned) = (branch.to_owned(), base.to_owned());
        let base_commit = with_repo(&self.root, move |repo| {
            match read::branch_tip(repo, &branch_owned)? {
                Some(_) => Ok(None),
                None => read::resolve_commit(repo, &base_owned).map(Some),
            }
        })
        .await?;
        let path_arg = path.as_os_str();
        match base_commit {
            None => {
                self.git
                    .ok(
                        &self.root,
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
                        &self.root,
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

    async fn remove_worktree(&self, path: &Path) -> Result<(), VcsError> {
        let _admin = self.worktree_lock.lock().await;
        let entries = self.worktree_entries().await?;
        if let Some(entry) = entries.iter().find(|entry| same_path(&entry.path, path)) {
            if same_path(&entry.path, &self.root) {
                return Err(VcsError::Git {
                    command: format!("worktree remove {}", path.display()),
                    code: None,
                    stderr: "refusing to remove the main checkout".to_owned(),
                });
            }
            if !entry.prunable {
                self.git
                    .ok(
                        &self.root,
                        [
                            "worktree".as_ref(),
                            "remove".as_ref(),
                            "--force".as_ref(),
                            entry.path.as_os_str(),
                        ],
                    )
                    .await?;
            }
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

    async fn commit_all(
        &self,
        worktree: &Path,
        message: &str,
    ) -> Result<Option<CommitId>, VcsError> {
        self.git.ok(worktree, ["add", "--all"]).await?;
        let staged = self
            .git
            .run(worktree, ["diff", "--cached", "--quiet", "--no-ext-diff"])
            .await?;
        match staged.code {
            Some(0) => return Ok(None),
            Some(1) => {}
            _ => return Err(staged.into_error()),
        }
        self.git
            .ok(
                worktree,
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
        let head = with_repo(worktree, read::head_commit).await?;
        Ok(Some(CommitId(head.to_string())))
    }

    async fn changed_paths(&self, from: &str, to: &str) -> Result<Vec<String>, VcsError> {
        let from = self.resolve(from).await?.to_string();
        let to = self.resolve(to).await?.to_string();
        let out = self
            .git
            .ok(
                &self.root,
                [
                    "diff",
                    "--name-only",
                    "--no-renames",
                    "-z",
                    &format!("{from}...{to}"),
                ],
            )
            .await?;
        Ok(out.nul_separated())
    }

    async fn update_branch(&self, worktree: &Path, onto: &str) -> Result<UpdateOutcome, VcsError> {
        let onto_id = self.resolve(onto).await?;
        let up_to_date = with_repo(worktree, move |repo| {
            let head = read::head_commit(repo)?;
            read::is_ancestor(repo, onto_id, head)
        })
        .await?;
        if up_to_date {
            return Ok(UpdateOutcome::UpToDate);
        }
        let onto_hex = onto_id.to_string();
        let out = self
            .git
            .run(
                worktree,
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
            let files = self.git.unmerged_paths(worktree).await;
            let abort = self.git.run(worktree, ["rebase", "--abort"]).await;
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
        let head = with_repo(worktree, read::head_commit).await?;
        Ok(UpdateOutcome::Rebased(CommitId(head.to_string())))
    }

    async fn merge_no_ff(
        &self,
        branch: &str,
        into: &str,
        message: &str,
    ) -> Result<MergeOutcome, VcsError> {
        self.merge(branch, into, message).await
    }

    async fn is_merged(&self, branch: &str, into: &str) -> Result<bool, VcsError> {
        let (branch, into) = (branch.to_owned(), into.to_owned());
        with_repo(&self.root, move |repo| {
            let branch = read::resolve_commit(repo, &branch)?;
            let into = read::resolve_commit(repo, &into)?;
            read::is_ancestor(repo, branch, into)
        })
        .await
    }
}
