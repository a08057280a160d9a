//! Reads through gix, off the async threads (gix is synchronous). Refs move underneath us (our
//! own CLI writes, the user's commits), so no read trusts a cached view of them: reads of refs
//! and objects go through the handle [`MainRepo`] keeps open (which re-reads `packed-refs`
//! before each; loose refs and objects are always read from disk), and reads of an index or a
//! work tree (status, directory walks), whose snapshots gix caches by modification time, open a
//! fresh handle ([`Files::with_repo`]).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use factory_core::ports::{OversizedFile, VcsError};
use gix::ObjectId;

/// Wraps any gix error as [`VcsError::Read`].
pub(crate) fn read_err<E>(err: E) -> VcsError
where
    E: std::error::Error + Send + Sync + 'static,
{
    VcsError::Read(Box::new(err))
}

/// The size of [`MainRepo`]'s object cache.
const OBJECT_CACHE_BYTES: usize = 1024 * 1024;

/// A job for a [`Reader`]'s thread, given the thread's state.
type Job<S> = Box<dyn FnOnce(&mut S) + Send>;

/// A thread of factory-git's own that runs jobs one at a time: gix is synchronous, so its reads
/// run off the async threads. One thread rather than the runtime's blocking pool keeps the
/// state it holds (an open repository) and the memory its reads allocate in one place, instead
/// of spreading them over every pool thread (and a malloc arena each). Started on first use,
/// again if a job panicked; ends when this is dropped.
#[derive(Debug)]
pub(crate) struct Reader<S> {
    name: &'static str,
    jobs: std::sync::Mutex<Option<std::sync::mpsc::Sender<Job<S>>>>,
}

impl<S: Default + 'static> Reader<S> {
    /// A reader whose thread is called `name`.
    pub(crate) fn new(name: &'static str) -> Reader<S> {
        Reader {
            name,
            jobs: std::sync::Mutex::new(None),
        }
    }

    /// Runs `f` on the thread, with its state, and returns what it returns.
    pub(crate) async fn run<T, F>(&self, f: F) -> Result<T, VcsError>
    where
        T: Send + 'static,
        F: FnOnce(&mut S) -> Result<T, VcsError> + Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.submit(Box::new(move |state: &mut S| {
            let _ = tx.send(f(state));
        }))?;
        rx.await.map_err(read_err)?
    }

    /// Hands `job` to the thread, starting it if it is not running.
    fn submit(&self, job: Job<S>) -> Result<(), VcsError> {
        let mut jobs = self
            .jobs
            .lock()
            .map_err(|_| VcsError::Read(format!("{}: lock poisoned", self.name).into()))?;
        let job = match jobs.as_ref() {
            Some(tx) => match tx.send(job) {
                Ok(()) => return Ok(()),
                // The thread is gone (a job panicked): start another.
                Err(std::sync::mpsc::SendError(job)) => job,
            },
            None => job,
        };
        let (tx, rx) = std::sync::mpsc::channel::<Job<S>>();
        std::thread::Builder::new()
            .name(self.name.to_owned())
            .spawn(move || {
                let mut state = S::default();
                while let Ok(job) = rx.recv() {
                    job(&mut state);
                }
            })
            .map_err(|source| VcsError::Io {
                context: format!("starting the {} thread", self.name),
                source,
            })?;
        tx.send(job)
            .map_err(|_| VcsError::Read(format!("the {} thread ended", self.name).into()))?;
        *jobs = Some(tx);
        Ok(())
    }
}

/// The main repository kept open on a [`Reader`] of its own, which runs reads of refs and
/// objects on it: opening a repository (its configuration files, ownership checks, `commondir`,
/// alternates) costs more than most reads.
#[derive(Debug)]
pub(crate) struct MainRepo {
    root: PathBuf,
    reader: Reader<Option<gix::Repository>>,
}

impl MainRepo {
    /// A handle on the repository at `root`, opened on first use.
    pub(crate) fn new(root: PathBuf) -> MainRepo {
        MainRepo {
            root,
            reader: Reader::new("factory-git-main"),
        }
    }

