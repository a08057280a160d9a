//! `factory`: the command-line front end. Each command parses its input, calls one library
//! function and renders the result; the work happens in factory-core's orchestration.

mod demo;
mod render;
mod workspace;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use factory_core::decision::DecisionFilter;
use factory_core::mail::{HUMAN, MailFilter};

use crate::workspace::Workspace;

/// Factory runs AI coding agents as a software factory: an epic in plain text goes in, a planner
/// splits it into tasks, workers implement each task in its own git worktree, a reviewer and your
/// test command judge each round, and a merge queue merges the results `--no-ff` into main.
#[derive(Debug, Parser)]
#[command(name = "factory", version, max_term_width = 100)]
struct Cli {
    /// The repository to work in (default: the current directory or its enclosing repository).
    #[arg(long, short = 'C', global = true, value_name = "PATH")]
    repo: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create .factory/ (config.toml, database) in a git repository and hide it from git.
    Init(InitArgs),
    /// Add or list epics (feature requests in plain text).
    #[command(subcommand)]
    Epic(EpicCommand),
    /// Plan new epics and work on every runnable task until nothing is left (Ctrl-C stops
    /// cleanly; run again to resume).
    Run,
    /// Epics, tasks and agents at a glance.
    Status(JsonArg),
    /// Every task with its state, rounds and branch.
    Tasks(JsonArg),
    /// Inspect a task's spec dir.
    #[command(subcommand)]
    Spec(SpecCommand),
    /// Act on a task.
    #[command(subcommand)]
    Task(TaskCommand),
    /// Show a task's agent transcripts and verify logs.
    Log {
        /// Task id, spec id (e.g. 002-add-title-case) or its number prefix (002).
        id: String,
    },
    /// Read your mail from agents, or send mail to an agent.
    Mail(MailArgs),
    /// The decision log: what each agent decided and why.
    Decisions {
        /// Only this task's decisions.
        #[arg(long)]
        task: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// What the filesystem sandbox allows agents and verify commands here (exit 1 when it is
    /// required but cannot be enforced).
    Doctor(JsonArg),
    /// Build a sample repository with its own tests and run a 3-task epic through the whole
    /// pipeline with a scripted agent (no model or account needed).
    Demo {
        /// Where to create the sample repository (must not exist or be empty; default: a new
        /// temporary directory, printed and kept).
        #[arg(long, value_name = "PATH")]
        dir: Option<PathBuf>,
    },
}

#[derive(Debug, Args)]
struct InitArgs {
    /// Branch tasks start from and merge into (default: the branch checked out now, else main).
    #[arg(long)]
    main_branch: Option<String>,
    /// Verify command run in each task worktree (default: guessed from the repository, e.g.
    /// `cargo test` when Cargo.toml exists).
    #[arg(long)]
    verify: Option<String>,
    /// Agent command for every role (sets [agent] kind = "command").
    #[arg(long)]
    agent: Option<String>,
}

#[derive(Debug, Args)]
struct JsonArg {
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Subcommand)]
enum EpicCommand {
    /// Add an epic; the next `factory run` plans it.
    Add {
        /// The request text.
        #[arg(conflicts_with = "file", required_unless_present = "file")]
        text: Option<String>,
        /// Read the request from a file (`-` for stdin).
        #[arg(long, short)]
        file: Option<PathBuf>,
    },
    /// List epics.
    List(JsonArg),
}

