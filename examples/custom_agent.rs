//! A library user's own agent backend running an epic: the agent is plain Rust code behind
//! Factory's `AgentBackend` port, and the repository is opened with `factory-workspace`, exactly
//! as the `factory` command opens it.
//!
//! `cargo run -p factory-examples --example custom_agent [-- /path/to/new/dir]`
//! Creates a small git repository (in a temporary directory unless a path is given), plans two
//! tasks with the agent below, and merges both `--no-ff` into main.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, ensure};
use async_trait::async_trait;
use factory_core::agent::AgentRole;
use factory_core::orchestrate::RoleBackends;
use factory_core::ports::{AgentBackend, AgentError, AgentRequest, AgentResponse};
use factory_workspace::{InitOptions, Workspace};

/// An agent that needs no model: it plans a greeting and a farewell file, writes them, and
/// approves work whose file exists.
struct GreeterAgent;

#[async_trait]
impl AgentBackend for GreeterAgent {
    fn name(&self) -> &str {
        "greeter"
    }

    async fn run(&self, request: AgentRequest) -> Result<AgentResponse, AgentError> {
        let output = match request.role {
            AgentRole::Planner => serde_json::json!({
                "reasoning": "one file per message, so each merges on its own",
                "tasks": [
                    {"key": "hello", "title": "Add hello.txt", "acceptance": ["hello.txt greets"]},
                    {"key": "bye", "title": "Add bye.txt", "depends_on": ["hello"]}
                ]
            })
            .to_string(),
            AgentRole::Worker => {
                let (file, text) = match request.task_key.as_deref() {
                    Some("hello") => ("hello.txt", "Hello from a custom agent\n"),
                    _ => ("bye.txt", "Goodbye from a custom agent\n"),
                };
                let path = request.workdir.join(file);
                std::fs::write(&path, text).map_err(|source| AgentError::Edit { path, source })?;
                format!("DECISION: write {file} -- the task asks for it")
            }
            AgentRole::Reviewer => {
                serde_json::json!({"verdict": "approve", "summary": "the file is there"})
                    .to_string()
            }
        };
        Ok(AgentResponse {
            output,
            transcript: Vec::new(),
        })
    }
}

fn git(dir: &Path, args: &[&str]) -> anyhow::Result<()> {
    let status = std::process::Command::new("git")
        .args([
            "-c",
            "user.name=Example",
            "-c",
            "user.email=example@factory.invalid",
        ])
        .args(args)
        .current_dir(dir)
        .status()
        .with_context(|| format!("cannot run git {args:?}"))?;
    ensure!(status.success(), "git {args:?} failed");
    Ok(())
}

fn main() -> anyhow::Result<std::process::ExitCode> {
    // Before any runtime or thread: Factory starts this program again as the supervisor of each
    // verify command (`/proc/self/exe __supervise …`).
    if let Some(code) = factory_workspace::run_supervisor_if_requested() {
        return Ok(code);
    }
    tokio::runtime::Runtime::new()?.block_on(run())?;
    Ok(std::process::ExitCode::SUCCESS)
}

async fn run() -> anyhow::Result<()> {
    let keep;
    let dir: PathBuf = match std::env::args().nth(1) {
        Some(dir) => PathBuf::from(dir),
        None => {
            keep = tempfile::tempdir()?;
            keep.path().join("repo")
        }
    };
    std::fs::create_dir_all(&dir)?;
    git(&dir, &["init", "-q", "-b", "main"])?;
    std::fs::write(dir.join("README.md"), "# greetings\n")?;
    git(&dir, &["add", "README.md"])?;
    git(&dir, &["commit", "-q", "-m", "initial"])?;

    Workspace::init(
        &dir,
        InitOptions {
            verify: Some("test -s README.md".into()),
            ..InitOptions::default()
        },
    )
    .await?;
    let ws = Workspace::open_with_agents(&dir, RoleBackends::same(Arc::new(GreeterAgent))).await?;
    let epic = ws
        .factory()
        .add_epic("Greet and say goodbye in files")
        .await?;
    let report = ws
        .start_run(ws.run_options("custom_agent example"))
        .await?
        .wait()
        .await?;
    for (spec, commit) in &report.merged {
        println!("epic {}: merged {spec} as {commit}", epic.id);
    }
    ensure!(
        report.all_merged(),
        "not everything merged: {}",
        report
            .blocked
            .iter()
            .map(|(spec, reason)| format!("{spec} blocked: {reason}"))
            .collect::<Vec<_>>()
            .join("; ")
    );
    ensure!(
        report.merged.len() == 2,
        "expected 2 merges, got {}",
        report.merged.len()
    );
    let main_files = std::process::Command::new("git")
        .args(["ls-tree", "--name-only", "main"])
        .current_dir(&dir)
        .output()?;
    let main_files = String::from_utf8_lossy(&main_files.stdout);
    ensure!(
        main_files.contains("hello.txt") && main_files.contains("bye.txt"),
        "main lacks the agent's files: {main_files}"
    );
    println!("2 tasks merged --no-ff into main by a custom agent backend");
    Ok(())
}
