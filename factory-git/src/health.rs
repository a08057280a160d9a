//! Is this directory still the task's worktree on the task's branch? Answered from the main
//! repository's side (its worktree registry), never by asking git to discover a repository from
//! the directory: an agent that deleted the `.git` file, ran `git init`, or checked out another
//! branch must not make Factory's next command act on the user's repository or another branch.

use std::path::{Path, PathBuf};

use factory_core::ports::{VcsError, WorktreeDamage};

use crate::cli::Checkout;
use crate::read::{self, Files, read_err};
use crate::worktree::{normalize, same_path};

/// The administrative directory (`<common>/worktrees/<name>`) git keeps for the linked worktree
/// at `path`, found by reading each registration's `gitdir` file; `None` when git has no
/// registration for that directory.
pub(crate) fn admin_dir_of(common_dir: &Path, path: &Path) -> Option<PathBuf> {
    let entries = std::fs::read_dir(common_dir.join("worktrees")).ok()?;
    for entry in entries.flatten() {
        let admin = entry.path();
        let Ok(gitdir) = std::fs::read_to_string(admin.join("gitdir")) else {
            continue;
        };
        let dot_git = PathBuf::from(gitdir.trim());
        if dot_git
            .parent()
            .is_some_and(|registered| same_path(registered, path))
        {
            return Some(admin);
        }
    }
    None
}

/// Checks the linked worktree at `path` against the registry in `common_dir` and, when it is
/// healthy and on `branch_ref`, returns how to name it to git. The outer error is a failure to
/// read; the inner one is what is wrong with the worktree.
pub(crate) fn inspect(
    common_dir: &Path,
    path: &Path,
    branch_ref: &str,
) -> Result<Result<Checkout, WorktreeDamage>, VcsError> {
    let at = match linked(common_dir, path) {
        Ok(at) => at,
        Err(damage) => return Ok(Err(damage)),
    };
    let (admin, path) = (at.git_dir, at.work_tree);
    let head = std::fs::read_to_string(admin.join("HEAD")).unwrap_or_default();
    match head.trim().strip_prefix("ref:").map(str::trim) {
        Some(name) if name == branch_ref => {}
        Some(name) => {
            return Ok(Err(WorktreeDamage::WrongBranch {
                head: name.to_owned(),
            }));
        }
        None => return Ok(Err(WorktreeDamage::DetachedHead)),
    }
    let repo = gix::open(&path).map_err(read_err)?;
    if let Some(nested) = read::nested_repositories(&repo)?.into_iter().next() {
        return Ok(Err(WorktreeDamage::NestedRepository { path: nested }));
    }
    Ok(Ok(Checkout {
        git_dir: admin,
        work_tree: path,
    }))
}

/// Whether the directory at `path` is still a linked worktree registered in `common_dir`, its
/// `.git` file leading to that registration (whatever it has checked out); how to name it to
/// git if so.
pub(crate) fn linked(common_dir: &Path, path: &Path) -> Result<Checkout, WorktreeDamage> {
    let path = normalize(path);
    match std::fs::symlink_metadata(&path) {
        Ok(meta) if meta.is_dir() => {}
        _ => return Err(WorktreeDamage::Missing),
    }
    let Some(admin) = admin_dir_of(common_dir, &path) else {
        return Err(not_a_worktree(
            "git has no worktree registered at this path",
        ));
    };
    let dot_git = path.join(".git");
    match std::fs::symlink_metadata(&dot_git) {
        Err(_) => return Err(not_a_worktree("its .git file is gone")),
        Ok(meta) if meta.is_dir() => {
            return Err(not_a_worktree(
                "its .git is a directory: a repository was created in its place",
            ));
        }
        Ok(_) => {}
    }
    let points_to = std::fs::read_to_string(&dot_git)
        .ok()
        .and_then(|text| {
            text.lines()
                .next()
                .and_then(|line| line.strip_prefix("gitdir:"))
                .map(|target| target.trim().to_owned())
        })
        .map(|target| {
            let target = PathBuf::from(target);
            if target.is_absolute() {
                target
            } else {
                path.join(target)
            }
        });
    match points_to {
        Some(target) if same_path(&target, &admin) => {}
        Some(target) => {
            return Err(not_a_worktree(&format!(
                "its .git file points to {} instead of {}",
                target.display(),
                admin.display()
            )));
        }
        None => return Err(not_a_worktree("its .git file is not a gitdir link")),
    }
    Ok(Checkout {
        git_dir: admin,
        work_tree: path,
    })
}

/// [`WorktreeDamage::NotAWorktree`] with `detail`.
fn not_a_worktree(detail: &str) -> WorktreeDamage {
    WorktreeDamage::NotAWorktree {
        detail: detail.to_owned(),
    }
}

/// [`inspect`] on the `files` reader's thread, with damage turned into
/// [`VcsError::WorktreeDamaged`].
pub(crate) async fn checked(
    files: &Files,
    common_dir: &Path,
    path: &Path,
    branch_ref: &str,
) -> Result<Checkout, VcsError> {
    let (common_dir, path_owned, branch_ref) = (
        common_dir.to_owned(),
        path.to_owned(),
        branch_ref.to_owned(),
    );
    let found = files
        .run(move || inspect(&common_dir, &path_owned, &branch_ref))
        .await?;
    found.map_err(|damage| {
        tracing::warn!(path = %path.display(), %damage, "worktree damaged");
        VcsError::WorktreeDamaged {
            path: path.to_owned(),
            damage,
        }
    })
}