#[derive(Debug, Subcommand)]
enum SpecCommand {
    /// Print a task's spec.md (or another artifact with --file) and list its artifacts.
    Show {
        /// Task id, spec id or number prefix.
        id: String,
        /// Print this artifact instead of spec.md (e.g. qa_report.md).
        #[arg(long)]
        file: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum TaskCommand {
    /// Put a blocked task back in the queue with a fresh round budget.
    Retry {
        /// Task id, spec id or number prefix.
        id: String,
    },
}

#[derive(Debug, Args)]
struct MailArgs {
    #[command(subcommand)]
    command: Option<MailCommand>,
    /// Include mail already read and mail to agents.
    #[arg(long)]
    all: bool,
}

#[derive(Debug, Subcommand)]
enum MailCommand {
    /// Send a message to an agent; it reads it in its next prompt.
    Send {
        /// Recipient: an agent id such as worker/002-add-title-case (see `factory status`).
        #[arg(long)]
        to: String,
        /// One-line subject.
        #[arg(long, default_value = "message from human")]
        subject: String,
        /// The message.
        body: String,
    },
}

fn main() -> ExitCode {
    // `factory __supervise …`: this program as the supervisor of one agent or verify command.
    if let Some(code) = factory_agents::supervise::run_if_requested() {
        return code;
    }
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FACTORY_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", render::one_line_error(&e));
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(cli: Cli) -> Result<ExitCode> {
    let repo = cli.repo.clone();
    match cli.command {
        Command::Init(args) => {
            let agent = match args.agent {
                Some(command) => workspace::AgentSetup::Command(command),
                None => workspace::AgentSetup::Unset,
            };
            let root = workspace::init(repo, args.main_branch, args.verify, agent).await?;
            println!(
                "Initialized Factory in {} (config: .factory/config.toml).",
                root.join(".factory").display()
            );
            println!(
                "Next: set [agent] in .factory/config.toml, then `factory epic add \"…\"` and `factory run`."
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Epic(EpicCommand::Add { text, file }) => {
            let text = match (text, file) {
                (Some(t), _) => t,
                (None, Some(path)) if path.as_os_str() == "-" => {
                    std::io::read_to_string(std::io::stdin())
                        .context("reading the epic from stdin")?
                }
                (None, Some(path)) => std::fs::read_to_string(&path).with_context(|| {
                    format!("cannot read {}: pass an existing file", path.display())
                })?,
                (None, None) => bail!("give the epic text or --file PATH"),
            };
            let ws = Workspace::open(repo).await?;
            let epic = ws.factory.add_epic(&text).await?;
            println!("Added epic {}: {}", epic.id, epic.title);
            println!("Run `factory run` to plan and build it.");
            Ok(ExitCode::SUCCESS)
        }
        Command::Epic(EpicCommand::List(JsonArg { json })) => {
            let ws = Workspace::open(repo).await?;
            let epics = ws.factory.store().list_epics().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&epics)?);
            } else {
                print!("{}", render::epics(&epics));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Run => {
            let ws = Workspace::open(repo).await?;
            ws.require_agents()?;
            let report = render::run_with_progress(&ws.factory).await?;
            Ok(render::run_outcome(&report))
        }
        Command::Doctor(JsonArg { json }) => {
            let ws = Workspace::open(repo).await?;
            let report = ws.sandbox.report().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(report)?);
            } else {
                print!("{report}");
            }
            Ok(if report.required && !report.is_enforced() {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Status(JsonArg { json }) => {
            let ws = Workspace::open(repo).await?;
            let status = ws.factory.status().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                print!("{}", render::status(&status));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Tasks(JsonArg { json }) => {
            let ws = Workspace::open(repo).await?;
            let tasks = ws.factory.store().list_tasks(None).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&tasks)?);
            } else {
                print!("{}", render::tasks(&tasks));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Spec(SpecCommand::Show { id, file }) => {
            let ws = Workspace::open(repo).await?;
            let task = ws.factory.find_task(&id).await?;
            print!(
                "{}",
                render::spec(ws.factory.layout(), &task, file.as_deref())?
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Task(TaskCommand::Retry { id }) => {
            let ws = Workspace::open(repo).await?;
            let task = ws.factory.retry_task(&id).await?;
            println!(
                "{} is queued again ({}). Run `factory run`.",
                task.spec_id, task.state
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Log { id } => {
            let ws = Workspace::open(repo).await?;
            let task = ws.factory.find_task(&id).await?;
            print!("{}", render::logs(ws.factory.layout(), &task)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Mail(MailArgs { command, all }) => {
            let ws = Workspace::open(repo).await?;
            match command {
                Some(MailCommand::Send { to, subject, body }) => {
                    if body.trim().is_empty() {
                        bail!("the message is empty: write something to send");
                    }
                    let mail = ws.factory.mail_agent(&to, &subject, &body).await?;
                    println!(
                        "Sent mail {} to {to}; it is delivered in the agent's next prompt.",
                        mail.id.0
                    );
                }
                None => {
                    let filter = MailFilter {
                        to: if all { None } else { Some(HUMAN.to_owned()) },
                        unread_only: false,
                    };
                    let mail = ws.factory.store().list_mail(filter).await?;
                    print!("{}", render::mail(&mail));
                    if !all {
                        for m in mail.iter().filter(|m| m.read_at.is_none()) {
                            ws.factory.store().mark_mail_read(m.id).await?;
                        }
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Decisions { task, json } => {
            let ws = Workspace::open(repo).await?;
            let task_id = match task {
                Some(id) => Some(ws.factory.find_task(&id).await?.id),
                None => None,
            };
            let decisions = ws
                .factory
                .store()
                .list_decisions(DecisionFilter {
                    epic_id: None,
                    task_id,
                })
                .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&decisions)?);
            } else {
                print!("{}", render::decisions(&decisions));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo { dir } => demo::run(dir).await,
    }
}
