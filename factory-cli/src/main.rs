//! `factory`: the command-line front end. Each command parses its input, calls one library
//! function and renders the result; the work happens in factory-core's orchestration.

mod demo;
mod render;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use factory_core::decision::DecisionFilter;
use factory_core::mail::{HUMAN, MailFilter};
use factory_workspace::{AgentSetup, InitOptions, Workspace};

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
    /// Plan new epics and work on every runnable task until nothing is left (Ctrl-C, SIGTERM
    /// or SIGHUP stop cleanly; run again to resume). One run per repository at a time.
    Run(RunArgs),
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
    /// Show the merge queue and what would happen next to each task (`--dry-run`); merges
    /// themselves happen inside `factory run`.
    Merge(MergeArgs),
    /// Remove worktrees and branches that finished or forgotten tasks left, and stale
    /// .git/worktrees entries, listing each with the reason. Keeps anything holding work found
    /// nowhere else unless --force; never touches unfinished tasks.
    Gc(GcArgs),
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
struct RunArgs {
    /// When only merges waiting on your uncommitted changes remain, keep waiting (retrying every
    /// [git] merge_retry_secs) instead of exiting 1 with what to commit or stash.
    #[arg(long)]
    wait: bool,
}

#[derive(Debug, Args)]
struct MergeArgs {
    /// Show the queue and each task's next step without changing anything.
    #[arg(long)]
    dry_run: bool,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct GcArgs {
    /// List what would be removed and kept; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Also remove worktrees with uncommitted files or commits on no branch, and branches with
    /// commits on no other branch (unfinished tasks' are still never touched).
    #[arg(long)]
    force: bool,
    /// Print JSON.
    #[arg(long)]
    json: bool,
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
    /// Cancel an epic: every unfinished task of it is cancelled (agent stopped, worktree
    /// removed, branch kept).
    Cancel {
        /// Epic id (see `factory epic list`).
        id: String,
    },
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
    /// Give a task a fresh round budget: a blocked task goes back in the queue; an unfinished
    /// one resumes with the fresh budget on the next run.
    Retry {
        /// Task id, spec id or number prefix.
        id: String,
    },
    /// Cancel a task: its agent is stopped, its worktree removed, its branch kept.
    Cancel {
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
    if let Some(code) = factory_workspace::run_supervisor_if_requested() {
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
            eprintln!("error: {}", render::error_with_hint(&e));
            render::exit_code_for(&e)
        }
    }
}

/// The directory to start looking for the repository from.
fn start_dir(repo: Option<PathBuf>) -> Result<PathBuf> {
    match repo {
        Some(p) => Ok(p),
        None => std::env::current_dir().context("cannot read the current directory"),
    }
}

async fn open(repo: &Path) -> Result<Workspace> {
    Ok(Workspace::open(repo).await?)
}

/// The epic's text from an argument, a file or stdin; refuses text that is not UTF-8.
fn epic_text(text: Option<String>, file: Option<PathBuf>) -> Result<String> {
    let bytes = match (text, file) {
        (Some(t), _) => return Ok(t),
        (None, Some(path)) if path.as_os_str() == "-" => {
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut bytes)
                .context("reading the epic from stdin")?;
            (bytes, "stdin".to_owned())
        }
        (None, Some(path)) => (
            std::fs::read(&path).with_context(|| {
                format!("cannot read {}: pass an existing file", path.display())
            })?,
            path.display().to_string(),
        ),
        (None, None) => bail!("give the epic text or --file PATH"),
    };
    match String::from_utf8(bytes.0) {
        Ok(text) => Ok(text),
        Err(e) => bail!(
            "{} is not UTF-8 text (invalid byte at offset {}): save it as UTF-8 and try again",
            bytes.1,
            e.utf8_error().valid_up_to()
        ),
    }
}

