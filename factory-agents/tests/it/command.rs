//! CommandAgent: prompt on stdin, FACTORY_* variables, exit handling, transcript.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use factory_agents::CommandAgent;
use factory_core::agent::AgentRole;
use factory_core::ports::{AgentBackend, AgentError, TranscriptKind};

use crate::fixture::{FixedClock, planner_request, process_sandbox, task_dirs, task_request};
use crate::output::{MIB, status_bytes};

/// Writes `body` as a shell script into `dir` and returns the command line that runs it.
fn script(dir: &Path, body: &str) -> String {
    let path = dir.join("agent.sh");
    std::fs::write(&path, format!("#!/bin/sh\n{body}")).unwrap();
    format!("sh '{}'", path.display())
}

const ECHO_ALL: &str = r#"
echo "stdin=$(cat)"
for v in FACTORY_ROLE FACTORY_SPEC_ID FACTORY_SPEC_DIR FACTORY_WORKTREE FACTORY_AGENT_ID FACTORY_ROUND FACTORY_TASK_KEY; do
  eval "echo $v=\${$v-UNSET}"
done
echo "pwd=$(pwd)"
echo "a warning" >&2
"#;

#[tokio::test]
async fn worker_gets_prompt_on_stdin_and_every_factory_variable() {
    let dirs = task_dirs();
    let tools = tempfile::tempdir().unwrap();
    let clock = Arc::new(FixedClock::new());
    let agent = CommandAgent::new(
        script(tools.path(), ECHO_ALL),
        Duration::from_secs(10),
        clock.clone(),
    )
    .with_sandbox(process_sandbox());
    assert_eq!(agent.name(), "command");
    let request = task_request(
        AgentRole::Worker,
        "greeting",
        2,
        &dirs.workdir,
        &dirs.spec_dir,
    );
    let response = agent.run(request.clone()).await.unwrap();

    let expected = [
        "stdin=do the greeting task, round 2".to_owned(),
        "FACTORY_ROLE=worker".to_owned(),
        "FACTORY_SPEC_ID=001-add-greeting".to_owned(),
        format!("FACTORY_SPEC_DIR={}", dirs.spec_dir.display()),
        format!("FACTORY_WORKTREE={}", dirs.workdir.display()),
        "FACTORY_AGENT_ID=worker/001-add-greeting".to_owned(),
        "FACTORY_ROUND=2".to_owned(),
        "FACTORY_TASK_KEY=greeting".to_owned(),
        format!("pwd={}", dirs.workdir.canonicalize().unwrap().display()),
    ];
    let lines: Vec<&str> = response.output.lines().collect();
    assert_eq!(lines, expected);

    // Transcript: the prompt, each stdout line, each stderr line, then the exit.
    let t = &response.transcript;
    assert_eq!(t[0].kind, TranscriptKind::Prompt);
    assert_eq!(t[0].text, request.prompt);
    let stdout: Vec<&str> = t
        .iter()
        .filter(|e| e.kind == TranscriptKind::Stdout)
        .map(|e| e.text.as_str())
        .collect();
    assert_eq!(stdout, expected);
    let stderr: Vec<&str> = t
        .iter()
        .filter(|e| e.kind == TranscriptKind::Stderr)
        .map(|e| e.text.as_str())
        .collect();
    assert_eq!(stderr, ["a warning"]);
    let last = t.last().unwrap();
    assert_eq!(last.kind, TranscriptKind::Exit);
    assert!(
        last.text.starts_with("exit 0 in ") && last.text.ends_with(" ms"),
        "{}",
        last.text
    );
    assert_eq!(t.len(), 1 + expected.len() + 1 + 1);
    assert!(
        t.iter().all(|e| e.at == clock.0),
        "times come from the clock"
    );
}

#[tokio::test]
async fn planner_gets_empty_task_variables_not_unset_ones() {
    let repo = tempfile::tempdir().unwrap();
    let tools = tempfile::tempdir().unwrap();
    let agent = CommandAgent::new(
        script(tools.path(), ECHO_ALL),
        Duration::from_secs(10),
        Arc::new(FixedClock::new()),
    )
    .with_sandbox(process_sandbox());
    let response = agent.run(planner_request(repo.path())).await.unwrap();
    let out = response.output;
    assert!(out.contains("stdin=plan the epic\n"), "{out}");
    assert!(out.contains("FACTORY_ROLE=planner\n"), "{out}");
    assert!(out.contains("FACTORY_SPEC_ID=\n"), "{out}");
    assert!(out.contains("FACTORY_SPEC_DIR=\n"), "{out}");
    assert!(out.contains("FACTORY_TASK_KEY=\n"), "{out}");
    assert!(out.contains("FACTORY_ROUND=1\n"), "{out}");
    assert!(out.contains("FACTORY_AGENT_ID=planner/epic-1\n"), "{out}");
}

