//! Cleaning up after tasks: listing Factory's branches, deleting one only by compare-and-swap
//! from the commit the caller checked, counting the commits a deletion would strand, the
//! worktree registry with each entry's state, forgetting one stale registration, and the user's
//! checkout status. Deletions never follow `HEAD`: a branch any checkout has checked out (or is
//! rebasing) is left alone.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use factory_core::ports::{
    BranchDeletion, BranchTip, CheckoutStatus, CommitId, VcsError, WorktreeInfo,
};

use crate::health;
use crate::read::{self, read_err};
use crate::repo::GitRepo;
use crate::worktree::normalize;

/// A branch name git's porcelain would misread (empty, or looking like an option).
fn invalid_branch(command: &str, name: &str) -> VcsError {
    VcsError::Git {
        command: command.to_owned(),
        code: None,
        stderr: format!("`{name}` is not a valid branch name"),
    }
}

/// `refs/heads/<name>` for a short name or a full ref name.
fn full_ref(name: &str) -> String {
    read::branch_ref(name)
}

/// The short name of a full branch ref.
fn short(name: &str) -> &str {
    name.strip_prefix("refs/heads/").unwrap_or(name)
}

impl GitRepo {
    /// See [`Vcs::branches`](factory_core::ports::Vcs::branches).
    pub(crate) async fn branches_under(&self, prefix: &str) -> Result<Vec<BranchTip>, VcsError> {
        let prefix = if prefix.starts_with("refs/") {
            prefix.to_owned()
        } else {
            format!("refs/heads/{prefix}")
        };
        self.read_main(move |repo| {
            let refs = repo.references().map_err(read_err)?;
            let mut found = Vec::new();
            for reference in refs.local_branches().map_err(read_err)? {
                let Ok(mut reference) = reference else {
                    continue;
                };
                let name = reference.name().as_bstr().to_string();
                if !name.starts_with(&prefix) {
                    continue;
                }
                // A branch that does not lead to a commit is nobody's task branch.
                let Ok(commit) = reference.peel_to_commit() else {
                    continue;
                };
                found.push(BranchTip {
                    name: short(&name).to_owned(),
                    tip: CommitId(commit.id.to_string()),
                });
            }
            found.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(found)
        })
        .await
    }

    /// See [`Vcs::delete_branch`](factory_core::ports::Vcs::delete_branch).
    pub(crate) async fn delete_branch_if_at(
        &self,
        branch: &str,
        expected: &CommitId,
    ) -> Result<BranchDeletion, VcsError> {
        let name = short(branch).to_owned();
        if name.is_empty() || name.starts_with('-') {
            return Err(invalid_branch("update-ref -d", branch));
        }
        let tip = self.tip_of(&name).await?;
        match tip {
            None => return Ok(BranchDeletion::Missing),
            Some(tip) if tip != *expected => return Ok(BranchDeletion::Moved { actual: tip }),
            Some(_) => {}
        }
        let (common_dir, root, wanted) =
            (self.common_dir.clone(), self.root.clone(), full_ref(&name));
        let holder =
            tokio::task::spawn_blocking(move || checkout_holding(&common_dir, &root, &wanted))
                .await
                .map_err(read_err)?;
        if let Some(worktree) = holder {
            return Ok(BranchDeletion::CheckedOut { worktree });
        }
        // `update-ref -d <ref> <old>` is git's own compare-and-swap: it deletes the ref (loose
        // and packed) only while it still points at `old`, under the ref's lock.
        let full = full_ref(&name);
        let out = self
            .git
            .run(
                &self.main_checkout(),
                [
                    "update-ref",
                    "-m",
                    "factory: delete merged task branch",
                    "-d",
                    full.as_str(),
                    expected.0.as_str(),
                ],
            )
            .await?;
        if out.success() {
            tracing::debug!(branch = %name, %expected, "deleted branch");
            return Ok(BranchDeletion::Deleted);
        }
        match self.tip_of(&name).await? {
            None => Ok(BranchDeletion::Missing),
            Some(actual) if actual != *expected => Ok(BranchDeletion::Moved { actual }),
            Some(_) => Err(out.into_error()),
        }
    }

    /// The tip of branch `name`, read now.
    async fn tip_of(&self, name: &str) -> Result<Option<CommitId>, VcsError> {
        let name = name.to_owned();
        let tip = self
            .read_main(move |repo| read::branch_tip(repo, &name))
            .await?;
        Ok(tip.map(|id| CommitId(id.to_string())))
    }

