//! The worktrees git knows about, parsed from `git worktree list --porcelain`, and path
//! normalisation so a worktree path given by a caller can be compared with git's.

use std::path::{Path, PathBuf};

/// One entry of `git worktree list --porcelain`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WorktreeEntry {
    /// The worktree's top-level directory, as git records it.
    pub(crate) path: PathBuf,
    /// The full ref checked out (`refs/heads/...`), `None` when detached or bare.
    pub(crate) branch: Option<String>,
    /// Git reports the worktree's directory as gone; `git worktree prune` will drop it.
    pub(crate) prunable: bool,
}

/// Parses porcelain output; the main checkout comes first, as git prints it.
pub(crate) fn parse_porcelain(text: &str) -> Vec<WorktreeEntry> {
    let mut entries = Vec::new();
    let mut current: Option<WorktreeEntry> = None;
    for line in text.lines() {
        if let Some(path) = line.strip_prefix("worktree ") {
            entries.extend(current.take());
            current = Some(WorktreeEntry {
                path: PathBuf::from(path),
                branch: None,
                prunable: false,
            });
        } else if let Some(entry) = current.as_mut() {
            if let Some(branch) = line.strip_prefix("branch ") {
                entry.branch = Some(branch.to_owned());
            } else if line == "prunable" || line.starts_with("prunable ") {
                entry.prunable = true;
            }
        }
    }
    entries.extend(current);
    entries
}

/// `path` made absolute with symlinks resolved as far as it exists, so it compares equal to the
/// path git records for the same directory (git stores real paths).
pub(crate) fn normalize(path: &Path) -> PathBuf {
    if let Ok(real) = path.canonicalize() {
        return real;
    }
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
    // Resolve the longest existing ancestor and re-append the rest.
    let mut existing = absolute.as_path();
    let mut rest = Vec::new();
    while let Some(parent) = existing.parent() {
        if let Some(name) = existing.file_name() {
            rest.push(name.to_owned());
        }
        existing = parent;
        if let Ok(real) = existing.canonicalize() {
            let mut out = real;
            for name in rest.iter().rev() {
                out.push(name);
            }
            return out;
        }
    }
    absolute
}

/// Whether two worktree paths name the same directory.
pub(crate) fn same_path(a: &Path, b: &Path) -> bool {
    normalize(a) == normalize(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_main_detached_branch_and_prunable_entries() {
        let text = "worktree /repo\nHEAD 1111\nbranch refs/heads/main\n\n\
                    worktree /repo/.factory/worktrees/merge\nHEAD 2222\ndetached\n\n\
                    worktree /gone\nHEAD 3333\nbranch refs/heads/factory/001-x\nprunable gitdir file points to non-existent location\n\n";
        let entries = parse_porcelain(text);
        assert_eq!(entries.len(), 3);
        assert_eq!(entries[0].path, PathBuf::from("/repo"));
        assert_eq!(entries[0].branch.as_deref(), Some("refs/heads/main"));
        assert!(!entries[0].prunable);
        assert_eq!(entries[1].branch, None);
        assert_eq!(
            entries[2].branch.as_deref(),
            Some("refs/heads/factory/001-x")
        );
        assert!(entries[2].prunable);
    }

    #[test]
    fn normalizes_missing_paths_through_their_existing_ancestor() {
        let dir = std::env::temp_dir();
        let missing = dir.join("factory-git-no-such-dir").join("child");
        let normalized = normalize(&missing);
        assert!(normalized.ends_with("factory-git-no-such-dir/child"));
        assert!(normalized.starts_with(dir.canonicalize().unwrap_or(dir)));
    }
}
