//! A git command killed by a signal is not the task's failure. Ctrl-C in a terminal reaches
//! every process of its foreground group, and a git command Factory is just starting is still
//! in that group for an instant: it dies, and the step saw "killed by a signal" before the run
//! saw the stop (found by the property test in factory-cli's `queue_props`). The step runs again,
//! once per task and run; a git command killed again blocks the task.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use async_trait::async_trait;
use factory_agents::{AgentScript, ProcessSandbox, ScriptedAgent};
use factory_core::config::FactoryConfig;
use factory_core::layout::Layout;
use factory_core::orchestrate::{Factory, Ports, RoleBackends, RunOptions, stop_signal};
use factory_core::ports::{
    BranchDeletion, BranchTip, BranchUpdate, CheckoutStatus, Clock, CommitId, ConflictRound,
    MergeOutcome, OversizedFile, SystemClock, Vcs, VcsError, WorktreeDamage, WorktreeInfo,
};
use factory_core::task::TaskState;
use factory_git::GitRepo;
use factory_store::SqliteStore;

const SCRIPT: &str = r#"
[plan]
[[plan.tasks]]
key = "hello"
title = "Add hello.txt"
[[tasks.hello.rounds]]
[[tasks.hello.rounds.edits]]
path = "hello.txt"
write = "hello\n"
[[tasks.hello.reviews]]
verdict = "approve"
"#;

/// The real repository, except that the first `kills` commits die of a signal.
struct KilledCommits {
    git: GitRepo,
    kills: AtomicU32,
}

#[async_trait]
impl Vcs for KilledCommits {
    async fn branch_head(&self, branch: &str) -> Result<Option<CommitId>, VcsError> {
        self.git.branch_head(branch).await
    }
    async fn create_worktree(&self, path: &Path, branch: &str, base: &str) -> Result<(), VcsError> {
        self.git.create_worktree(path, branch, base).await
    }
    async fn remove_worktree(&self, path: &Path) -> Result<(), VcsError> {
        self.git.remove_worktree(path).await
    }
    async fn list_worktrees(&self) -> Result<Vec<PathBuf>, VcsError> {
        self.git.list_worktrees().await
    }
    async fn worktree_damage(
        &self,
        path: &Path,
        branch: &str,
    ) -> Result<Option<WorktreeDamage>, VcsError> {
        self.git.worktree_damage(path, branch).await
    }
    async fn commit_all(
        &self,
        worktree: &Path,
        branch: &str,
        message: &str,
    ) -> Result<Option<CommitId>, VcsError> {
        let left = self.kills.load(Ordering::SeqCst);
        if left > 0 {
            self.kills.store(left - 1, Ordering::SeqCst);
            return Err(VcsError::Git {
                command: "commit".to_owned(),
                code: None,
                stderr: String::new(),
            });
        }
        self.git.commit_all(worktree, branch, message).await
    }
    async fn changed_paths(&self, from: &str, to: &str) -> Result<Vec<String>, VcsError> {
        self.git.changed_paths(from, to).await
    }
    async fn update_branch(
        &self,
        worktree: &Path,
        branch: &str,
        onto: &str,
    ) -> Result<BranchUpdate, VcsError> {
        self.git.update_branch(worktree, branch, onto).await
    }
    async fn merge_verified(
        &self,
        branch: &str,
        verified: &CommitId,
        into: &str,
        message: &str,
    ) -> Result<MergeOutcome, VcsError> {
        self.git
            .merge_verified(branch, verified, into, message)
            .await
    }
    async fn is_merged(&self, rev: &str, into: &str) -> Result<bool, VcsError> {
        self.git.is_merged(rev, into).await
    }
    async fn start_conflict_round(
        &self,
        worktree: &Path,
        branch: &str,
        onto: &str,
    ) -> Result<ConflictRound, VcsError> {
        self.git.start_conflict_round(worktree, branch, onto).await
    }
    async fn same_change(&self, base: &str, a: &str, b: &str) -> Result<bool, VcsError> {
        self.git.same_change(base, a, b).await
    }
    async fn oversized_files(
        &self,
        base: &str,
        tip: &str,
        max_bytes: u64,
    ) -> Result<Vec<OversizedFile>, VcsError> {
        self.git.oversized_files(base, tip, max_bytes).await
    }
    async fn branches(&self, prefix: &str) -> Result<Vec<BranchTip>, VcsError> {
        self.git.branches(prefix).await
    }
    async fn delete_branch(
        &self,
        branch: &str,
        expected: &CommitId,
    ) -> Result<BranchDeletion, VcsError> {
        self.git.delete_branch(branch, expected).await
    }
    async fn commits_only_on(&self, rev: &str, ignoring: &[String]) -> Result<u64, VcsError> {
        self.git.commits_only_on(rev, ignoring).await
    }
    async fn worktrees(&self) -> Result<Vec<WorktreeInfo>, VcsError> {
        self.git.worktrees().await
    }
    async fn uncommitted_paths(&self, path: &Path) -> Result<Vec<String>, VcsError> {
        self.git.uncommitted_paths(path).await
    }
    async fn forget_worktree(&self, path: &Path) -> Result<(), VcsError> {
        self.git.forget_worktree(path).await
    }
    async fn merge_conflicts(&self, rev: &str, into: &str) -> Result<Vec<String>, VcsError> {
        self.git.merge_conflicts(rev, into).await
    }
    async fn checkout_status(&self) -> Result<CheckoutStatus, VcsError> {
        self.git.checkout_status().await
    }
    async fn clear_stale_locks(
        &self,
        main: &str,
        worktrees: &[PathBuf],
        branches: &[String],
    ) -> Result<Vec<PathBuf>, VcsError> {
        self.git.clear_stale_locks(main, worktrees, branches).await
    }
}