    /// See [`Vcs::commits_only_on`](factory_core::ports::Vcs::commits_only_on).
    pub(crate) async fn count_commits_only_on(
        &self,
        rev: &str,
        ignoring: &[String],
    ) -> Result<u64, VcsError> {
        let rev_owned = rev.to_owned();
        let commit = self
            .read_main(move |repo| read::resolve_commit(repo, &rev_owned))
            .await?
            .to_string();
        let mut args: Vec<String> =
            vec!["rev-list".into(), "--count".into(), commit, "--not".into()];
        for name in ignoring {
            let name = short(name);
            if name.is_empty() || name.starts_with('-') {
                return Err(invalid_branch("rev-list", name));
            }
            // Branch names cannot hold glob characters, so each pattern matches itself only.
            args.push(format!("--exclude={name}"));
        }
        args.push("--branches".into());
        let out = self.git.ok(&self.main_checkout(), &args).await?;
        let text = String::from_utf8_lossy(&out.stdout);
        text.trim().parse().map_err(|_| VcsError::Git {
            command: out.command.clone(),
            code: out.code,
            stderr: format!("unexpected output `{}`", text.trim()),
        })
    }

    /// See [`Vcs::worktrees`](factory_core::ports::Vcs::worktrees).
    pub(crate) async fn worktree_infos(&self) -> Result<Vec<WorktreeInfo>, VcsError> {
        let _admin = self.worktree_lock.lock().await;
        let out = self
            .git
            .ok(&self.main_checkout(), ["worktree", "list", "--porcelain"])
            .await?;
        Ok(parse_worktree_infos(&String::from_utf8_lossy(&out.stdout)))
    }

    /// See [`Vcs::uncommitted_paths`](factory_core::ports::Vcs::uncommitted_paths).
    pub(crate) async fn worktree_uncommitted(&self, path: &Path) -> Result<Vec<String>, VcsError> {
        let (common_dir, path_owned) = (self.common_dir.clone(), path.to_owned());
        let linked = tokio::task::spawn_blocking(move || health::linked(&common_dir, &path_owned))
            .await
            .map_err(read_err)?;
        let at = linked.map_err(|damage| VcsError::WorktreeDamaged {
            path: path.to_owned(),
            damage,
        })?;
        self.files.with_repo(&at.work_tree, read::dirty_paths).await
    }

    /// See [`Vcs::forget_worktree`](factory_core::ports::Vcs::forget_worktree).
    pub(crate) async fn forget_stale_worktree(&self, path: &Path) -> Result<(), VcsError> {
        let path = normalize(path);
        let refuse = |why: String| VcsError::Git {
            command: format!("worktree remove {}", path.display()),
            code: None,
            stderr: why,
        };
        if tokio::fs::symlink_metadata(&path).await.is_ok() {
            return Err(refuse(format!(
                "{} still exists; only a registration whose directory is gone is forgotten",
                path.display()
            )));
        }
        let _admin = self.worktree_lock.lock().await;
        let (common_dir, path_owned) = (self.common_dir.clone(), path.clone());
        let admin =
            tokio::task::spawn_blocking(move || health::admin_dir_of(&common_dir, &path_owned))
                .await
                .map_err(read_err)?;
        let Some(admin) = admin else {
            return Ok(());
        };
        if tokio::fs::symlink_metadata(admin.join("locked"))
            .await
            .is_ok()
        {
            return Err(refuse(format!(
                "{} is locked (`git worktree lock`)",
                path.display()
            )));
        }
        // For a missing directory, `git worktree remove` drops just that registration.
        let out = self
            .git
            .run(
                &self.main_checkout(),
                ["worktree".as_ref(), "remove".as_ref(), path.as_os_str()],
            )
            .await?;
        if out.success() || tokio::fs::symlink_metadata(&admin).await.is_err() {
            return Ok(());
        }
        // An older git that will not remove a missing worktree: drop the one registration the
        // way `git worktree prune` would, and no other.
        tracing::debug!(stderr = %out.stderr, "worktree remove of a missing directory failed; removing its registration");
        tokio::fs::remove_dir_all(&admin)
            .await
            .map_err(|source| VcsError::Io {
                context: format!("removing the stale registration {}", admin.display()),
                source,
            })
    }

    /// See [`Vcs::checkout_status`](factory_core::ports::Vcs::checkout_status).
    pub(crate) async fn user_checkout_status(&self) -> Result<CheckoutStatus, VcsError> {
        Ok(CheckoutStatus {
            branch: self.current_branch().await?,
            dirty: self.dirty_paths().await?,
        })
    }
}

