//! Opening a repository for Factory, as one library call shared by the CLI, a server and any
//! program that embeds Factory: find the repository's root from any path inside it (a
//! subdirectory, or a linked worktree such as a task's, resolves to the main checkout), create
//! `.factory/` there and hide it from git, load `.factory/config.toml`, open the store and wire
//! the ports' implementations into a [`Factory`].
//!
//! Errors say what is wrong, not which command to type: frontends add their own advice.
//!
//! A program that opens a workspace and runs agents or verify commands must call
//! [`run_supervisor_if_requested`] first thing in `main`: Factory starts the running program
//! again as the supervisor of each command (see `factory_agents::supervise`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use factory_agents::{ProcessOptions, ProcessSandbox, build_backend};

pub use factory_agents::supervise::run_if_requested as run_supervisor_if_requested;
pub use factory_agents::{EndedChild, SandboxReport};
use factory_core::agent::AgentRole;
use factory_core::config::{AgentTemplate, ConfigError, FactoryConfig, VerifyConfig};
use factory_core::layout::{FACTORY_DIR, Layout};
use factory_core::lease::{LeaseHolder, RunLease};
use factory_core::orchestrate::{
    Factory, GcOptions, GcReport, OrchestrateError, Ports, RoleBackends, RunOptions,
};
use factory_core::ports::{
    AgentBackend, AgentError, AgentRequest, AgentResponse, Clock, StoreError, SystemClock, VcsError,
};
use factory_git::GitRepo;
use factory_store::SqliteStore;

