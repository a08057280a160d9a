//! Temporary repositories scripted with real git. Every repository carries its own local
//! identity (a *different* one from Factory's, so tests can tell which was used) and git runs
//! here with global and system configuration switched off.

use std::path::{Path, PathBuf};
use std::process::Command;

use factory_core::layout::Layout;
use factory_core::ports::{GitIdentity, MergeOutcome, Vcs, VcsError};
use factory_git::GitRepo;
use tempfile::TempDir;

/// Factory's identity in every test.
pub fn identity() -> GitIdentity {
    GitIdentity {
        name: "Factory Bot".into(),
        email: "factory@example.invalid".into(),
    }
}

/// Runs git in `dir`, isolated from the machine's configuration; panics with stderr on failure.
pub fn git_in(dir: &Path, args: &[&str]) -> String {
    let out = git_output(dir, args);
    assert!(
        out.status.success(),
        "git {args:?} in {} failed: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs git in `dir` and returns whatever happened.
pub fn git_output(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("LC_ALL", "C")
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .env_remove("GIT_INDEX_FILE")
        .env_remove("GIT_AUTHOR_NAME")
        .env_remove("GIT_AUTHOR_EMAIL")
        .env_remove("GIT_COMMITTER_NAME")
        .env_remove("GIT_COMMITTER_EMAIL")
        .output()
        .unwrap_or_else(|e| panic!("running git: {e}"))
}

/// A user's repository: `main` checked out with `a.txt`, `b.txt`, `c.txt` committed, and
/// `.factory/` excluded the way `factory init` does it.
pub struct Fixture {
    _dir: TempDir,
    /// The user's checkout.
    pub root: PathBuf,
}

impl Fixture {
    /// An initialised repository with one commit.
    pub fn new() -> Fixture {
        let fixture = Fixture::empty();
        fixture.write("a.txt", "alpha\n");
        fixture.write("b.txt", "bravo\n");
        fixture.write("c.txt", "charlie\n");
        fixture.git(&["add", "-A"]);
        fixture.git(&["commit", "-q", "-m", "init"]);
        fixture
    }

    /// An initialised repository without commits.
    pub fn empty() -> Fixture {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let root = dir.path().join("repo");
        std::fs::create_dir_all(&root).unwrap();
        let root = root.canonicalize().unwrap();
        git_in(&root, &["init", "-q", "-b", "main"]);
        git_in(&root, &["config", "user.name", "Local User"]);
        git_in(&root, &["config", "user.email", "local@example.invalid"]);
        git_in(&root, &["config", "commit.gpgsign", "false"]);
        std::fs::write(root.join(".git/info/exclude"), ".factory/\n").unwrap();
        Fixture { _dir: dir, root }
    }

    /// Factory's handle on this repository.
    pub fn repo(&self) -> GitRepo {
        GitRepo::open(&self.root, identity(), self.layout().merge_worktree())
            .unwrap_or_else(|e| panic!("open: {e}"))
    }

    /// Factory's layout for this repository.
    pub fn layout(&self) -> Layout {
        Layout::new(&self.root)
    }

    /// A task worktree path.
    pub fn task_dir(&self, name: &str) -> PathBuf {
        self.root.join(".factory/worktrees/tasks").join(name)
    }

    /// git in the user's checkout.
    pub fn git(&self, args: &[&str]) -> String {
        git_in(&self.root, args)
    }

    /// The commit `rev` names.
    pub fn rev(&self, rev: &str) -> String {
        self.git(&["rev-parse", "--verify", "-q", rev])
            .trim()
            .to_owned()
    }

    /// Writes a file in the user's checkout.
    pub fn write(&self, rel: &str, content: &str) {
        write(&self.root, rel, content);
    }

    /// Reads a file in the user's checkout.
    pub fn read(&self, rel: &str) -> Vec<u8> {
        std::fs::read(self.root.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
    }

    /// Makes `branch` (from `main`) with one commit writing `files`, in a task worktree made
    /// with plain git, and returns the worktree.
    pub fn branch_with(&self, name: &str, files: &[(&str, &str)]) -> PathBuf {
        self.branch_from(name, "main", files)
    }

    /// [`branch_with`](Fixture::branch_with) starting from `base` instead of `main`.
    pub fn branch_from(&self, name: &str, base: &str, files: &[(&str, &str)]) -> PathBuf {
        let dir = self.task_dir(name);
        let branch = format!("factory/{name}");
        git_in(
            &self.root,
            &[
                "worktree",
                "add",
                "-q",
                "-b",
                &branch,
                dir.to_str().unwrap(),
                base,
            ],
        );
        commit_files(&dir, files, &format!("work on {name}"));
        dir
    }

    /// Commits `files` on `main` in the user's checkout (which must be clean) and returns the
    /// new tip.
    pub fn advance_main(&self, files: &[(&str, &str)]) -> String {
        commit_files(&self.root, files, "main moves on");
        self.rev("main")
    }
}

/// Writes `content` at `dir/rel`, creating directories.
pub fn write(dir: &Path, rel: &str, content: &str) {
    let path = dir.join(rel);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(&path, content).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

/// Writes `files` in `dir` and commits them there with plain git.
pub fn commit_files(dir: &Path, files: &[(&str, &str)], message: &str) {
    for (rel, content) in files {
        write(dir, rel, content);
    }
    git_in(dir, &["add", "-A"]);
    git_in(dir, &["commit", "-q", "-m", message]);
}

/// `git worktree list --porcelain` paths.
pub fn worktree_paths(root: &Path) -> Vec<PathBuf> {
    git_in(root, &["worktree", "list", "--porcelain"])
        .lines()
        .filter_map(|line| line.strip_prefix("worktree "))
        .map(PathBuf::from)
        .collect()
}

/// `merge_verified` of a branch's current tip: what the merge queue does once that tip passed
/// verify. For tests about the merge itself rather than about which commit is merged.
pub trait MergeTip {
    /// Reads `branch`'s tip and merges exactly that into `into`.
    async fn merge_no_ff(
        &self,
        branch: &str,
        into: &str,
        message: &str,
    ) -> Result<MergeOutcome, VcsError>;
}

impl MergeTip for GitRepo {
    async fn merge_no_ff(
        &self,
        branch: &str,
        into: &str,
        message: &str,
    ) -> Result<MergeOutcome, VcsError> {
        let tip = self
            .branch_head(branch)
            .await?
            .ok_or_else(|| VcsError::MissingBranch(branch.to_owned()))?;
        self.merge_verified(branch, &tip, into, message).await
    }
}