/// The checkout (the main one at `root`, or a linked worktree, prunable or not) that has
/// `branch_ref` checked out or is rebasing it, read from the repository's administrative files.
fn checkout_holding(common_dir: &Path, root: &Path, branch_ref: &str) -> Option<PathBuf> {
    let holds = |git_dir: &Path| {
        let head = std::fs::read_to_string(git_dir.join("HEAD")).unwrap_or_default();
        let on_it = head.trim().strip_prefix("ref:").map(str::trim) == Some(branch_ref);
        let rebasing = ["rebase-merge", "rebase-apply"].iter().any(|dir| {
            std::fs::read_to_string(git_dir.join(dir).join("head-name"))
                .is_ok_and(|name| name.trim() == branch_ref)
        });
        on_it || rebasing
    };
    if holds(common_dir) {
        return Some(root.to_owned());
    }
    let entries = std::fs::read_dir(common_dir.join("worktrees")).ok()?;
    for entry in entries.flatten() {
        let admin = entry.path();
        if holds(&admin) {
            let path = std::fs::read_to_string(admin.join("gitdir"))
                .ok()
                .and_then(|gitdir| PathBuf::from(gitdir.trim()).parent().map(Path::to_owned))
                .unwrap_or(admin);
            return Some(path);
        }
    }
    None
}

/// Parses `git worktree list --porcelain`; the main checkout comes first, as git prints it.
pub(crate) fn parse_worktree_infos(text: &str) -> Vec<WorktreeInfo> {
    let mut entries = Vec::new();
    let mut current: Option<WorktreeInfo> = None;
    for line in text.lines() {
        if let Some(path) = line.strip_prefix("worktree ") {
            entries.extend(current.take());
            current = Some(WorktreeInfo {
                path: PathBuf::from(path),
                branch: None,
                head: None,
                locked: false,
                prunable: false,
            });
        } else if let Some(entry) = current.as_mut() {
            if let Some(head) = line.strip_prefix("HEAD ") {
                let unborn = head.bytes().all(|b| b == b'0');
                entry.head = (!unborn).then(|| CommitId(head.to_owned()));
            } else if let Some(branch) = line.strip_prefix("branch ") {
                entry.branch = Some(short(branch).to_owned());
            } else if line == "locked" || line.starts_with("locked ") {
                entry.locked = true;
            } else if line == "prunable" || line.starts_with("prunable ") {
                entry.prunable = true;
            }
        }
    }
    entries.extend(current);
    entries
}

/// `GIT_ALTERNATE_OBJECT_DIRECTORIES` naming `dir`, quoted the way git reads a path that holds
/// the list separator.
pub(crate) fn alternate_objects(dir: &Path) -> OsString {
    let text = dir.to_string_lossy();
    if !text.contains(':') && !text.starts_with('"') {
        return dir.as_os_str().to_owned();
    }
    let mut quoted = String::from("\"");
    for c in text.chars() {
        if c == '"' || c == '\\' {
            quoted.push('\\');
        }
        quoted.push(c);
    }
    quoted.push('"');
    OsString::from(quoted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_heads_branches_locks_and_stale_entries() {
        let text = "worktree /repo\nHEAD 1111111111111111111111111111111111111111\nbranch refs/heads/main\n\n\
                    worktree /repo/.factory/worktrees/merge\nHEAD 2222222222222222222222222222222222222222\ndetached\n\n\
                    worktree /kept\nHEAD 3333333333333333333333333333333333333333\nbranch refs/heads/factory/001-x\nlocked on a usb disk\n\n\
                    worktree /gone\nHEAD 0000000000000000000000000000000000000000\nbranch refs/heads/new\nprunable gitdir file points to non-existent location\n\n";
        let entries = parse_worktree_infos(text);
        assert_eq!(entries.len(), 4);
        assert_eq!(entries[0].branch.as_deref(), Some("main"));
        assert_eq!(
            entries[0].head,
            Some(CommitId("1111111111111111111111111111111111111111".into()))
        );
        assert_eq!(entries[1].branch, None);
        assert!(entries[2].locked && !entries[2].prunable);
        assert_eq!(entries[2].branch.as_deref(), Some("factory/001-x"));
        assert!(entries[3].prunable && !entries[3].locked);
        assert_eq!(entries[3].head, None, "an unborn branch has no head commit");
    }

    #[test]
    fn alternates_with_a_colon_are_quoted() {
        assert_eq!(
            alternate_objects(Path::new("/repo/.git/objects")),
            OsString::from("/repo/.git/objects")
        );
        assert_eq!(
            alternate_objects(Path::new("/a:b/\"q\"/objects")),
            OsString::from("\"/a:b/\\\"q\\\"/objects\"")
        );
    }
}