    /// Runs `f` on the open handle, after re-reading `packed-refs`: what `f` sees of refs and
    /// objects is the repository as it is now, as with a fresh handle. Not for an index or a
    /// work tree: see [`Files::with_repo`].
    pub(crate) async fn run<T, F>(&self, f: F) -> Result<T, VcsError>
    where
        T: Send + 'static,
        F: FnOnce(&gix::Repository) -> Result<T, VcsError> + Send + 'static,
    {
        let root = self.root.clone();
        self.reader.run(move |slot| run_on(slot, &root, f)).await
    }
}

/// Opens the handle in `slot` if needed, refreshes its view of `packed-refs`, and runs `f`.
fn run_on<T>(
    slot: &mut Option<gix::Repository>,
    root: &Path,
    f: impl FnOnce(&gix::Repository) -> Result<T, VcsError>,
) -> Result<T, VcsError> {
    let repo = match slot {
        Some(repo) => repo,
        None => {
            let mut repo = open(root)?;
            // Objects never change, so a cache of them stays right however refs move: the
            // commits near main's tip are read by several calls for every task.
            repo.object_cache_size(OBJECT_CACHE_BYTES);
            slot.insert(repo)
        }
    };
    if let Err(err) = repo.refs.force_refresh_packed_buffer() {
        // Fails when there is no packed-refs file (lookups then find none), or it is unreadable.
        if std::fs::symlink_metadata(repo.refs.packed_refs_path()).is_ok() {
            return Err(read_err(err));
        }
    }
    f(repo)
}

/// Reads of work trees, indexes and administrative files (status walks, worktree health, the
/// worktree registry) on a [`Reader`] of their own, each on a fresh handle where one is needed.
#[derive(Debug)]
pub(crate) struct Files {
    reader: Reader<()>,
}

impl Files {
    /// The reader; its thread starts on first use.
    pub(crate) fn new() -> Files {
        Files {
            reader: Reader::new("factory-git-files"),
        }
    }

    /// Runs `f` on the thread.
    pub(crate) async fn run<T, F>(&self, f: F) -> Result<T, VcsError>
    where
        T: Send + 'static,
        F: FnOnce() -> Result<T, VcsError> + Send + 'static,
    {
        self.reader.run(move |()| f()).await
    }

    /// Runs `f` on a fresh gix handle for the repository or worktree at `path`, on the thread.
    pub(crate) async fn with_repo<T, F>(&self, path: &Path, f: F) -> Result<T, VcsError>
    where
        T: Send + 'static,
        F: FnOnce(&gix::Repository) -> Result<T, VcsError> + Send + 'static,
    {
        let path = path.to_owned();
        self.run(move || f(&open(&path)?)).await
    }
}

/// A fresh gix handle for the repository or worktree at `path`.
fn open(path: &Path) -> Result<gix::Repository, VcsError> {
    gix::open(path).map_err(|err| match std::fs::metadata(path) {
        Ok(_) => read_err(err),
        Err(_) => VcsError::NotARepository(path.to_owned()),
    })
}

/// Runs `f` on a fresh gix handle for the repository or worktree at `path`, on a blocking thread.
#[cfg(test)]
pub(crate) async fn with_repo<T, F>(path: &Path, f: F) -> Result<T, VcsError>
where
    T: Send + 'static,
    F: FnOnce(&gix::Repository) -> Result<T, VcsError> + Send + 'static,
{
    let path: PathBuf = path.to_owned();
    tokio::task::spawn_blocking(move || f(&open(&path)?))
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

/// One path a diff between two commits touches, as `git diff --name-status --no-renames` would
/// list it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ChangedPath {
    /// The path did not exist on the old side (git's status `A`).
    pub(crate) added: bool,
    /// Relative to the repository root, `/`-separated.
    pub(crate) path: String,
}

