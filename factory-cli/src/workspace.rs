//! Finding the repository, reading `.factory/config.toml` and wiring the ports' implementations
//! into a [`Factory`].

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use async_trait::async_trait;
use factory_agents::{ProcessOptions, ProcessSandbox, build_backend};
use factory_core::agent::AgentRole;
use factory_core::config::FactoryConfig;
use factory_core::layout::{FACTORY_DIR, Layout};
use factory_core::orchestrate::{Factory, Ports, RoleBackends};
use factory_core::ports::{
    AgentBackend, AgentError, AgentRequest, AgentResponse, Clock, SystemClock, VcsError,
};
use factory_git::GitRepo;
use factory_store::SqliteStore;

/// An opened Factory workspace.
pub struct Workspace {
    /// The orchestration over the real ports.
    pub factory: Factory,
    /// Roles whose agent could not be built, with the reason.
    unavailable: Vec<String>,
    /// How agent and verify commands run (supervisor, filesystem sandbox, output caps).
    pub sandbox: ProcessSandbox,
}

/// The top-level directory of the repository containing `start`.
fn find_repo_root(start: &Path) -> Result<PathBuf> {
    let start = start.canonicalize().with_context(|| {
        format!(
            "{} does not exist: pass an existing directory",
            start.display()
        )
    })?;
    match factory_git::discover_root(&start) {
        Err(VcsError::NotARepository(_)) => bail!(
            "{} is not inside a git repository: run `git init` there first, or pass --repo PATH",
            start.display()
        ),
        other => Ok(other?),
    }
}

fn start_dir(repo: Option<PathBuf>) -> Result<PathBuf> {
    match repo {
        Some(p) => Ok(p),
        None => std::env::current_dir().context("cannot read the current directory"),
    }
}

/// Which agent `factory init` configures.
pub enum AgentSetup {
    /// Leave `[agent]` for the user to fill in.
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

/// `factory init`: creates `.factory/` with config.toml and the database, and lists `.factory/`
/// in `.git/info/exclude`. Returns the repository root.
pub async fn init(
    repo: Option<PathBuf>,
    main_branch: Option<String>,
    verify: Option<String>,
    agent: AgentSetup,
) -> Result<PathBuf> {
    let root = find_repo_root(&start_dir(repo)?)?;
    let layout = Layout::new(&root);
    if layout.config_path().exists() {
        bail!(
            "{} already exists: Factory is initialized here (edit that file to change settings)",
            layout.config_path().display()
        );
    }
    let identity = FactoryConfig::default().git.identity();
    let git = GitRepo::open(&root, identity, layout.merge_worktree())?;
    let main_branch = match main_branch {
        Some(b) => b,
        None => git
            .current_branch()
            .await?
            .unwrap_or_else(|| "main".to_owned()),
    };
    let verify =
        verify.or_else(|| factory_core::config::VerifyConfig::detect(&root).map(str::to_owned));
    let mut text = FactoryConfig::template(&main_branch, verify.as_deref());
    let placeholder = "kind = \"command\"\n# command = \"my-agent --stdin\"";
    let mut script_file = None;
    match agent {
        AgentSetup::Unset => {}
        AgentSetup::Command(command) => {
            let line = format!("kind = \"command\"\ncommand = {}", toml_string(&command));
            text = text.replace(placeholder, &line);
        }
        AgentSetup::Scripted { file, script } => {
            let line = format!("kind = \"scripted\"\nscript = {}", toml_string(&file));
            text = text.replace(placeholder, &line);
            script_file = Some((layout.factory_dir().join(file), script));
        }
    }
    FactoryConfig::from_toml(&text, &layout.config_path())?;
    std::fs::create_dir_all(layout.factory_dir())
        .with_context(|| format!("cannot create {}", layout.factory_dir().display()))?;
    if let Some((path, script)) = script_file {
        std::fs::write(&path, script)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    git.exclude(&format!("/{FACTORY_DIR}/")).await?;
    std::fs::write(layout.config_path(), text)
        .with_context(|| format!("cannot write {}", layout.config_path().display()))?;
    SqliteStore::open(&layout.db_path(), Arc::new(SystemClock)).await?;
    Ok(root)
}

/// A TOML basic string holding `s`.
fn toml_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

impl Workspace {
    /// Opens the workspace of the repository containing `repo` (or the current directory).
    pub async fn open(repo: Option<PathBuf>) -> Result<Workspace> {
        let root = find_repo_root(&start_dir(repo)?)?;
        let layout = Layout::new(&root);
        let config_path = layout.config_path();
        if !config_path.exists() {
            bail!(
                "no .factory/config.toml in {}: run `factory init` first",
                root.display()
            );
        }
        let text = std::fs::read_to_string(&config_path)
            .with_context(|| format!("cannot read {}", config_path.display()))?;
        let config = FactoryConfig::from_toml(&text, &config_path)?;
        Workspace::with_config(layout, config).await
    }

    /// Wires real ports for `layout` and `config`.
    pub async fn with_config(layout: Layout, config: FactoryConfig) -> Result<Workspace> {
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let store = SqliteStore::open(&layout.db_path(), clock.clone()).await?;
        let vcs = GitRepo::open(
            layout.repo_root(),
            config.git.identity(),
            layout.merge_worktree(),
        )?;
        let sandbox = ProcessSandbox::with_options(ProcessOptions::from_config(&config));
        let mut unavailable = Vec::new();
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
        let agents = RoleBackends {
            planner: backend(AgentRole::Planner),
            worker: backend(AgentRole::Worker),
            reviewer: backend(AgentRole::Reviewer),
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

    /// Fails with the first agent configuration problem, before any work starts.
    pub fn require_agents(&self) -> Result<()> {
        match self.unavailable.first() {
            Some(reason) => bail!("{reason}"),
            None => Ok(()),
        }
    }
}

/// Stands in for a role whose agent is misconfigured, so read-only commands still work; `run`
/// refuses to start while any role is unavailable.
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
