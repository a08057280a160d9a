//! ProcessSandbox: exit codes, output capture, stdin, env, timeouts that kill the whole group.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use factory_core::ports::{CommandSpec, Sandbox, SandboxError};

use crate::fixture::{process_sandbox, read_pid, wait_dead};

fn spec(command: &str, cwd: &Path) -> CommandSpec {
    CommandSpec {
        command: command.to_owned(),
        cwd: cwd.to_owned(),
        env: Vec::new(),
        stdin: None,
        timeout: Duration::from_secs(10),
        writable: vec![cwd.to_owned()],
        output_log: None,
    }
}

fn sandbox() -> Arc<dyn Sandbox> {
    Arc::new(process_sandbox())
}

#[tokio::test]
async fn exit_code_stdout_and_stderr_are_captured() {
    let dir = tempfile::tempdir().unwrap();
    let out = sandbox()
        .run(spec("echo out; echo err >&2; exit 3", dir.path()))
        .await
        .unwrap();
    assert_eq!(out.exit_code, Some(3));
    assert!(!out.success());
    assert_eq!(out.stdout, "out\n");
    assert_eq!(out.stderr, "err\n");
    assert!(!out.timed_out);

    let ok = sandbox().run(spec("true", dir.path())).await.unwrap();
    assert!(ok.success());
}

#[tokio::test]
async fn runs_in_cwd_and_invalid_utf8_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let out = sandbox()
        .run(spec("pwd; printf 'a\\377b'", dir.path()))
        .await
        .unwrap();
    let mut lines = out.stdout.lines();
    assert_eq!(
        Path::new(lines.next().unwrap()).canonicalize().unwrap(),
        dir.path().canonicalize().unwrap()
    );
    assert_eq!(lines.next().unwrap(), "a\u{FFFD}b");
}

#[tokio::test]
async fn stdin_is_delivered_and_closed() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = spec("cat; echo done", dir.path());
    s.stdin = Some("hello\nworld\n".to_owned());
    let out = sandbox().run(s).await.unwrap();
    assert_eq!(out.stdout, "hello\nworld\ndone\n");

    // Without stdin, a reader sees end of input at once instead of hanging.
    let out = sandbox()
        .run(spec("cat; echo eof", dir.path()))
        .await
        .unwrap();
    assert_eq!(out.stdout, "eof\n");
}

#[tokio::test]
async fn large_stdin_and_outputs_do_not_deadlock() {
    let dir = tempfile::tempdir().unwrap();
    // cat echoes 2 MB while stdin is still being written, and 1 MB goes to stderr: a runner that
    // wrote all stdin first, or read one pipe after the other, would block forever.
    let input = "x".repeat(2 * 1024 * 1024);
    let mut s = spec(
        "head -c 1048576 /dev/zero | tr '\\0' e >&2; cat",
        dir.path(),
    );
    s.stdin = Some(input.clone());
    let out = sandbox().run(s).await.unwrap();
    assert!(out.success(), "{:?}", out.exit_code);
    assert_eq!(out.stdout.len(), input.len());
    assert_eq!(out.stderr.len(), 1024 * 1024);
    assert!(!out.timed_out);
}

#[tokio::test]
async fn command_that_ignores_stdin_still_finishes() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = spec("echo ignored", dir.path());
    s.stdin = Some("y".repeat(1024 * 1024));
    let out = sandbox().run(s).await.unwrap();
    assert!(out.success());
    assert_eq!(out.stdout, "ignored\n");
}

#[tokio::test]
async fn env_is_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = spec("printf '%s|%s' \"$FACTORY_X\" \"$OTHER\"", dir.path());
    s.env = vec![
        ("FACTORY_X".to_owned(), "one two".to_owned()),
        ("OTHER".to_owned(), "3".to_owned()),
    ];
    let out = sandbox().run(s).await.unwrap();
    assert_eq!(out.stdout, "one two|3");
}

#[tokio::test]
async fn timeout_kills_the_command_and_its_grandchildren() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("grandchild.pid");
    let mut s = spec(
        &format!(
            "echo started; sh -c 'sleep 30 & echo $! > {}; wait'",
            pid_file.display()
        ),
        dir.path(),
    );
    s.timeout = Duration::from_millis(300);
    let start = Instant::now();
    let out = sandbox().run(s).await.unwrap();
    let took = start.elapsed();
    assert!(out.timed_out);
    assert_eq!(out.exit_code, None);
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert!(out.duration >= Duration::from_millis(300));
    // Output written before the kill is kept.
    assert_eq!(out.stdout, "started\n");
    let grandchild = read_pid(&pid_file);
    assert!(
        wait_dead(grandchild, Duration::from_secs(3)).await,
        "the grandchild sleep {grandchild} survived the timeout"
    );
}

#[tokio::test]
async fn cancelling_the_run_kills_the_process_group() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("grandchild.pid");
    let mut s = spec(
        &format!("sh -c 'sleep 30 & echo $! > {}; wait'", pid_file.display()),
        dir.path(),
    );
    s.timeout = Duration::from_secs(60);
    let sandbox = sandbox();
    let run = sandbox.run(s);
    // Wait for the grandchild to exist, then drop the run future.
    let cancelled = tokio::time::timeout(Duration::from_secs(5), async {
        tokio::pin!(run);
        loop {
            tokio::select! {
                r = &mut run => panic!("finished early: {r:?}"),
                () = tokio::time::sleep(Duration::from_millis(20)) => {
                    if std::fs::read_to_string(&pid_file).is_ok_and(|s| s.ends_with('\n')) {
                        return;
                    }
                }
            }
        }
    })
    .await;
    assert!(cancelled.is_ok(), "the grandchild never started");
    let grandchild = read_pid(&pid_file);
    assert!(
        wait_dead(grandchild, Duration::from_secs(3)).await,
        "the grandchild sleep {grandchild} outlived the cancelled run"
    );
}

#[tokio::test]
async fn background_leftovers_do_not_hold_the_run_and_are_killed() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("bg.pid");
    // The background sleep inherits stdout; the run must still end when the shell exits.
    let s = spec(
        &format!("sleep 30 & echo $! > {}; echo bye", pid_file.display()),
        dir.path(),
    );
    let start = Instant::now();
    let out = sandbox().run(s).await.unwrap();
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    assert!(out.success());
    assert!(!out.timed_out);
    assert_eq!(out.stdout, "bye\n");
    let bg = read_pid(&pid_file);
    assert!(
        wait_dead(bg, Duration::from_secs(3)).await,
        "leftover {bg} survived"
    );
}

#[tokio::test]
async fn missing_cwd_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    let err = sandbox().run(spec("true", &missing)).await.unwrap_err();
    match err {
        SandboxError::MissingCwd(p) => assert_eq!(p, missing),
        other => panic!("expected MissingCwd, got {other:?}"),
    }
}

#[tokio::test]
async fn unknown_command_exits_127() {
    let dir = tempfile::tempdir().unwrap();
    let out = sandbox()
        .run(spec("definitely-not-a-command-3f9a", dir.path()))
        .await
        .unwrap();
    assert_eq!(out.exit_code, Some(127));
    assert!(out.command_not_found());
    assert!(out.stderr.contains("not found"), "{}", out.stderr);
}