/// The entries that differ between the trees of commits `old` and `new`, recursively.
fn tree_changes(
    repo: &gix::Repository,
    old: ObjectId,
    new: ObjectId,
) -> Result<Vec<gix::diff::tree::recorder::Change>, VcsError> {
    let tree_of = |commit: ObjectId| -> Result<gix::Tree<'_>, VcsError> {
        let tree = repo
            .find_commit(commit)
            .map_err(read_err)?
            .tree_id()
            .map_err(read_err)?;
        repo.find_tree(tree).map_err(read_err)
    };
    let (old_tree, new_tree) = (tree_of(old)?, tree_of(new)?);
    let mut recorder = gix::diff::tree::Recorder::default();
    gix::diff::tree(
        gix::objs::TreeRefIter::from_bytes(&old_tree.data, old_tree.id.kind()),
        gix::objs::TreeRefIter::from_bytes(&new_tree.data, new_tree.id.kind()),
        gix::diff::tree::State::default(),
        &repo.objects,
        &mut recorder,
    )
    .map_err(read_err)?;
    Ok(recorder.records)
}

/// The files that differ between the trees of commits `old` and `new`, without rename detection:
/// what `git diff --name-status --no-renames old new` lists, in the same (path) order. A path
/// that changes from a file to a directory appears as the file's deletion plus each added file.
pub(crate) fn changed_files(
    repo: &gix::Repository,
    old: ObjectId,
    new: ObjectId,
) -> Result<Vec<ChangedPath>, VcsError> {
    use gix::diff::tree::recorder::Change;

    let mut changed: Vec<ChangedPath> = tree_changes(repo, old, new)?
        .into_iter()
        .filter_map(|change| {
            let (added, path) = match change {
                Change::Addition {
                    entry_mode, path, ..
                } => (!entry_mode.is_tree()).then_some((true, path))?,
                Change::Deletion {
                    entry_mode, path, ..
                } => (!entry_mode.is_tree()).then_some((false, path))?,
                Change::Modification {
                    previous_entry_mode,
                    entry_mode,
                    path,
                    ..
                } => {
                    if previous_entry_mode.is_tree() && entry_mode.is_tree() {
                        return None;
                    }
                    (false, path)
                }
            };
            Some(ChangedPath {
                added,
                path: path.to_string(),
            })
        })
        .collect();
    // The traversal is breadth-first; git lists depth-first, which for full paths is byte order
    // (a directory's entries sort as if its name ended in `/`).
    changed.sort_by(|a, b| a.path.as_bytes().cmp(b.path.as_bytes()));
    Ok(changed)
}

/// The paths `to` changes since it forked from `from`, as `git diff --name-only from...to`
/// lists them.
pub(crate) fn changed_since_fork(
    repo: &gix::Repository,
    from: &str,
    to: &str,
) -> Result<Vec<String>, VcsError> {
    let (base, to_id) = fork_point(repo, from, to)?;
    Ok(changed_files(repo, base, to_id)?
        .into_iter()
        .map(|change| change.path)
        .collect())
}

/// Where `to` forked from `from` (their merge base), and `to` itself: the two ends of
/// `git diff from...to`.
fn fork_point(
    repo: &gix::Repository,
    from: &str,
    to: &str,
) -> Result<(ObjectId, ObjectId), VcsError> {
    let from_id = resolve_commit(repo, from)?;
    let to_id = resolve_commit(repo, to)?;
    let Some(base) = repo.merge_base(from_id, to_id).map_err(read_err)? else {
        return Err(VcsError::Refused {
            command: format!("diff {from}...{to}"),
            reason: format!("{from} and {to} have no common ancestor"),
        });
    };
    Ok((base.detach(), to_id))
}

/// The files `to` adds or grows since it forked from `from` whose new size is over `max_bytes`
/// (see [`Vcs::oversized_files`](factory_core::ports::Vcs::oversized_files)). Sizes come from the
/// object headers: no blob is read.
pub(crate) fn oversized_since_fork(
    repo: &gix::Repository,
    from: &str,
    to: &str,
    max_bytes: u64,
) -> Result<Vec<OversizedFile>, VcsError> {
    use gix::diff::tree::recorder::Change;

    let (base, to_id) = fork_point(repo, from, to)?;
    let size = |id: ObjectId| -> Result<u64, VcsError> {
        Ok(repo.find_header(id).map_err(read_err)?.size())
    };
    let mut found = Vec::new();
    for change in tree_changes(repo, base, to_id)? {
        let (path, new, old) = match change {
            Change::Addition {
                entry_mode,
                oid,
                path,
                ..
            } if entry_mode.is_blob() => (path, oid, None),
            Change::Modification {
                previous_entry_mode,
                previous_oid,
                entry_mode,
                oid,
                path,
            } if entry_mode.is_blob() => (
                path,
                oid,
                previous_entry_mode.is_blob().then_some(previous_oid),
            ),
            _ => continue,
        };
        let bytes = size(new)?;
        if bytes <= max_bytes {
            continue;
        }
        if let Some(old) = old
            && size(old)? >= bytes
        {
            // Already this big before the change, and not grown by it.
            continue;
        }
        found.push(OversizedFile {
            path: path.to_string(),
            bytes,
        });
    }
    found.sort_by(|a, b| a.path.as_bytes().cmp(b.path.as_bytes()));
    Ok(found)
}

