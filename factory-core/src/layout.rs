//! Where Factory keeps things inside the user's repository (`<repo>/.factory/`).

use std::path::{Path, PathBuf};

use crate::spec::SpecId;

/// Name of Factory's directory at the repository root; listed in `.git/info/exclude`.
pub const FACTORY_DIR: &str = ".factory";

/// Paths of Factory's on-disk layout for one repository. Pure path arithmetic: creates nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    repo_root: PathBuf,
}

impl Layout {
    /// The layout for the repository whose top-level directory is `repo_root`.
    pub fn new(repo_root: impl Into<PathBuf>) -> Layout {
        Layout {
            repo_root: repo_root.into(),
        }
    }

    /// The repository's top-level directory (the user's checkout).
    pub fn repo_root(&self) -> &Path {
        &self.repo_root
    }

    /// `<repo>/.factory`.
    pub fn factory_dir(&self) -> PathBuf {
        self.repo_root.join(FACTORY_DIR)
    }

    /// `<repo>/.factory/config.toml`.
    pub fn config_path(&self) -> PathBuf {
        self.factory_dir().join("config.toml")
    }

    /// `<repo>/.factory/factory.db`.
    pub fn db_path(&self) -> PathBuf {
        self.factory_dir().join("factory.db")
    }

    /// `<repo>/.factory/specs/<spec-id>`.
    pub fn spec_dir(&self, spec: &SpecId) -> PathBuf {
        self.factory_dir().join("specs").join(spec.to_string())
    }

    /// `<repo>/.factory/worktrees/tasks/<spec-id>`: the only place a worker writes.
    pub fn task_worktree(&self, spec: &SpecId) -> PathBuf {
        self.factory_dir()
            .join("worktrees")
            .join("tasks")
            .join(spec.to_string())
    }

    /// `<repo>/.factory/worktrees/merge`: where merges into main are made, so the user's checkout
    /// is never used for them.
    pub fn merge_worktree(&self) -> PathBuf {
        self.factory_dir().join("worktrees").join("merge")
    }

    /// `<repo>/.factory/run/children`: a record (`<pid>.json`) of each agent or verify command
    /// running now, so that a run can end what an interrupted one left running.
    pub fn children_dir(&self) -> PathBuf {
        self.factory_dir().join("run").join("children")
    }

    /// `<repo>/.factory/logs/<spec-id>`: agent transcripts as JSON lines.
    pub fn logs_dir(&self, scope: &str) -> PathBuf {
        self.factory_dir().join("logs").join(scope)
    }
}