async fn dispatch(cli: Cli) -> Result<ExitCode> {
    let repo = start_dir(cli.repo.clone())?;
    match cli.command {
        Command::Init(args) => {
            let agent = match args.agent {
                Some(command) => AgentSetup::Command(command),
                None => AgentSetup::Unset,
            };
            let options = InitOptions {
                main_branch: args.main_branch,
                verify: args.verify,
                agent,
            };
            let root = Workspace::init(&repo, options).await?;
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
            let text = epic_text(text, file)?;
            let ws = open(&repo).await?;
            let epic = ws.factory().add_epic(&text).await?;
            println!("Added epic {}: {}", epic.id, render::escape(&epic.title));
            println!("Run `factory run` to plan and build it.");
            Ok(ExitCode::SUCCESS)
        }
        Command::Epic(EpicCommand::List(JsonArg { json })) => {
            let ws = open(&repo).await?;
            let epics = ws.factory().epics().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&epics)?);
            } else {
                print!("{}", render::escape(&render::epics(&epics)));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Epic(EpicCommand::Cancel { id }) => {
            let ws = open(&repo).await?;
            let epic = ws.factory().cancel_epic(&id).await?;
            println!(
                "Cancelled epic {}: {} (task branches are kept).",
                epic.id,
                render::escape(&epic.title)
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Run(RunArgs { wait }) => {
            let ws = open(&repo).await?;
            ws.require_agents()?;
            let mut options = ws.run_options("factory run");
            options.wait_for_checkout = wait;
            let end = render::run_with_progress(&ws, options).await?;
            Ok(render::run_outcome(&end, Some(wait)))
        }
        Command::Merge(MergeArgs { dry_run, json }) => {
            if !dry_run {
                eprintln!(
                    "error: `factory merge` does not merge by itself: merges happen inside `factory run`, one at a time; \
                     `factory merge --dry-run` shows the queue and what would happen next"
                );
                return Ok(ExitCode::from(2));
            }
            let ws = open(&repo).await?;
            let preview = ws.factory().merge_queue_preview().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&preview)?);
            } else {
                print!("{}", render::escape(&render::merge_queue(&preview)));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Gc(GcArgs {
            dry_run,
            force,
            json,
        }) => {
            let ws = open(&repo).await?;
            let report = ws.gc(dry_run, force).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", render::escape(&render::gc(&report)));
            }
            Ok(if report.failed.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Doctor(JsonArg { json }) => {
            let ws = open(&repo).await?;
            let report = ws.sandbox_report().await?;
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
            let ws = open(&repo).await?;
            let status = ws.factory().status().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                print!("{}", render::escape(&render::status(&status)));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Tasks(JsonArg { json }) => {
            let ws = open(&repo).await?;
            let tasks = ws.factory().tasks().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&tasks)?);
            } else {
                print!("{}", render::escape(&render::tasks(&tasks)));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Spec(SpecCommand::Show { id, file }) => {
            let ws = open(&repo).await?;
            let task = ws.factory().find_task(&id).await?;
            let text = render::spec(ws.factory().layout(), &task, file.as_deref())?;
            print!("{}", render::escape(&text));
            Ok(ExitCode::SUCCESS)
        }
        Command::Task(TaskCommand::Retry { id }) => {
            let ws = open(&repo).await?;
            let task = ws.factory().retry_task(&id).await?;
            println!(
                "{} is queued again ({}) with a fresh round budget. Run `factory run`.",
                task.spec_id, task.state
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Task(TaskCommand::Cancel { id }) => {
            let ws = open(&repo).await?;
            let task = ws.factory().cancel_task(&id).await?;
            println!(
                "Cancelled {}; its worktree is removed and branch {} kept.",
                task.spec_id,
                task.branch.unwrap_or_else(|| task.spec_id.branch())
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Log { id } => {
            let ws = open(&repo).await?;
            let task = ws.factory().find_task(&id).await?;
            let text = render::logs(ws.factory().layout(), &task)?;
            print!("{}", render::escape(&text));
            Ok(ExitCode::SUCCESS)
        }
        Command::Mail(MailArgs { command, all }) => {
            let ws = open(&repo).await?;
            match command {
                Some(MailCommand::Send { to, subject, body }) => {
                    if body.trim().is_empty() {
                        bail!("the message is empty: write something to send");
                    }
                    let mail = ws.factory().mail_agent(&to, &subject, &body).await?;
                    println!(
                        "Sent mail {} to {}; it is delivered in the agent's next prompt.",
                        mail.id.0,
                        render::escape(&to)
                    );
                }
                None => {
                    let filter = MailFilter {
                        to: if all { None } else { Some(HUMAN.to_owned()) },
                        unread_only: false,
                    };
                    let mail = ws.factory().mail(filter).await?;
                    print!("{}", render::escape(&render::mail(&mail)));
                    if !all {
                        let unread: Vec<_> = mail
                            .iter()
                            .filter(|m| m.read_at.is_none())
                            .map(|m| m.id)
                            .collect();
                        ws.factory().mark_read(&unread).await?;
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Decisions { task, json } => {
            let ws = open(&repo).await?;
            let task_id = match task {
                Some(id) => Some(ws.factory().find_task(&id).await?.id),
                None => None,
            };
            let decisions = ws
                .factory()
                .decisions(DecisionFilter {
                    epic_id: None,
                    task_id,
                })
                .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&decisions)?);
            } else {
                print!("{}", render::escape(&render::decisions(&decisions)));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo { dir } => demo::run(dir).await,
    }
}
