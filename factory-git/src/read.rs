//! Reads through gix. gix is synchronous and caches refs per handle, so every read opens a fresh
//! handle on a blocking thread: refs move underneath us (our own CLI writes, the user's commits).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use factory_core::ports::VcsError;
use gix::ObjectId;

/// Wraps any gix error as [`VcsError::Read`].
pub(crate) fn read_err<E>(err: E) -> VcsError
where
    E: std::error::Error + Send + Sync + 'static,
{
    VcsError::Read(Box::new(err))
}

/// Runs `f` on a fresh gix handle for the repository or worktree at `path`, on a blocking thread.
pub(crate) async fn with_repo<T, F>(path: &Path, f: F) -> Result<T, VcsError>
where
    T: Send + 'static,
    F: FnOnce(&gix::Repository) -> Result<T, VcsError> + Send + 'static,
{
    let path: PathBuf = path.to_owned();
    tokio::task::spawn_blocking(move || {
        let repo = gix::open(&path).map_err(|err| match std::fs::metadata(&path) {
            Ok(_) => read_err(err),
            Err(_) => VcsError::NotARepository(path.clone()),
        })?;
        f(&repo)
    })
    .await
    .map_err(read_err)?
}

/// The full ref name for a branch given as `name` or as `refs/heads/name`.
pub(crate) fn branch_ref(branch: &str) -> String {
    if branch.starts_with("refs/") {
        branch.to_owned()
    } else {
        format!("refs/heads/{branch}")
    }
}

/// The commit `refs/heads/<branch>` points to, or `None` if there is no such branch.
pub(crate) fn branch_tip(
    repo: &gix::Repository,
    branch: &str,
) -> Result<Option<ObjectId>, VcsError> {
    let name = branch_ref(branch);
    let Some(mut reference) = repo.try_find_reference(name.as_str()).map_err(read_err)? else {
        return Ok(None);
    };
    let commit = reference.peel_to_commit().map_err(read_err)?;
    Ok(Some(commit.id))
}

/// The commit `rev` names: a branch (preferred), another ref, or a commit id. Anything that does
/// not resolve is [`VcsError::MissingBranch`] — including every name in a repository without
/// commits.
pub(crate) fn resolve_commit(repo: &gix::Repository, rev: &str) -> Result<ObjectId, VcsError> {
    if rev.is_empty() || rev.starts_with('-') {
        return Err(VcsError::MissingBranch(rev.to_owned()));
    }
    if let Some(id) = branch_tip(repo, rev)? {
        return Ok(id);
    }
    // Other refs (tags, remote-tracking branches, HEAD) and raw commit ids.
    let Ok(id) = repo.rev_parse_single(rev) else {
        return Err(VcsError::MissingBranch(rev.to_owned()));
    };
    let commit = id
        .object()
        .map_err(read_err)?
        .peel_to_commit()
        .map_err(|_| VcsError::MissingBranch(rev.to_owned()))?;
    Ok(commit.id)
}

/// The commit `HEAD` of the repository or worktree points to.
pub(crate) fn head_commit(repo: &gix::Repository) -> Result<ObjectId, VcsError> {
    match repo.head_id() {
        Ok(id) => Ok(id.detach()),
        Err(_) => Err(VcsError::MissingBranch(
            current_branch(repo)?.unwrap_or_else(|| "HEAD".to_owned()),
        )),
    }
}

/// Whether `ancestor` is reachable from `descendant` (a commit is its own ancestor).
pub(crate) fn is_ancestor(
    repo: &gix::Repository,
    ancestor: ObjectId,
    descendant: ObjectId,
) -> Result<bool, VcsError> {
    if ancestor == descendant {
        return Ok(true);
    }
    let base = repo.merge_base(ancestor, descendant).map_err(read_err)?;
    Ok(base.is_some_and(|base| base.detach() == ancestor))
}

/// The branch `HEAD` is attached to (short name), or `None` when detached. An unborn branch is
/// still reported, as there is nothing else on it to protect.
fn current_branch(repo: &gix::Repository) -> Result<Option<String>, VcsError> {
    Ok(repo
        .head_name()
        .map_err(read_err)?
        .map(|name| name.shorten().to_string()))
}

/// The branch checked out in this repository's or worktree's `HEAD`; `None` if detached or unborn.
pub(crate) fn checked_out_branch(repo: &gix::Repository) -> Result<Option<String>, VcsError> {
    let head = repo.head().map_err(read_err)?;
    Ok(match head.kind {
        gix::head::Kind::Symbolic(reference) => Some(reference.name.shorten().to_string()),
        gix::head::Kind::Unborn(_) | gix::head::Kind::Detached { .. } => None,
    })
}

/// Paths in the worktree's checkout that hold changes git would refuse to overwrite or that a
/// user would not want touched: modified or deleted tracked files, staged changes (both sides of
/// a rename), conflicts, and untracked files that are not ignored (each file, not collapsed into
/// its directory). Sorted, unique, relative to the worktree root with `/` separators.
pub(crate) fn dirty_paths(repo: &gix::Repository) -> Result<Vec<String>, VcsError> {
    use gix::status::{Item, UntrackedFiles, tree_index::TrackRenames};

    let iter = repo
        .status(gix::progress::Discard)
        .map_err(read_err)?
        .untracked_files(UntrackedFiles::Files)
        .dirwalk_options(|options| options.empty_patterns_match_prefix(false))
        .index_worktree_rewrites(None)
        .tree_index_track_renames(TrackRenames::Disabled)
        .into_iter(Vec::<gix::bstr::BString>::new())
        .map_err(read_err)?;
    let mut paths = BTreeSet::new();
    for item in iter {
        let item = item.map_err(read_err)?;
        if let Item::IndexWorktree(change) = &item
            && change.summary().is_none()
        {
            // Only a stat refresh, or a dirwalk entry that is not untracked.
            continue;
        }
        paths.insert(item.location().to_string());
    }
    Ok(paths.into_iter().collect())
}
