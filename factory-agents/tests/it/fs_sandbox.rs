//! The filesystem sandbox: a command writes its worktree and its temp dir, and nothing else: not
//! the user's checkout, not the repository's `.git` (hooks, config, the worktree's admin dir).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use factory_agents::{LandlockSupport, ProcessOptions, ProcessSandbox, SandboxReport, Supervisor};
use factory_core::config::SandboxConfig;
use factory_core::ports::{CommandSpec, Sandbox, SandboxError};

use crate::fixture::{process_sandbox, supervisor};

fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@localhost")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@localhost")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A repository with a commit and a task worktree under `.factory/worktrees/tasks/`, as Factory
/// lays them out.
fn repo_with_worktree(root: &Path) -> (PathBuf, PathBuf) {
    let repo = root.join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    std::fs::write(repo.join("README.md"), "mine\n").unwrap();
    git(&repo, &["add", "README.md"]);
    git(&repo, &["commit", "-q", "-m", "init"]);
    let worktree = repo.join(".factory/worktrees/tasks/001-task");
    git(
        &repo,
        &[
            "worktree",
            "add",
            "-q",
            "-b",
            "factory/001-task",
            worktree.to_str().unwrap(),
        ],
    );
    (repo, worktree)
}

/// The report, or `None` (with the reason printed) where Landlock is missing outside CI; in CI
/// the sandbox must be enforced.
async fn enforced_report(sandbox: &ProcessSandbox) -> Option<SandboxReport> {
    let report = sandbox.report().await.unwrap().clone();
    if report.is_enforced() {
        return Some(report);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI must run the sandbox tests, but: {report}"
    );
    eprintln!("skipped: the filesystem sandbox is not enforced here: {report}");
    None
}

#[tokio::test]
async fn a_command_writes_its_worktree_and_temp_dir_and_nothing_else() {
    let sandbox = process_sandbox();
    let Some(report) = enforced_report(&sandbox).await else {
        return;
    };
    assert!(
        matches!(report.landlock, LandlockSupport::Enforced { abi, .. } if abi >= 1),
        "{report:?}"
    );
    let tmp = tempfile::tempdir().unwrap();
    let (repo, worktree) = repo_with_worktree(tmp.path());
    let admin = repo.join(".git/worktrees/001-task");
    assert!(admin.is_dir());
    let command = r##"
try() { if ( eval "$2" ) 2>/dev/null; then echo "$1=written"; else echo "$1=refused"; fi; }
try worktree 'echo work > inside.txt'
try tmpdir 'echo tmp > "$TMPDIR/t.txt" && test -s "$TMPDIR/t.txt"'
try outside 'echo out > ../outside.txt'
try readme 'echo pwned >> "$REPO/README.md"'
try hook 'echo "#!/bin/sh" > "$REPO/.git/hooks/pre-commit"'
try config 'echo "[core]" >> "$REPO/.git/config"'
try admin 'echo ref > "$ADMIN/HEAD.new"'
try tmp_root 'echo x > /tmp/factory-sandbox-escape-$$'
"##;
    let out = sandbox
        .run(CommandSpec {
            command: command.to_owned(),
            cwd: worktree.clone(),
            env: vec![
                ("REPO".into(), repo.display().to_string()),
                ("ADMIN".into(), admin.display().to_string()),
            ],
            timeout: Duration::from_secs(30),
            writable: vec![worktree.clone()],
            ..CommandSpec::default()
        })
        .await
        .unwrap();
    assert_eq!(
        out.stdout,
        "worktree=written\ntmpdir=written\noutside=refused\nreadme=refused\nhook=refused\n\
         config=refused\nadmin=refused\ntmp_root=refused\n",
        "stderr: {}",
        out.stderr
    );
    assert_eq!(
        std::fs::read_to_string(worktree.join("inside.txt")).unwrap(),
        "work\n"
    );
    assert!(!worktree.parent().unwrap().join("outside.txt").exists());
    assert_eq!(
        std::fs::read_to_string(repo.join("README.md")).unwrap(),
        "mine\n"
    );
    assert!(!repo.join(".git/hooks/pre-commit").exists());
    assert!(!admin.join("HEAD.new").exists());
    // Reading and running programs are not restricted: git still reads the worktree.
    let out = sandbox
        .run(CommandSpec {
            command: "git status --porcelain".to_owned(),
            cwd: worktree.clone(),
            timeout: Duration::from_secs(30),
            ..CommandSpec::default()
        })
        .await
        .unwrap();
    assert!(out.success(), "{out:?}");
    assert_eq!(out.stdout, "?? inside.txt\n");
}

#[tokio::test]
async fn a_command_without_writable_paths_cannot_write_its_cwd() {
    let sandbox = process_sandbox();
    if enforced_report(&sandbox).await.is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = sandbox
        .run(CommandSpec {
            command: "echo x > planner.txt".to_owned(),
            cwd: dir.path().to_owned(),
            timeout: Duration::from_secs(30),
            ..CommandSpec::default()
        })
        .await
        .unwrap();
    assert!(!out.success());
    assert!(!dir.path().join("planner.txt").exists());
}

