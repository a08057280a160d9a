//! Opening and initializing repositories from any path, the errors for repositories Factory
//! cannot use, the run lease across handles, and spec numbering after a lost database.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use async_trait::async_trait;
use factory_core::agent::AgentRole;
use factory_core::orchestrate::{OrchestrateError, RoleBackends};
use factory_core::ports::{AgentBackend, AgentError, AgentRequest, AgentResponse};
use factory_workspace::{InitOptions, OpenError, Workspace};

pub(crate) fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args([
            "-c",
            "user.name=Test",
            "-c",
            "user.email=test@factory.invalid",
        ])
        .args(args)
        .current_dir(dir)
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A repository on `main` with one commit and a subdirectory.
pub(crate) fn repo(dir: &Path) {
    std::fs::create_dir_all(dir.join("src/deep")).unwrap();
    git(dir, &["init", "-q", "-b", "main"]);
    std::fs::write(dir.join("src/deep/lib.txt"), "lib\n").unwrap();
    git(dir, &["add", "."]);
    git(dir, &["commit", "-q", "-m", "initial"]);
}

/// No verify command: these tests run in-process agents only, so no command (and no
/// supervisor, which a test binary cannot be) is started.
pub(crate) fn options() -> InitOptions {
    InitOptions {
        verify: Some(String::new()),
        ..InitOptions::default()
    }
}

/// Plans one task per epic (key `t`), writes `<epic words>.txt`, approves.
struct OneFileAgent;

#[async_trait]
impl AgentBackend for OneFileAgent {
    fn name(&self) -> &str {
        "one-file"
    }

    async fn run(&self, request: AgentRequest) -> Result<AgentResponse, AgentError> {
        let output = match request.role {
            AgentRole::Planner => {
                r#"{"tasks": [{"key": "t", "title": "Write the file"}]}"#.to_owned()
            }
            AgentRole::Worker => {
                let name = format!(
                    "{}.txt",
                    request.spec_id.map(|s| s.to_string()).unwrap_or_default()
                );
                std::fs::write(request.workdir.join(name), "x\n").unwrap();
                String::new()
            }
            AgentRole::Reviewer => r#"{"verdict": "approve"}"#.to_owned(),
        };
        Ok(AgentResponse {
            output,
            transcript: Vec::new(),
        })
    }
}

fn agents() -> RoleBackends {
    RoleBackends::same(Arc::new(OneFileAgent))
}

/// [`OneFileAgent`] whose planner waits until `gate` opens, so a run is sure to be going.
struct GatedPlanner {
    gate: Arc<tokio::sync::Semaphore>,
}

#[async_trait]
impl AgentBackend for GatedPlanner {
    fn name(&self) -> &str {
        "gated"
    }

    async fn run(&self, request: AgentRequest) -> Result<AgentResponse, AgentError> {
        if request.role == AgentRole::Planner {
            let _open = self.gate.acquire().await;
        }
        OneFileAgent.run(request).await
    }
}

#[tokio::test]
async fn init_from_a_subdirectory_puts_dot_factory_at_the_root_and_hides_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("repo");
    repo(&dir);
    let root = Workspace::init(&dir.join("src/deep"), options())
        .await
        .unwrap();
    assert_eq!(root, dir.canonicalize().unwrap());
    assert!(dir.join(".factory/config.toml").exists());
    assert!(!dir.join("src/deep/.factory").exists());
    assert_eq!(
        git(&dir, &["status", "--porcelain", "--untracked-files=all"]),
        ""
    );
    // Opening from the subdirectory finds the same workspace.
    let ws = Workspace::open(&dir.join("src")).await.unwrap();
    assert_eq!(ws.factory().layout().repo_root(), root);
}

#[tokio::test]
async fn opening_from_a_linked_worktree_finds_the_main_checkout() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("repo");
    repo(&dir);
    Workspace::init(&dir, options()).await.unwrap();
    let linked = tmp.path().join("linked");
    git(
        &dir,
        &[
            "worktree",
            "add",
            "-q",
            "-b",
            "side",
            linked.to_str().unwrap(),
        ],
    );
    let ws = Workspace::open(&linked).await.unwrap();
    assert_eq!(
        ws.factory().layout().repo_root(),
        dir.canonicalize().unwrap()
    );
}

#[tokio::test]
async fn repositories_factory_cannot_use_get_their_own_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let plain = tmp.path().join("plain");
    std::fs::create_dir_all(&plain).unwrap();
    assert!(matches!(
        Workspace::init(&plain, options()).await,
        Err(OpenError::NotARepository(_))
    ));
    let bare = tmp.path().join("bare.git");
    std::fs::create_dir_all(&bare).unwrap();
    git(&bare, &["init", "-q", "--bare"]);
    assert!(matches!(
        Workspace::init(&bare, options()).await,
        Err(OpenError::BareRepository(_))
    ));
    let empty = tmp.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    git(&empty, &["init", "-q", "-b", "main"]);
    assert!(matches!(
        Workspace::init(&empty, options()).await,
        Err(OpenError::NoCommits(_))
    ));
    let fresh = tmp.path().join("fresh");
    repo(&fresh);
    assert!(matches!(
        Workspace::open(&fresh).await,
        Err(OpenError::NotInitialized { .. })
    ));
    assert!(matches!(
        Workspace::open(&tmp.path().join("missing")).await,
        Err(OpenError::NoSuchPath { .. })
    ));
    Workspace::init(&fresh, options()).await.unwrap();
    assert!(matches!(
        Workspace::init(&fresh, options()).await,
        Err(OpenError::AlreadyInitialized(_))
    ));
}

