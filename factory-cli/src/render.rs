//! Turning reports and events into text for people.

use std::fmt::Write as _;
use std::process::ExitCode;

use std::borrow::Cow;

use anyhow::{Context, Result};
use factory_core::decision::Decision;
use factory_core::epic::{Epic, InvalidEpic};
use factory_core::event::{DomainEvent, Verdict};
use factory_core::layout::Layout;
use factory_core::mail::Mail;
use factory_core::orchestrate::{
    GcEntry, GcReport, MergeQueuePreview, NextMergeStep, OrchestrateError, RunOptions, RunReport,
    StatusReport,
};
use factory_core::ports::VcsError;
use factory_core::spec::artifact;
use factory_core::task::{Task, TaskState};
use factory_workspace::{OpenError, Workspace};

/// Text from agents, specs, epics or the repository, made safe to print: terminal control
/// characters (escape sequences, carriage returns, bells) are shown as `\u{..}` escapes instead
/// of acting on the terminal. New lines and tabs are kept.
pub fn escape(text: &str) -> Cow<'_, str> {
    if !text
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() && c != '\n' && c != '\t' {
            let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// What to do about an error, for the kinds a user can act on; the libraries' messages say what
/// happened, this says what to type next.
fn hint(e: &anyhow::Error) -> Option<String> {
    for cause in e.chain() {
        if let Some(e) = cause.downcast_ref::<OpenError>() {
            return match e {
                OpenError::NoSuchPath { .. } => Some("pass an existing directory".into()),
                OpenError::NotARepository(_) => {
                    Some("run `git init` there first, or pass --repo PATH".into())
                }
                OpenError::BareRepository(path) => Some(format!(
                    "clone it (`git clone {} work`) and run Factory in the clone",
                    path.display()
                )),
                OpenError::NoCommits(_) => Some(
                    "make a first commit (e.g. `git commit --allow-empty -m init`) and try again"
                        .into(),
                ),
                OpenError::NotInitialized { .. } => Some("run `factory init` first".into()),
                OpenError::AlreadyInitialized(_) => {
                    Some("edit that file to change settings".into())
                }
                OpenError::CorruptDatabase { path, .. } => Some(format!(
                    "restore it from a backup, or move it aside (`mv {0} {0}.broken`) to start a \
                     new database; spec numbers then continue after the existing spec dirs",
                    path.display()
                )),
                _ => None,
            };
        }
        if let Some(e) = cause.downcast_ref::<OrchestrateError>() {
            return match e {
                OrchestrateError::InvalidEpic(InvalidEpic::Blank) => Some(
                    "describe the feature you want, e.g. `factory epic add \"Add a /healthz endpoint\"`"
                        .into(),
                ),
                OrchestrateError::InvalidEpic(InvalidEpic::TooLong { .. }) => {
                    Some("shorten the epic, or split it into several".into())
                }
                OrchestrateError::UnknownTask(_) => {
                    Some("run `factory tasks` to list task ids and spec ids".into())
                }
                OrchestrateError::UnknownEpic(_) => {
                    Some("run `factory epic list` to list epic ids".into())
                }
                OrchestrateError::UnknownRecipient { .. } => Some(
                    "address planner/epic-N, worker/<spec-id> or reviewer/<spec-id> (see `factory tasks`), or human"
                        .into(),
                ),
                OrchestrateError::WrongTaskState { .. } | OrchestrateError::WrongEpicState { .. } => {
                    Some("see `factory status`".into())
                }
                OrchestrateError::VerifyCommandNotFound { .. } => Some(
                    "install it or change [verify] command in .factory/config.toml".into(),
                ),
                OrchestrateError::AlreadyRunning(lease) => Some(format!(
                    "wait for it to finish or stop it (`kill {}`); the lease of a run that died \
                     expires by itself",
                    lease.holder.pid
                )),
                OrchestrateError::LeaseLost => {
                    Some("another run took over; see `factory status`".into())
                }
                _ => None,
            };
        }
        if let Some(VcsError::MissingBranch(_)) = cause.downcast_ref::<VcsError>() {
            return None;
        }
    }
    None
}

/// The error on one line, with what to do about it.
pub fn error_with_hint(e: &anyhow::Error) -> String {
    let line = one_line_error(e);
    match hint(e) {
        Some(hint) if !line.contains(&hint) => format!("{line}; {hint}"),
        _ => line,
    }
}

/// The exit code for an error: 2 when another run holds the repository, else 1.
pub fn exit_code_for(e: &anyhow::Error) -> ExitCode {
    let held = e.chain().any(|c| {
        matches!(
            c.downcast_ref::<OrchestrateError>(),
            Some(OrchestrateError::AlreadyRunning(_))
        )
    });
    if held {
        ExitCode::from(2)
    } else {
        ExitCode::FAILURE
    }
}

/// The error and its causes on one line, without repeating a cause already in the message.
pub fn one_line_error(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    escape(&line.replace('\n', " ")).into_owned()
}

fn short(commit: &str) -> &str {
    commit.get(..10).unwrap_or(commit)
}

fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let line = |cells: Vec<String>, out: &mut String| {
        let mut l = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                l.push_str(c);
            } else {
                let _ = write!(l, "{c:<w$}  ", w = widths[i]);
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(header.iter().map(|s| s.to_string()).collect(), &mut out);
    for row in rows {
        line(row.clone(), &mut out);
    }
    out
}

/// `factory epic list`.
pub fn epics(epics: &[Epic]) -> String {
    if epics.is_empty() {
        return "No epics yet: add one with `factory epic add \"…\"`.\n".into();
    }
    let rows: Vec<Vec<String>> = epics
        .iter()
        .map(|e| vec![e.id.to_string(), e.state.to_string(), e.title.clone()])
        .collect();
    table(&["EPIC", "STATE", "TITLE"], &rows)
}

fn task_note(t: &Task) -> String {
    if let Some(r) = &t.blocked_reason
        && matches!(t.state, TaskState::Blocked | TaskState::Failed)
    {
        return r.clone();
    }
    if let Some(r) = &t.waiting_reason {
        return format!("waiting: {r}");
    }
    if let Some(c) = &t.merge_commit {
        return format!("merged {}", short(c));
    }
    String::new()
}

/// `factory tasks`.
pub fn tasks(tasks: &[Task]) -> String {
    if tasks.is_empty() {
        return "No tasks yet: `factory run` plans added epics into tasks.\n".into();
    }
    let rows: Vec<Vec<String>> = tasks
        .iter()
        .map(|t| {
            vec![
                t.id.to_string(),
                t.spec_id.to_string(),
                t.state.to_string(),
                format!("{}/{}", t.attempts, t.qa_rounds),
                t.branch.clone().unwrap_or_else(|| "-".into()),
                task_note(t),
            ]
        })
        .collect();
    table(
        &["ID", "SPEC", "STATE", "ROUNDS/QA", "BRANCH", "NOTE"],
        &rows,
    )
}

/// `factory status`.
pub fn status(status: &StatusReport) -> String {
    if status.epics.is_empty() {
        return "No epics yet: add one with `factory epic add \"…\"`, then `factory run`.\n".into();
    }
    let mut out = String::new();
    for e in &status.epics {
        let done = e
            .tasks
            .iter()
            .filter(|t| t.state == TaskState::Completed)
            .count();
        let _ = writeln!(
            out,
            "Epic {} [{}] {} — {done}/{} merged",
            e.epic.id,
            e.epic.state,
            e.epic.title,
            e.tasks.len()
        );
        if let Some(r) = &e.epic.blocked_reason {
            let _ = writeln!(out, "  reason: {r}");
        }
        for t in &e.tasks {
            let note = task_note(t);
            let _ = writeln!(
                out,
                "  {:<40} {:<12} rounds {}{}",
                t.spec_id.to_string(),
                t.state.to_string(),
                t.attempts,
                if note.is_empty() {
                    String::new()
                } else {
                    format!("  {note}")
                }
            );
        }
    }
    let attention: Vec<_> = status
        .agents
        .iter()
        .filter(|a| a.state != factory_core::agent::AgentState::Idle)
        .collect();
    if !attention.is_empty() {
        out.push_str("Agents:\n");
        for a in attention {
            let label = match a.state {
                factory_core::agent::AgentState::Failed => "needs attention",
                s => s.as_str(),
            };
            let _ = writeln!(out, "  {:<40} {label}", a.id.to_string());
        }
    }
    out
}

/// `factory gc`: each thing removed (or, in a dry run, to be removed) and each kept, with why.
pub fn gc(report: &GcReport) -> String {
    let mut out = String::new();
    let done = if report.dry_run {
        "Would remove"
    } else {
        "Removed"
    };
    let line = |out: &mut String, verb: &str, entry: &GcEntry| {
        let _ = writeln!(
            out,
            "{verb} {} {}: {}",
            entry.kind, entry.name, entry.reason
        );
    };
    for entry in &report.removed {
        line(&mut out, done, entry);
    }
    for entry in &report.kept {
        line(&mut out, "Kept", entry);
    }
    for entry in &report.failed {
        line(&mut out, "Could not remove", entry);
    }
    if report.branches_kept_by_config {
        out.push_str("Branches: none considered, [merge] keep_branches = true keeps them.\n");
    }
    if report.unfinished_left > 0 {
        let _ = writeln!(
            out,
            "Left alone: {} worktree(s) or branch(es) of unfinished tasks.",
            report.unfinished_left
        );
    }
    let forceable = report.kept.iter().filter(|e| e.forceable).count();
    if forceable > 0 {
        let _ = writeln!(
            out,
            "{forceable} kept item(s) hold work found nowhere else; check them, then `factory gc --force` removes them too."
        );
    }
    if report.removed.is_empty() && report.kept.is_empty() && report.failed.is_empty() {
        out.push_str("Nothing to clean up.\n");
    } else if report.dry_run {
        out.push_str("Dry run: nothing was changed. Run `factory gc` to remove these.\n");
    }
    out
}

/// What the merge queue's next step would do, in words.
fn next_merge_step(step: &NextMergeStep, main: &str) -> String {
    match step {
        NextMergeStep::AlreadyMerged => {
            format!("already on {main}: recorded as merged, nothing else to do")
        }
        NextMergeStep::Merge => format!("up to date with {main}: merged --no-ff as it is"),
        NextMergeStep::Rebase => format!(
            "needs a rebase onto {main}, which applies cleanly; verify runs again, then it is merged"
        ),
        NextMergeStep::RebaseConflicts { files } => format!(
            "needs a rebase onto {main}, which conflicts in: {}",
            files.join(", ")
        ),
        NextMergeStep::WaitForCheckout { files } => format!(
            "would wait: your uncommitted changes to {} in your checkout of {main} would be overwritten; commit or stash them",
            files.join(", ")
        ),
        NextMergeStep::BranchGone => {
            "its branch is gone: the task would be blocked, nothing merged".to_owned()
        }
        NextMergeStep::BranchMoved { verified, tip } => format!(
            "its branch moved after it passed verify ({} passed, the tip is now {}): the task would be blocked, nothing merged; retry it to verify the new tip",
            short(verified),
            short(tip)
        ),
        NextMergeStep::Unknown { reason } => format!("cannot tell: {reason}"),
    }
}

/// `factory merge --dry-run`.
pub fn merge_queue(preview: &MergeQueuePreview) -> String {
    if preview.queue.is_empty() {
        return "The merge queue is empty: no task is waiting to be merged.\n".into();
    }
    let mut out = format!(
        "Merge queue into {} ({} task(s), first merged first; judged against {} as it is now):\n",
        preview.main,
        preview.queue.len(),
        preview.main
    );
    for (i, queued) in preview.queue.iter().enumerate() {
        let _ = writeln!(out, "{:>3}. {}  {}", i + 1, queued.spec_id, queued.branch);
        let _ = writeln!(
            out,
            "     next: {}",
            next_merge_step(&queued.next, &preview.main)
        );
        if let Some(reason) = &queued.waiting_reason {
            let _ = writeln!(out, "     last attempt: {reason}");
        }
    }
    out.push_str("Nothing was changed: merges happen in `factory run`, one at a time.\n");
    out
}

/// `factory spec show`.
pub fn spec(layout: &Layout, task: &Task, file: Option<&str>) -> Result<String> {
    let dir = layout.spec_dir(&task.spec_id);
    let name = file.unwrap_or(artifact::SPEC_MD);
    if name.contains('/') || name.contains("..") {
        anyhow::bail!("--file takes a file name in the spec dir, e.g. qa_report.md");
    }
    let path = dir.join(name);
    let body = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "{} has no {name} yet (the task is {}); artifacts appear once the task is assigned",
            task.spec_id, task.state
        )
    })?;
    let mut out = body;
    if !out.ends_with('\n') {
        out.push('\n');
    }
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    let _ = writeln!(out, "\n--- {} ({})", dir.display(), names.join(", "));
    Ok(out)
}