#[tokio::test]
async fn a_disabled_sandbox_lets_commands_write_anywhere_the_user_may() {
    let sandbox = ProcessSandbox::with_options(ProcessOptions {
        supervisor: supervisor(),
        sandbox: SandboxConfig {
            enabled: false,
            ..SandboxConfig::default()
        },
        ..ProcessOptions::default()
    });
    let report = sandbox.report().await.unwrap();
    assert!(!report.is_enforced());
    assert!(report.to_string().contains("enabled = false"), "{report}");
    let dir = tempfile::tempdir().unwrap();
    let out = sandbox
        .run(CommandSpec {
            command: "echo x > free.txt".to_owned(),
            cwd: dir.path().to_owned(),
            timeout: Duration::from_secs(30),
            ..CommandSpec::default()
        })
        .await
        .unwrap();
    assert!(out.success(), "{out:?}");
    assert!(dir.path().join("free.txt").exists());
}

#[tokio::test]
async fn the_report_lists_existing_and_missing_writable_paths() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-cache");
    let sandbox = ProcessSandbox::with_options(ProcessOptions {
        supervisor: supervisor(),
        sandbox: SandboxConfig {
            writable: vec![dir.path().to_owned(), missing.clone()],
            ..SandboxConfig::default()
        },
        ..ProcessOptions::default()
    });
    let report = sandbox.report().await.unwrap();
    assert_eq!(report.writable, [dir.path().to_owned()]);
    assert_eq!(report.missing, std::slice::from_ref(&missing));
    let text = report.to_string();
    assert!(text.starts_with("sandbox: "), "{text}");
    assert!(
        text.contains(&format!("missing (skipped): {}", missing.display())),
        "{text}"
    );
    if !report.is_enforced() {
        return;
    }
    // A configured cache dir is writable by every command.
    let cwd = tempfile::tempdir().unwrap();
    let out = sandbox
        .run(CommandSpec {
            command: format!("echo cached > {}/c.txt", dir.path().display()),
            cwd: cwd.path().to_owned(),
            timeout: Duration::from_secs(30),
            ..CommandSpec::default()
        })
        .await
        .unwrap();
    assert!(out.success(), "{out:?}");
}

#[tokio::test]
async fn a_program_that_is_not_a_supervisor_is_reported_with_what_to_do() {
    let sandbox = ProcessSandbox::with_options(ProcessOptions {
        supervisor: Supervisor::program("/bin/echo"),
        ..ProcessOptions::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let err = sandbox
        .run(CommandSpec {
            command: "true".to_owned(),
            cwd: dir.path().to_owned(),
            timeout: Duration::from_secs(30),
            ..CommandSpec::default()
        })
        .await
        .unwrap_err();
    assert!(matches!(err, SandboxError::Supervisor(_)), "{err:?}");
    assert!(err.to_string().contains("run_if_requested"), "{err}");
}

/// A supervisor that reports a kernel without Landlock, and otherwise is the real one.
fn supervisor_without_landlock(dir: &Path) -> Supervisor {
    let path = dir.join("no-landlock-supervisor.sh");
    std::fs::write(
        &path,
        format!(
            "#!/bin/sh\ncase \"$1\" in\n  *'\"mode\":\"probe\"'*) echo '{{\"supervisor\":\"factory-supervise/1\",\"landlock\":{{\"state\":\"unsupported\",\"reason\":\"this test kernel has no Landlock\"}}}}' ;;\n  *) exec '{}' \"$1\" ;;\nesac\n",
            supervisor().program_path().display()
        ),
    )
    .unwrap();
    let mut perms = std::fs::metadata(&path).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&path, perms).unwrap();
    Supervisor::program(path)
}

#[tokio::test]
async fn without_landlock_commands_run_unsandboxed_or_are_refused_when_required() {
    let tools = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let spec = CommandSpec {
        command: "echo x > free.txt".to_owned(),
        cwd: dir.path().to_owned(),
        timeout: Duration::from_secs(30),
        ..CommandSpec::default()
    };
    let sandbox = |required| {
        ProcessSandbox::with_options(ProcessOptions {
            supervisor: supervisor_without_landlock(tools.path()),
            sandbox: SandboxConfig {
                required,
                ..SandboxConfig::default()
            },
            ..ProcessOptions::default()
        })
    };

    let required = sandbox(true);
    let err = required.run(spec.clone()).await.unwrap_err();
    assert!(matches!(err, SandboxError::Unenforceable(_)), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains("required = true") && message.contains("this test kernel has no Landlock"),
        "{message}"
    );
    assert!(!dir.path().join("free.txt").exists());
    let report = required.report().await.unwrap().to_string();
    assert!(
        report.contains("not enforced: this test kernel has no Landlock; commands are refused"),
        "{report}"
    );

    let lenient = sandbox(false);
    let out = lenient.run(spec).await.unwrap();
    assert!(out.success(), "{out:?}");
    assert!(dir.path().join("free.txt").exists());
    let report = lenient.report().await.unwrap().to_string();
    assert!(report.contains("commands run unsandboxed"), "{report}");
}
