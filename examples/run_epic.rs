//! Runs one epic through Factory as a library: a scripted agent, embedded SQLite, real git.
//!
//! `cargo run -p factory-examples --example run_epic -- /path/to/a/git/repo`
//! The repository must have a `main` branch; a task adds `hello.txt` and merges it --no-ff.

use std::sync::Arc;

use factory_agents::{AgentScript, ProcessSandbox, ScriptedAgent};
use factory_core::config::FactoryConfig;
use factory_core::layout::Layout;
use factory_core::orchestrate::{Factory, Ports, RoleBackends, RunOptions, stop_signal};
use factory_core::ports::{Clock, SystemClock};
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
write = "Hello from Factory\n"
[[tasks.hello.reviews]]
verdict = "approve"
"#;

fn main() -> anyhow::Result<std::process::ExitCode> {
    // Before any runtime or thread: this program is also the supervisor of the commands that
    // ProcessSandbox runs (it starts `/proc/self/exe __supervise …`).
    if let Some(code) = factory_agents::supervise::run_if_requested() {
        return Ok(code);
    }
    tokio::runtime::Runtime::new()?.block_on(run())?;
    Ok(std::process::ExitCode::SUCCESS)
}

async fn run() -> anyhow::Result<()> {
    let repo = std::env::args()
        .nth(1)
        .ok_or_else(|| anyhow::anyhow!("usage: run_epic REPO"))?;
    let layout = Layout::new(std::path::Path::new(&repo).canonicalize()?);
    std::fs::create_dir_all(layout.factory_dir())?;
    let mut config = FactoryConfig::default();
    config.verify.command = "test -f hello.txt".into();

    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let script = AgentScript::from_toml_str(SCRIPT, "inline".as_ref())?;
    let agent = Arc::new(ScriptedAgent::new(script, clock.clone()));
    let git = GitRepo::open(
        layout.repo_root(),
        config.git.identity(),
        layout.merge_worktree(),
    )?;
    git.exclude("/.factory/").await?; // keep Factory's files out of `git status`
    let ports = Ports {
        store: Arc::new(SqliteStore::open(&layout.db_path(), clock.clone()).await?),
        vcs: Arc::new(git),
        sandbox: Arc::new(ProcessSandbox::new()),
        clock,
        agents: RoleBackends::same(agent),
    };
    let factory = Factory::new(ports, config, layout);
    let epic = factory.add_epic("Say hello in a file").await?;
    let report = factory.run(RunOptions::default(), stop_signal().1).await?;
    for (spec, commit) in &report.merged {
        println!("epic {}: merged {spec} as {commit}", epic.id);
    }
    let blocked: Vec<String> = report
        .blocked
        .iter()
        .map(|(spec, reason)| format!("{spec} blocked: {reason}"))
        .collect();
    anyhow::ensure!(report.all_merged(), "not merged: {}", blocked.join("; "));
    Ok(())
}