#[tokio::test]
async fn a_corrupt_database_is_named_not_reported_raw() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("repo");
    repo(&dir);
    Workspace::init(&dir, options()).await.unwrap();
    let db = dir.join(".factory/factory.db");
    for name in ["factory.db", "factory.db-wal", "factory.db-shm"] {
        let _ = std::fs::remove_file(dir.join(".factory").join(name));
    }
    std::fs::write(&db, vec![0x5a; 8192]).unwrap();
    match Workspace::open(&dir).await {
        Err(e @ OpenError::CorruptDatabase { .. }) => {
            assert!(e.to_string().contains("factory.db"), "{e}");
        }
        Err(e) => panic!("expected CorruptDatabase, got {e:?}"),
        Ok(_) => panic!("a corrupt database opened"),
    }
}

#[tokio::test]
async fn a_second_run_is_refused_while_the_first_holds_the_lease() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("repo");
    repo(&dir);
    Workspace::init(&dir, options()).await.unwrap();
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let gated = RoleBackends::same(Arc::new(GatedPlanner { gate: gate.clone() }));
    let first = Workspace::open_with_agents(&dir, gated).await.unwrap();
    let second = Workspace::open_with_agents(&dir, agents()).await.unwrap();
    first.factory().add_epic("held open").await.unwrap();
    let handle = first.start_run(first.run_options("first")).await.unwrap();
    match second.start_run(second.run_options("second")).await {
        Err(OrchestrateError::AlreadyRunning(lease)) => {
            assert_eq!(lease.holder.label, "first");
            assert_eq!(lease.holder.pid, std::process::id());
        }
        Err(e) => panic!("expected AlreadyRunning, got {e}"),
        Ok(_) => panic!("two runs on one repository"),
    }
    gate.add_permits(1);
    handle.wait().await.unwrap();
    // Released at the end: the next run starts at once.
    second
        .start_run(second.run_options("second"))
        .await
        .unwrap()
        .wait()
        .await
        .unwrap();
}

/// Takes the run lease in the repository's database as `pid` would, for an hour.
async fn hold_lease_as(dir: &Path, pid: u32) {
    use factory_core::lease::LeaseHolder;
    use factory_core::ports::{Store, SystemClock};
    let store =
        factory_store::SqliteStore::open(&dir.join(".factory/factory.db"), Arc::new(SystemClock))
            .await
            .unwrap();
    let holder = LeaseHolder {
        pid,
        host: factory_workspace::host_name(),
        label: "factory run".into(),
    };
    store
        .acquire_run_lease(holder, std::time::Duration::from_secs(3600))
        .await
        .unwrap();
    store.close().await;
}

#[tokio::test]
async fn a_dead_holders_lease_does_not_block_a_new_run_but_a_live_ones_does() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("repo");
    repo(&dir);
    Workspace::init(&dir, options()).await.unwrap();
    let ws = Workspace::open_with_agents(&dir, agents()).await.unwrap();

    let mut alive = Command::new("sleep").arg("60").spawn().unwrap();
    hold_lease_as(&dir, alive.id()).await;
    match ws.start_run(ws.run_options("second")).await {
        Err(OrchestrateError::AlreadyRunning(lease)) => assert_eq!(lease.holder.pid, alive.id()),
        Err(e) => panic!("expected AlreadyRunning, got {e}"),
        Ok(_) => panic!("ran beside a live holder"),
    }
    // The holder dies without releasing (kill -9): the next run takes over at once.
    alive.kill().unwrap();
    alive.wait().unwrap();
    ws.factory().add_epic("after the crash").await.unwrap();
    let report = ws
        .start_run(ws.run_options("new run"))
        .await
        .unwrap()
        .wait()
        .await
        .unwrap();
    assert!(report.all_merged(), "{report:?}");
    assert_eq!(report.merged.len(), 1);
}

#[tokio::test]
async fn a_lost_database_never_reuses_a_spec_number_or_branch() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("repo");
    repo(&dir);
    Workspace::init(&dir, options()).await.unwrap();
    let ws = Workspace::open_with_agents(&dir, agents()).await.unwrap();
    ws.factory().add_epic("first").await.unwrap();
    let report = ws
        .start_run(ws.run_options("t"))
        .await
        .unwrap()
        .wait()
        .await
        .unwrap();
    assert_eq!(report.merged.len(), 1);
    assert_eq!(report.merged[0].0.number(), 1);
    drop(ws);
    for name in ["factory.db", "factory.db-wal", "factory.db-shm"] {
        let _ = std::fs::remove_file(dir.join(".factory").join(name));
    }
    let ws = Workspace::open_with_agents(&dir, agents()).await.unwrap();
    ws.factory().add_epic("second").await.unwrap();
    let report = ws
        .start_run(ws.run_options("t"))
        .await
        .unwrap()
        .wait()
        .await
        .unwrap();
    assert_eq!(report.merged.len(), 1, "{report:?}");
    assert_eq!(
        report.merged[0].0.number(),
        2,
        "numbering continues after the old spec dirs"
    );
    let merges = git(&dir, &["log", "--merges", "--format=%s", "main"]);
    assert_eq!(merges.lines().count(), 2, "{merges}");
    assert_eq!(merges.matches("factory/001").count(), 1, "{merges}");
}