#[tokio::test]
async fn non_zero_exit_is_exited_with_the_stderr_tail() {
    let dirs = task_dirs();
    let tools = tempfile::tempdir().unwrap();
    let body = r#"
echo "partial work"
head -c 5000 /dev/zero | tr '\0' n >&2
echo >&2
echo "the real reason" >&2
exit 3
"#;
    let agent = CommandAgent::new(
        script(tools.path(), body),
        Duration::from_secs(10),
        Arc::new(FixedClock::new()),
    )
    .with_sandbox(process_sandbox());
    let err = agent
        .run(task_request(
            AgentRole::Worker,
            "k",
            1,
            &dirs.workdir,
            &dirs.spec_dir,
        ))
        .await
        .unwrap_err();
    match err {
        AgentError::Exited {
            code,
            stderr,
            stdout,
        } => {
            assert_eq!(code, Some(3));
            assert!(stderr.ends_with("the real reason"), "{stderr:?}");
            assert!(stderr.chars().count() <= 2000, "{}", stderr.len());
            assert!(stderr.chars().count() > 1900, "{}", stderr.len());
            assert_eq!(stdout, "partial work\n");
        }
        other => panic!("expected Exited, got {other:?}"),
    }
}

#[tokio::test]
async fn timeout_is_reported_and_the_agent_killed_quickly() {
    let dirs = task_dirs();
    let agent = CommandAgent::new(
        "sleep 30",
        Duration::from_millis(300),
        Arc::new(FixedClock::new()),
    )
    .with_sandbox(process_sandbox());
    let start = Instant::now();
    let err = agent
        .run(task_request(
            AgentRole::Reviewer,
            "k",
            1,
            &dirs.workdir,
            &dirs.spec_dir,
        ))
        .await
        .unwrap_err();
    assert!(start.elapsed() < Duration::from_secs(5));
    assert!(matches!(err, AgentError::Timeout(1)), "{err:?}");
    assert!(err.to_string().contains("timeout_secs"), "{err}");
}

#[tokio::test]
async fn missing_workdir_is_a_spawn_error() {
    let dirs = task_dirs();
    let agent = CommandAgent::new("true", Duration::from_secs(10), Arc::new(FixedClock::new()))
        .with_sandbox(process_sandbox());
    let missing = dirs.workdir.join("gone");
    let err = agent
        .run(task_request(
            AgentRole::Worker,
            "k",
            1,
            &missing,
            &dirs.spec_dir,
        ))
        .await
        .unwrap_err();
    match err {
        AgentError::Spawn { command, source } => {
            assert_eq!(command, "true");
            assert!(source.to_string().contains("gone"), "{source}");
        }
        other => panic!("expected Spawn, got {other:?}"),
    }
}

#[tokio::test]
async fn unknown_command_is_exited_127() {
    let dirs = task_dirs();
    let agent = CommandAgent::new(
        "no-such-agent-cli-7c1d --stdin",
        Duration::from_secs(10),
        Arc::new(FixedClock::new()),
    )
    .with_sandbox(process_sandbox());
    let err = agent
        .run(task_request(
            AgentRole::Worker,
            "k",
            1,
            &dirs.workdir,
            &dirs.spec_dir,
        ))
        .await
        .unwrap_err();
    match err {
        AgentError::Exited { code, stderr, .. } => {
            assert_eq!(code, Some(127));
            assert!(stderr.contains("not found"), "{stderr}");
        }
        other => panic!("expected Exited, got {other:?}"),
    }
}

#[tokio::test]
async fn a_reviewer_printing_200_mb_of_lines_keeps_memory_bounded() {
    let dirs = task_dirs();
    let agent = CommandAgent::new(
        "yes ok | head -c 200000000",
        Duration::from_secs(300),
        Arc::new(FixedClock::new()),
    )
    .with_sandbox(process_sandbox());
    std::fs::write("/proc/self/clear_refs", "5").unwrap();
    let before = status_bytes("VmRSS:");
    let response = agent
        .run(task_request(
            AgentRole::Reviewer,
            "k",
            1,
            &dirs.workdir,
            &dirs.spec_dir,
        ))
        .await
        .unwrap();
    let growth = status_bytes("VmHWM:").saturating_sub(before);
    eprintln!(
        "reviewer printing 200 MB of lines: RSS +{} MiB",
        growth / MIB
    );
    assert!(growth < 100 * MIB, "RSS grew by {} MiB", growth / MIB);
    assert!(
        response
            .output
            .ends_with("bytes more of stdout, not kept]\n"),
        "{}",
        &response.output[response.output.len() - 100..]
    );
    let stdout: Vec<&str> = response
        .transcript
        .iter()
        .filter(|e| e.kind == TranscriptKind::Stdout)
        .map(|e| e.text.as_str())
        .collect();
    assert_eq!(stdout.len(), 20_001);
    assert!(stdout[..20_000].iter().all(|l| *l == "ok"));
    assert!(
        stdout[20_000].starts_with("[… ")
            && stdout[20_000].ends_with(" more lines, not in the transcript]"),
        "{}",
        stdout[20_000]
    );
}