/// Whether the worktree is exactly a detached checkout of `at` with nothing else in it: no
/// operation in progress, index equal to `at`'s tree, no modified, untracked or ignored files.
/// What `git checkout --detach --force <at> && git clean -fdx` would leave, so both can be
/// skipped.
pub(crate) fn is_pristine_checkout_of(
    repo: &gix::Repository,
    at: ObjectId,
) -> Result<bool, VcsError> {
    use gix::dir::walk::EmissionMode;
    use gix::status::{Item, index_worktree};

    if repo.head_name().map_err(read_err)?.is_some()
        || repo.head_id().map(|id| id.detach()).ok() != Some(at)
        || repo.state().is_some()
    {
        return Ok(false);
    }
    let dirwalk = repo
        .dirwalk_options()
        .map_err(read_err)?
        .emit_untracked(EmissionMode::CollapseDirectory)
        .emit_ignored(Some(EmissionMode::CollapseDirectory))
        .emit_empty_directories(false);
    let iter = repo
        .status(gix::progress::Discard)
        .map_err(read_err)?
        .index_worktree_options_mut(|options| options.dirwalk_options = Some(dirwalk))
        .index_worktree_rewrites(None)
        .tree_index_track_renames(gix::status::tree_index::TrackRenames::Disabled)
        .into_iter(Vec::<gix::bstr::BString>::new())
        .map_err(read_err)?;
    for item in iter {
        let stale = match item.map_err(read_err)? {
            // Only the index's cached file metadata is out of date.
            Item::IndexWorktree(index_worktree::Item::Modification {
                status: gix::status::plumbing::index_as_worktree::EntryStatus::NeedsUpdate(_),
                ..
            }) => false,
            Item::IndexWorktree(index_worktree::Item::DirectoryContents { entry, .. }) => {
                !matches!(
                    entry.status,
                    gix::dir::entry::Status::Tracked | gix::dir::entry::Status::Pruned
                )
            }
            _ => true,
        };
        if stale {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The checkouts of the repository (the main one first, then each linked worktree) as
/// `git worktree list --porcelain` reports them, read from the repository's administrative
/// files. `repo` must be the main repository. An entry whose `gitdir` file cannot be read (one
/// `git worktree add` is still writing, or one being removed) is left out.
pub(crate) fn registered_worktrees(
    repo: &gix::Repository,
) -> Result<Vec<crate::worktree::WorktreeEntry>, VcsError> {
    use crate::worktree::WorktreeEntry;

    let mut entries = Vec::new();
    if let Some(workdir) = repo.workdir() {
        entries.push(WorktreeEntry {
            path: workdir.to_owned(),
            branch: repo
                .head_name()
                .map_err(read_err)?
                .map(|name| name.as_bstr().to_string()),
            prunable: false,
        });
    }
    for proxy in repo.worktrees().map_err(read_err)? {
        let Ok(path) = proxy.base() else {
            continue;
        };
        let branch = std::fs::read_to_string(proxy.git_dir().join("HEAD"))
            .ok()
            .and_then(|head| head.strip_prefix("ref:").map(|name| name.trim().to_owned()));
        entries.push(WorktreeEntry {
            path,
            branch,
            prunable: proxy.is_prunable(),
        });
    }
    Ok(entries)
}

/// Creates `path`'s parent directory (and its ancestors) so git can create `path` itself.
pub(crate) async fn create_parent_dir(path: &std::path::Path) -> Result<(), VcsError> {
    let Some(parent) = path.parent() else {
        return Ok(());
    };
    tokio::fs::create_dir_all(parent)
        .await
        .map_err(|source| VcsError::Io {
            context: format!("creating {}", parent.display()),
            source,
        })
}

/// Untracked, not ignored repositories inside the worktree (a directory holding its own `.git`
/// that is not a submodule the index tracks), as worktree-relative paths. `git add --all` would
/// record each as a gitlink to a commit nobody else has.
pub(crate) fn nested_repositories(repo: &gix::Repository) -> Result<Vec<String>, VcsError> {
    use gix::dir::entry::{Kind, Status};
    use gix::dir::walk::EmissionMode;

    let index = repo.index_or_empty().map_err(read_err)?;
    let options = repo
        .dirwalk_options()
        .map_err(read_err)?
        .emit_untracked(EmissionMode::Matching)
        .emit_ignored(None)
        .recurse_repositories(false)
        .empty_patterns_match_prefix(false);
    let interrupt = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let iter = repo
        .dirwalk_iter(
            index,
            Vec::<gix::bstr::BString>::new(),
            interrupt.into(),
            options,
        )
        .map_err(read_err)?;
    let mut nested = Vec::new();
    for item in iter {
        let item = item.map_err(read_err)?;
        if item.entry.disk_kind == Some(Kind::Repository) && item.entry.status == Status::Untracked
        {
            nested.push(item.entry.rela_path.to_string());
        }
    }
    nested.sort();
    Ok(nested)
}

/// The first-parent commit of `into` that brought `commit` in: walking `into`'s first-parent
/// chain from its tip, the last commit that still contains `commit` (the merge commit, or
/// `commit` itself when it was fast-forwarded onto the chain). `None` when `commit` is not
/// reachable from `into`.
pub(crate) fn first_parent_containing(
    repo: &gix::Repository,
    commit: ObjectId,
    into: ObjectId,
) -> Result<Option<ObjectId>, VcsError> {
    if !is_ancestor(repo, commit, into)? {
        return Ok(None);
    }
    let mut containing = into;
    loop {
        if containing == commit {
            return Ok(Some(containing));
        }
        let parent = repo
            .find_commit(containing)
            .map_err(read_err)?
            .parent_ids()
            .next()
            .map(|id| id.detach());
        match parent {
            Some(parent) if is_ancestor(repo, commit, parent)? => containing = parent,
            _ => return Ok(Some(containing)),
        }
    }
}

/// The operation in progress in the checkout whose git directory is `git_dir` that moving
/// `into_ref` (a full ref name) would interfere with, described for a message: a rebase of
/// `into`; a merge, cherry-pick or revert being made on it (`head_on_into`: the checkout's
/// `HEAD` is `into`); a bisect started from it. `None` when there is none, including when the
/// user is rebasing or merging another branch: moving `into` does not disturb that.
pub(crate) fn operation_on(git_dir: &Path, into_ref: &str, head_on_into: bool) -> Option<String> {
    let short = into_ref.strip_prefix("refs/heads/").unwrap_or(into_ref);
    for dir in ["rebase-merge", "rebase-apply"] {
        let head_name = std::fs::read_to_string(git_dir.join(dir).join("head-name"));
        if head_name.is_ok_and(|name| name.trim() == into_ref) {
            return Some(format!("a rebase of `{short}`"));
        }
    }
    if head_on_into {
        for (file, what) in [
            ("MERGE_HEAD", "a merge"),
            ("CHERRY_PICK_HEAD", "a cherry-pick"),
            ("REVERT_HEAD", "a revert"),
        ] {
            if std::fs::symlink_metadata(git_dir.join(file)).is_ok() {
                return Some(format!("{what} into `{short}`"));
            }
        }
        if std::fs::symlink_metadata(git_dir.join("sequencer")).is_ok() {
            return Some(format!("a cherry-pick or revert sequence on `{short}`"));
        }
    }
    let bisect_start = std::fs::read_to_string(git_dir.join("BISECT_START"));
    if bisect_start.is_ok_and(|start| start.trim() == short || start.trim() == into_ref) {
        return Some(format!("a bisect started from `{short}`"));
    }
    None
}