/// `factory log`: every transcript and verify log of a task, in round order.
pub fn logs(layout: &Layout, task: &Task) -> Result<String> {
    let dir = layout.logs_dir(&task.spec_id.to_string());
    let Ok(rd) = std::fs::read_dir(&dir) else {
        return Ok(format!(
            "No logs for {} yet (it is {}).\n",
            task.spec_id, task.state
        ));
    };
    let mut files: Vec<_> = rd.flatten().map(|e| e.path()).collect();
    files.sort_by_key(|p| {
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let round: u32 = name
            .rsplit("round-")
            .next()
            .and_then(|r| r.split('.').next())
            .and_then(|r| r.parse().ok())
            .unwrap_or(0);
        let order = ["worker", "reviewer", "verify-qa", "verify-pre-merge"]
            .iter()
            .position(|p| name.starts_with(p))
            .unwrap_or(9);
        (round, order, name)
    });
    let mut out = String::new();
    for path in files {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let _ = writeln!(out, "=== {name}");
        if name.ends_with(".jsonl") {
            for line in text.lines() {
                match serde_json::from_str::<factory_core::ports::TranscriptEntry>(line) {
                    Ok(e) => {
                        let kind = serde_json::to_value(e.kind)
                            .ok()
                            .and_then(|v| v.as_str().map(str::to_owned))
                            .unwrap_or_default();
                        for (i, l) in e.text.lines().enumerate() {
                            let tag = if i == 0 { kind.as_str() } else { "" };
                            let _ = writeln!(out, "{} {tag:<7} {l}", e.at.format("%H:%M:%S"));
                        }
                    }
                    Err(_) => {
                        let _ = writeln!(out, "{line}");
                    }
                }
            }
        } else {
            out.push_str(&text);
        }
    }
    Ok(out)
}