/// A one-task epic run where the first `kills` commits die of a signal; the task's end state.
async fn run_with_killed_commits(kills: u32) -> (TaskState, Option<String>) {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("repo");
    std::fs::create_dir_all(&root).unwrap();
    for args in [
        &["init", "-q", "-b", "main"][..],
        &[
            "-c",
            "user.name=T",
            "-c",
            "user.email=t@x",
            "commit",
            "-q",
            "--allow-empty",
            "-m",
            "initial",
        ],
    ] {
        let out = Command::new("git")
            .args(args)
            .current_dir(&root)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let layout = Layout::new(root.canonicalize().unwrap());
    std::fs::create_dir_all(layout.factory_dir()).unwrap();
    let mut config = FactoryConfig::default();
    // No verify command: no supervisor (which a test binary cannot be) is started.
    config.verify.command = String::new();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let script = AgentScript::from_toml_str(SCRIPT, "inline".as_ref()).unwrap();
    let git = GitRepo::open(
        layout.repo_root(),
        config.git.identity(),
        layout.merge_worktree(),
    )
    .unwrap();
    git.exclude("/.factory/").await.unwrap();
    let ports = Ports {
        store: Arc::new(
            SqliteStore::open(&layout.db_path(), clock.clone())
                .await
                .unwrap(),
        ),
        vcs: Arc::new(KilledCommits {
            git,
            kills: AtomicU32::new(kills),
        }),
        sandbox: Arc::new(ProcessSandbox::new()),
        clock: clock.clone(),
        agents: RoleBackends::same(Arc::new(ScriptedAgent::new(script, clock))),
    };
    let factory = Factory::new(ports, config, layout);
    factory.add_epic("Say hello").await.unwrap();
    factory
        .run(RunOptions::default(), stop_signal().1)
        .await
        .unwrap();
    let task = factory.tasks().await.unwrap().remove(0);
    (task.state, task.blocked_reason)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_git_command_killed_by_a_signal_runs_its_step_again() {
    let (state, reason) = run_with_killed_commits(1).await;
    assert_eq!(state, TaskState::Completed, "{reason:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_git_command_killed_twice_blocks_its_task() {
    let (state, reason) = run_with_killed_commits(2).await;
    assert_eq!(state, TaskState::Blocked);
    assert!(
        reason
            .as_deref()
            .is_some_and(|r| r.contains("killed by a signal")),
        "{reason:?}"
    );
}