/// Why a repository could not be opened or initialized.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The path given does not exist.
    #[error("{path} does not exist")]
    NoSuchPath {
        /// The path.
        path: PathBuf,
    },
    /// The path is not inside a git repository.
    #[error("{0} is not inside a git repository")]
    NotARepository(PathBuf),
    /// The repository has no working tree.
    #[error("{0} is a bare repository: Factory needs a checkout with a working tree")]
    BareRepository(PathBuf),
    /// The repository has no commit yet, so there is nothing to branch tasks from.
    #[error("the repository at {0} has no commits yet")]
    NoCommits(PathBuf),
    /// `.factory/config.toml` is missing.
    #[error("Factory is not initialized in {root} (no .factory/config.toml)")]
    NotInitialized {
        /// The repository root.
        root: PathBuf,
    },
    /// `factory init` on a repository that already has a configuration.
    #[error("{0} already exists: Factory is already initialized here")]
    AlreadyInitialized(PathBuf),
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The database file exists but is not a Factory database SQLite can read.
    #[error("the database {path} is damaged or not a Factory database: {source}")]
    CorruptDatabase {
        /// The file.
        path: PathBuf,
        /// What SQLite said.
        #[source]
        source: StoreError,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Git failed.
    #[error(transparent)]
    Vcs(#[from] VcsError),
    /// The sandbox could not be probed.
    #[error("cannot probe the sandbox: {0}")]
    Sandbox(String),
    /// A role's agent is misconfigured.
    #[error("{0}")]
    AgentUnavailable(String),
    /// A file could not be read or written.
    #[error("{context} {path}: {source}")]
    Io {
        /// What was being done.
        context: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// What `factory init` writes.
#[derive(Debug, Clone, Default)]
pub struct InitOptions {
    /// The branch tasks start from and merge into (default: the branch checked out now, else
    /// `main`).
    pub main_branch: Option<String>,
    /// The verify command (default: guessed from the repository's files).
    pub verify: Option<String>,
    /// The agent for every role.
    pub agent: AgentSetup,
}

/// Which agent `init` configures.
#[derive(Debug, Clone, Default)]
pub enum AgentSetup {
    /// Leave `[agent]` for the user to fill in.
    #[default]
    Unset,
    /// `kind = "command"` with this command line.
    Command(String),
    /// `kind = "scripted"` with this script, written to `.factory/<file>`.
    Scripted {
        /// File name inside `.factory/`.
        file: String,
        /// The script's TOML text.
        script: String,
    },
}

/// An opened repository: its layout, configuration and the [`Factory`] over real ports.
pub struct Workspace {
    factory: Factory,
    unavailable: Vec<String>,
    sandbox: ProcessSandbox,
}

/// The top-level directory of the user's checkout of the repository containing `start`.
pub fn find_root(start: &Path) -> Result<PathBuf, OpenError> {
    let start = start.canonicalize().map_err(|_| OpenError::NoSuchPath {
        path: start.to_owned(),
    })?;
    if factory_git::is_bare(&start) {
        return Err(OpenError::BareRepository(start));
    }
    match factory_git::discover_root(&start) {
        Err(VcsError::NotARepository(_)) => Err(OpenError::NotARepository(start)),
        other => Ok(other?),
    }
}

impl Workspace {
    /// Creates `.factory/` with `config.toml` and the database at the root of the repository
    /// containing `start`, and lists `.factory/` in `.git/info/exclude`. Returns the root.
    pub async fn init(start: &Path, options: InitOptions) -> Result<PathBuf, OpenError> {
        let root = find_root(start)?;
        let layout = Layout::new(&root);
        if layout.config_path().exists() {
            return Err(OpenError::AlreadyInitialized(layout.config_path()));
        }
        if !factory_git::has_commits(&root) {
            return Err(OpenError::NoCommits(root));
        }
        let identity = FactoryConfig::default().git.identity();
        let git = GitRepo::open(&root, identity, layout.merge_worktree())?;
        let main_branch = match options.main_branch {
            Some(b) => b,
            None => git
                .current_branch()
                .await?
                .unwrap_or_else(|| "main".to_owned()),
        };
        let verify = options
            .verify
            .or_else(|| VerifyConfig::detect(&root).map(str::to_owned));
        let (agent, script_file) = match options.agent {
            AgentSetup::Unset => (AgentTemplate::Unset, None),
            AgentSetup::Command(command) => (AgentTemplate::Command(command), None),
            AgentSetup::Scripted { file, script } => (
                AgentTemplate::Scripted(PathBuf::from(&file)),
                Some((layout.factory_dir().join(file), script)),
            ),
        };
        let text = FactoryConfig::template(&main_branch, verify.as_deref(), &agent);
        FactoryConfig::from_toml(&text, &layout.config_path())?;
        let io = |context, path: &Path| {
            let path = path.to_owned();
            move |source| OpenError::Io {
                context,
                path,
                source,
            }
        };
        std::fs::create_dir_all(layout.factory_dir())
            .map_err(io("cannot create", &layout.factory_dir()))?;
        if let Some((path, script)) = script_file {
            std::fs::write(&path, script).map_err(io("cannot write", &path))?;
        }
        git.exclude(&format!("/{FACTORY_DIR}/")).await?;
        std::fs::write(layout.config_path(), text)
            .map_err(io("cannot write", &layout.config_path()))?;
        open_store(&layout, Arc::new(SystemClock)).await?;
        Ok(root)
    }

    /// Opens the repository containing `start` with the agents its configuration names.
    pub async fn open(start: &Path) -> Result<Workspace, OpenError> {
        let (layout, config) = Self::locate(start)?;
        Workspace::with_config(layout, config, None).await
    }

    /// Opens the repository containing `start` with the caller's own agents (a library user's
    /// [`AgentBackend`]), ignoring `[agent]` in the configuration.
    pub async fn open_with_agents(
        start: &Path,
        agents: RoleBackends,
    ) -> Result<Workspace, OpenError> {
        let (layout, config) = Self::locate(start)?;
        Workspace::with_config(layout, config, Some(agents)).await
    }

    fn locate(start: &Path) -> Result<(Layout, FactoryConfig), OpenError> {
        let root = find_root(start)?;
        let layout = Layout::new(&root);
        let config_path = layout.config_path();
        if !config_path.exists() {
            return Err(OpenError::NotInitialized { root });
        }
        let text = std::fs::read_to_string(&config_path).map_err(|source| OpenError::Io {
            context: "cannot read",
            path: config_path.clone(),
            source,
        })?;
        let config = FactoryConfig::from_toml(&text, &config_path)?;
        Ok((layout, config))
    }

    /// Wires real ports for `layout` and `config`; `agents` replaces the configured ones.
    pub async fn with_config(
        layout: Layout,
        config: FactoryConfig,
        agents: Option<RoleBackends>,
    ) -> Result<Workspace, OpenError> {
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let store = open_store(&layout, clock.clone()).await?;
        let vcs = GitRepo::open(
            layout.repo_root(),
            config.git.identity(),
            layout.merge_worktree(),
        )?;
        let sandbox = ProcessSandbox::with_options(ProcessOptions {
            children_dir: Some(layout.children_dir()),
            ..ProcessOptions::from_config(&config)
        });
        let mut unavailable = Vec::new();
        let agents = match agents {
            Some(agents) => agents,
            None => {
                let mut backend = |role: AgentRole| -> Arc<dyn AgentBackend> {
                    match build_backend(
                        &config.agent.for_role(role),
                        &layout.factory_dir(),
                        clock.clone(),
                        &sandbox,
                    ) {
                        Ok(b) => b,
                        Err(e) => {
                            unavailable.push(e.to_string());
                            Arc::new(Unavailable(e.to_string()))
                        }
                    }
                };
                RoleBackends {
                    planner: backend(AgentRole::Planner),
                    worker: backend(AgentRole::Worker),
                    reviewer: backend(AgentRole::Reviewer),
                }
            }
        };
        let ports = Ports {
            store: Arc::new(store),
            vcs: Arc::new(vcs),
            sandbox: Arc::new(sandbox.clone()),
            clock,
            agents,
        };
        Ok(Workspace {
            factory: Factory::new(ports, config, layout),
            unavailable,
            sandbox,
        })
    }

    /// The orchestration over the real ports.
    pub fn factory(&self) -> &Factory {
        &self.factory
    }

    /// What the filesystem sandbox enforces here and which paths agents may write (probed once,
    /// by starting the supervisor).
    pub async fn sandbox_report(&self) -> Result<&SandboxReport, OpenError> {
        self.sandbox
            .report()
            .await
            .map_err(|e| OpenError::Sandbox(e.to_string()))
    }

    /// Fails with the first agent configuration problem, before any work starts.
    pub fn require_agents(&self) -> Result<(), OpenError> {
        match self.unavailable.first() {
            Some(reason) => Err(OpenError::AgentUnavailable(reason.clone())),
            None => Ok(()),
        }
    }

    /// Run options naming this process (pid and host) as the lease holder.
    pub fn run_options(&self, label: &str) -> RunOptions {
        RunOptions {
            holder: LeaseHolder {
                pid: std::process::id(),
                host: host_name(),
                label: label.to_owned(),
            },
            ..RunOptions::default()
        }
    }

    /// Ends the agent and verify commands that an earlier, interrupted run of this repository
    /// left running (recorded in `.factory/run/children/`), before anything touches their
    /// worktrees; the commands of a `factory` process that still runs are left alone. Returns
    /// what was ended, to tell the user; [`start_run`](Workspace::start_run) calls this too.
    pub async fn end_leftover_children(&self) -> Vec<EndedChild> {
        factory_agents::end_leftover_children(&self.factory.layout().children_dir()).await
    }

    /// Starts a run: first ends the commands an interrupted run left running
    /// ([`end_leftover_children`](Workspace::end_leftover_children)) and releases a run lease
    /// whose holder is a process on this machine that no longer exists (killed, crashed), so a
    /// new run need not wait for it to expire. Fails with
    /// [`OrchestrateError::AlreadyRunning`] while a live run holds the repository.
    pub async fn start_run(
        &self,
        options: RunOptions,
    ) -> Result<factory_core::orchestrate::RunHandle, OrchestrateError> {
        for ended in self.end_leftover_children().await {
            tracing::info!("{ended}");
        }
        self.release_dead_lease().await?;
        self.factory.start(options).await
    }

    /// `factory gc`: removes orphaned worktrees, finished tasks' branches and stale worktree
    /// entries (see [`Factory::gc`]), holding the run lease as this process (a dead holder's
    /// lease is released first). A dry run changes nothing.
    pub async fn gc(&self, dry_run: bool, force: bool) -> Result<GcReport, OrchestrateError> {
        if !dry_run {
            self.release_dead_lease().await?;
        }
        let holder = self.run_options("factory gc").holder;
        self.factory
            .gc(GcOptions {
                dry_run,
                force,
                holder,
            })
            .await
    }

    /// Releases the run lease if its holder is a process on this machine that no longer exists
    /// (killed, crashed), so the next run need not wait for it to expire.
    async fn release_dead_lease(&self) -> Result<(), OrchestrateError> {
        if let Some(lease) = self.factory.run_lease().await?
            && holder_is_dead(&lease)
        {
            tracing::info!(holder = %lease.holder, "releasing the run lease of a dead process");
            self.factory.release_dead_lease(lease.token).await?;
        }
        Ok(())
    }
}

/// Whether the lease's holder is a process of this machine that no longer exists.
fn holder_is_dead(lease: &RunLease) -> bool {
    if lease.holder.host != host_name() {
        return false;
    }
    let Some(pid) = i32::try_from(lease.holder.pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return false;
    };
    if pid == rustix::process::getpid() {
        return false;
    }
    matches!(
        rustix::process::test_kill_process(pid),
        Err(rustix::io::Errno::SRCH)
    )
}

/// This machine's host name, for the run lease.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

/// Opens the store, telling a damaged database apart from other failures.
async fn open_store(layout: &Layout, clock: Arc<dyn Clock>) -> Result<SqliteStore, OpenError> {
    let path = layout.db_path();
    let existed = path.exists();
    match SqliteStore::open(&path, clock).await {
        Ok(store) => Ok(store),
        Err(source) if existed && is_corruption(&source) => {
            Err(OpenError::CorruptDatabase { path, source })
        }
        Err(e) => Err(e.into()),
    }
}

fn is_corruption(e: &StoreError) -> bool {
    let text = e.to_string();
    [
        "malformed",
        "not a database",
        "file is encrypted",
        "disk image",
        "migration",
    ]
    .iter()
    .any(|needle| text.contains(needle))
}

/// Stands in for a role whose agent is misconfigured, so read-only commands still work; a run
/// is refused while any role is unavailable.
struct Unavailable(String);

#[async_trait]
impl AgentBackend for Unavailable {
    fn name(&self) -> &str {
        "unavailable"
    }

    async fn run(&self, _request: AgentRequest) -> Result<AgentResponse, AgentError> {
        Err(AgentError::Script(self.0.clone()))
    }
}