/// `factory mail`.
pub fn mail(mail: &[Mail]) -> String {
    if mail.is_empty() {
        return "No mail.\n".into();
    }
    let mut out = String::new();
    for m in mail {
        let unread = if m.read_at.is_none() { " (new)" } else { "" };
        let _ = writeln!(
            out,
            "#{} {} {} → {}{unread}: {}\n    {}",
            m.id.0,
            m.created_at.format("%Y-%m-%d %H:%M"),
            m.from,
            m.to,
            m.subject,
            m.body.trim().replace('\n', "\n    ")
        );
    }
    out
}

/// `factory decisions`.
pub fn decisions(decisions: &[Decision]) -> String {
    if decisions.is_empty() {
        return "No decisions recorded yet.\n".into();
    }
    let mut out = String::new();
    for d in decisions {
        let _ = writeln!(
            out,
            "{} {}: {}",
            d.created_at.format("%H:%M:%S"),
            d.actor,
            d.decision
        );
        if !d.reasoning.trim().is_empty() {
            let _ = writeln!(
                out,
                "    why: {}",
                d.reasoning.trim().replace('\n', "\n         ")
            );
        }
    }
    out
}

/// One progress line for an event, or nothing for events people need not see.
pub fn progress_line(event: &DomainEvent) -> Option<String> {
    Some(match event {
        DomainEvent::TaskCreated {
            spec_id,
            title,
            depends_on,
            ..
        } => {
            let after = if depends_on.is_empty() {
                String::new()
            } else {
                format!(
                    " (after task {})",
                    depends_on
                        .iter()
                        .map(|d| d.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            format!("planned  {spec_id}: {title}{after}")
        }
        DomainEvent::TaskReady { spec_id, .. } => format!("[{spec_id}] ready"),
        DomainEvent::AgentStarted {
            agent_id,
            round,
            role,
            ..
        } => {
            let scope = agent_id.as_str().split_once('/').map_or("", |(_, s)| s);
            match role {
                factory_core::agent::AgentRole::Planner => format!("planning {scope}…"),
                role => format!("[{scope}] {role} round {round}…"),
            }
        }
        DomainEvent::QaReported {
            spec_id,
            round,
            verdict,
            summary,
            ..
        } => {
            let v = match verdict {
                Verdict::Approve => "approved",
                Verdict::ChangesRequested => "changes requested",
            };
            let summary: String = summary.chars().take(90).collect();
            format!("[{spec_id}] review round {round}: {v} — {summary}")
        }
        DomainEvent::VerifyCompleted {
            spec_id,
            round,
            passed,
            duration_ms,
            stage,
            ..
        } => {
            let stage = match stage {
                factory_core::event::VerifyStage::Qa => "verify",
                factory_core::event::VerifyStage::PreMerge => "re-verify",
            };
            let result = if *passed { "passed" } else { "FAILED" };
            format!(
                "[{spec_id}] {stage} round {round}: {result} ({:.1} s)",
                *duration_ms as f64 / 1000.0
            )
        }
        DomainEvent::MergeCompleted {
            spec_id, commit, ..
        } => {
            format!("[{spec_id}] merged --no-ff as {}", short(commit))
        }
        DomainEvent::MergeWaiting {
            spec_id, reason, ..
        } => format!("[{spec_id}] merge waiting: {reason}"),
        DomainEvent::TaskStateChanged {
            spec_id,
            to: TaskState::Blocked,
            reason,
            ..
        } => {
            format!(
                "[{spec_id}] BLOCKED: {}",
                reason.clone().unwrap_or_default()
            )
        }
        DomainEvent::MailSent {
            from, to, subject, ..
        } if to == factory_core::mail::HUMAN => {
            format!("mail from {from}: {subject} (read with `factory mail`)")
        }
        _ => return None,
    })
}

/// How a run ended, as `factory run` reports it.
pub struct RunEnd {
    /// What the run did.
    pub report: RunReport,
    /// The signal that stopped it (SIGINT, SIGTERM, SIGHUP), if one did.
    pub signal: Option<i32>,
}

/// Runs the factory, printing a progress line per step, until done or stopped by SIGINT,
/// SIGTERM or SIGHUP (a second SIGINT exits at once; child processes die with Factory).
pub async fn run_with_progress(ws: &Workspace, options: RunOptions) -> Result<RunEnd> {
    use tokio::signal::unix::{SignalKind, signal};
    for ended in ws.end_leftover_children().await {
        println!("{}", escape(&ended.to_string()));
    }
    let handle = ws.start_run(options).await?;
    let mut events = handle.events();
    let stopper = handle.stopper();
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;
    let mut terminate = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    let mut hangup = signal(SignalKind::hangup()).context("cannot listen for SIGHUP")?;
    let mut stopped_by: Option<i32> = None;
    let print = |event: &DomainEvent| {
        if let Some(line) = progress_line(event) {
            println!("{}", escape(&line));
        }
    };
    let run = handle.wait();
    tokio::pin!(run);
    let result = loop {
        let signo = tokio::select! {
            result = &mut run => break result,
            next = events.next() => {
                match next {
                    Ok(Some(stored)) => print(&stored.event),
                    Ok(None) => {}
                    Err(e) => eprintln!("warning: cannot read the event journal: {e}"),
                }
                continue;
            }
            _ = interrupt.recv() => 2,
            _ = terminate.recv() => 15,
            _ = hangup.recv() => 1,
        };
        if stopped_by.is_some() && signo == 2 {
            // A second Ctrl-C: leave now; the kernel ends our children with us.
            std::process::exit(130);
        }
        if stopped_by.is_none() {
            eprintln!("stopping at the next step (Ctrl-C again to abort now)…");
        }
        stopped_by.get_or_insert(signo);
        stopper.stop();
    };
    // Everything the run committed is in the journal: print the rest without waiting.
    match events.drain().await {
        Ok(rest) => rest.iter().for_each(|stored| print(&stored.event)),
        Err(e) => eprintln!("warning: cannot read the event journal: {e}"),
    }
    Ok(RunEnd {
        report: result?,
        signal: stopped_by,
    })
}

/// The closing lines of `factory run` and its exit code: 0 when everything merged, 1 when
/// something is blocked, waiting or unplanned, 128 + the signal when stopped by one.
pub fn run_outcome(end: &RunEnd, wait: Option<bool>) -> ExitCode {
    let report = &end.report;
    let secs = report.elapsed_ms as f64 / 1000.0;
    let nothing = report.merged.is_empty()
        && report.blocked.is_empty()
        && report.waiting.is_empty()
        && report.failed_epics.is_empty();
    if nothing && report.unfinished.is_empty() && !report.stopped {
        println!("Nothing to do: every epic is done. Add one with `factory epic add \"…\"`.");
        return ExitCode::SUCCESS;
    }
    println!(
        "Run finished in {secs:.1} s: {} merged, {} blocked, {} waiting, {} unfinished; {} QA round(s).",
        report.merged.len(),
        report.blocked.len(),
        report.waiting.len(),
        report.unfinished.len(),
        report.qa_rounds
    );
    if report.stopped {
        eprintln!("Stopped. Run `factory run` again to resume; merged work is kept.");
        let code = 128 + end.signal.unwrap_or(2);
        return ExitCode::from(u8::try_from(code).unwrap_or(130));
    }
    for failure in &report.failed_epics {
        eprintln!(
            "planning epic {} failed: {}",
            failure.epic_id,
            escape(&failure.reason)
        );
    }
    for (spec, reason) in &report.blocked {
        eprintln!("blocked {spec}: {}", escape(reason));
    }
    for (spec, reason) in &report.waiting {
        eprintln!("waiting {spec}: {}", escape(reason));
    }
    if report.all_merged() {
        return ExitCode::SUCCESS;
    }
    if !report.failed_epics.is_empty() {
        eprintln!(
            "error: planning failed for {} epic(s); fix the planner agent and run `factory run` again",
            report.failed_epics.len()
        );
    } else if report.blocked.is_empty() && !report.waiting.is_empty() && wait != Some(true) {
        eprintln!(
            "error: merges are waiting, for the reasons above (your uncommitted changes, or a git command or lock in the way); once they are resolved, run `factory run` again (or `factory run --wait` to keep waiting)"
        );
    } else {
        eprintln!(
            "error: not everything merged; see `factory status`, fix the cause, then `factory task retry ID` and `factory run`"
        );
    }
    ExitCode::FAILURE
}
