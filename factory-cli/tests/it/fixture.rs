//! Test repositories, a shell-script agent and ways to run `factory`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

pub fn factory_bin() -> &'static str {
    env!("CARGO_BIN_EXE_factory")
}

/// `factory ARGS` in `dir`, with no global git config in reach.
pub fn factory(dir: &Path, args: &[&str]) -> Output {
    factory_cmd(dir, args).output().expect("run factory")
}

pub fn factory_cmd(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(factory_bin());
    cmd.args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1");
    cmd
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Identity variables that would override the test repositories' own config.
const GIT_IDENTITY_ENV: &[&str] = &[
    "GIT_AUTHOR_NAME",
    "GIT_AUTHOR_EMAIL",
    "GIT_COMMITTER_NAME",
    "GIT_COMMITTER_EMAIL",
];

/// Runs git in `dir` (with the repository's own identity) and returns what it did, success or not.
pub fn git_output(dir: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new("git");
    cmd.args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1");
    for var in GIT_IDENTITY_ENV {
        cmd.env_remove(var);
    }
    cmd.output().expect("run git")
}

pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = git_output(dir, args);
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A repository with one commit on `main` and its own identity.
pub fn repo(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    git(dir, &["init", "-q", "-b", "main"]);
    git(dir, &["config", "user.name", "Test User"]);
    git(dir, &["config", "user.email", "test@example.invalid"]);
    git(dir, &["config", "commit.gpgsign", "false"]);
    std::fs::write(dir.join("README.md"), "# sample\n").unwrap();
    std::fs::write(dir.join("notes.txt"), "original notes\n").unwrap();
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "-m", "initial"]);
}

/// A shell agent: the planner plans `tasks` (key:deps pairs, e.g. "a", "b:a"); the worker writes
/// `<key>.txt` (appending the round) and logs each run to `agent-runs.log` in the `.factory` dir;
/// the reviewer approves. Files in .factory steer it: `FAIL_<role>` / `GARBAGE_<role>` make that
/// role exit 3 or print garbage; `SLOW_<key>` makes that worker sleep 30 s and `SLEEPY` every
/// worker 0.5 s; `ESCAPE` makes workers leave a `setsid` process (pid in `escaped.pid`);
/// `WRITE_OUTSIDE` makes them try to write README.md and a git hook in the repository;
/// `SAME_<key>` makes the worker write the same content every round;
/// `REVIEW_CHANGES_<key>` makes the reviewer always request changes; `GARBAGE_planner_epic-N`
/// makes only epic N's planner print garbage; `SELF_COMMIT_<key>` makes the worker commit its own
/// work; `RM_GIT_<key>` makes it delete its worktree's `.git` file. Workers save their prompt as
/// `prompt-<spec>-<round>.txt` and their start/end times in `times.log`.
pub fn agent_script(dir: &Path, tasks: &[&str]) -> PathBuf {
    let mut plan = String::from(r#"{"reasoning":"test plan","tasks":["#);
    for (i, t) in tasks.iter().enumerate() {
        let (key, deps) = t.split_once(':').unwrap_or((t, ""));
        let deps: Vec<String> = deps
            .split(',')
            .filter(|d| !d.is_empty())
            .map(|d| format!("\"{d}\""))
            .collect();
        if i > 0 {
            plan.push(',');
        }
        plan.push_str(&format!(
            r#"{{"key":"{key}","title":"Add {key} file","description":"write {key}.txt","acceptance":["{key}.txt exists"],"depends_on":[{}]}}"#,
            deps.join(",")
        ));
    }
    plan.push_str("]}");
    let script = format!(
        r#"#!/bin/sh
F="$(git rev-parse --path-format=absolute --git-common-dir)/../.factory"
PROMPT="$(cat)"
echo "$FACTORY_ROLE $FACTORY_SPEC_ID $FACTORY_ROUND" >> "$F/agent-runs.log"
if [ -f "$F/FAIL_$FACTORY_ROLE" ]; then echo "agent crashed on purpose" >&2; exit 3; fi
if [ -f "$F/GARBAGE_$FACTORY_ROLE" ]; then echo "I am not JSON"; exit 0; fi
if [ -f "$F/GARBAGE_$(echo "$FACTORY_AGENT_ID" | tr / _)" ]; then echo "I am not JSON"; exit 0; fi
case "$FACTORY_ROLE" in
  planner) echo '{plan}' ;;
  worker)
    printf '%s' "$PROMPT" > "$F/prompt-$FACTORY_SPEC_ID-$FACTORY_ROUND.txt"
    echo "start $FACTORY_TASK_KEY $(date +%s%N)" >> "$F/times.log"
    if [ -f "$F/ESCAPE" ]; then setsid sh -c 'sleep 300 & echo $! > "$1/escaped.pid"' sh "$F" </dev/null >/dev/null 2>&1; fi
    if [ -f "$F/WRITE_OUTSIDE" ]; then echo pwned >> "$F/../README.md"; echo '#!/bin/sh' > "$F/../.git/hooks/post-checkout"; fi
    if [ -f "$F/SLOW_$FACTORY_TASK_KEY" ]; then sleep 30; fi
    if [ -f "$F/SLEEPY" ]; then sleep 0.5; fi
    if [ -f "$F/SAME_$FACTORY_TASK_KEY" ]; then echo "same" > "$FACTORY_TASK_KEY.txt";
    else echo "round $FACTORY_ROUND" >> "$FACTORY_TASK_KEY.txt"; fi
    if [ -f "$F/SELF_COMMIT_$FACTORY_TASK_KEY" ]; then
      git add -A && git -c user.name=Agent -c user.email=agent@example.invalid commit -q -m "the agent's own commit"
    fi
    if [ -f "$F/RM_GIT_$FACTORY_TASK_KEY" ]; then rm -f .git; fi
    echo "end $FACTORY_TASK_KEY $(date +%s%N)" >> "$F/times.log"
    echo "DECISION: write $FACTORY_TASK_KEY.txt -- the task says so"
    ;;
  reviewer)
    if [ -f "$F/REVIEW_CHANGES_$FACTORY_TASK_KEY" ]; then
      echo '{{"verdict":"changes_requested","summary":"not yet","issues":["say it louder"]}}'
    else
      echo '{{"verdict":"approve","summary":"looks right"}}'
    fi ;;
esac
"#
    );
    let path = dir.join("agent.sh");
    std::fs::write(&path, script).unwrap();
    let mut perms = std::fs::metadata(&path).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&path, perms).unwrap();
    path
}

/// A repository initialized for Factory with the shell agent and `verify`.
pub fn factory_repo(dir: &Path, tasks: &[&str], verify: &str) -> PathBuf {
    repo(dir);
    let agent_dir = dir.parent().unwrap().join(format!(
        "{}-agent",
        dir.file_name().unwrap().to_string_lossy()
    ));
    std::fs::create_dir_all(&agent_dir).unwrap();
    let agent = agent_script(&agent_dir, tasks);
    let out = factory(
        dir,
        &[
            "init",
            "--verify",
            verify,
            "--agent",
            agent.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "init: {}", stderr(&out));
    // The agent keeps its log and reads its steering files in .factory/, which the filesystem
    // sandbox otherwise keeps read-only to agents.
    let config_path = dir.join(".factory/config.toml");
    let config = std::fs::read_to_string(&config_path).unwrap();
    let writable = format!("writable = [\"{}\"]", dir.join(".factory").display());
    let config: Vec<String> = config
        .lines()
        .map(|l| {
            if l.starts_with("writable = ") {
                writable.clone()
            } else {
                l.to_owned()
            }
        })
        .collect();
    std::fs::write(&config_path, config.join("\n")).unwrap();
    agent
}

pub fn status_json(dir: &Path) -> serde_json::Value {
    let out = factory(dir, &["status", "--json"]);
    assert!(out.status.success(), "status: {}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

pub fn tasks_of(status: &serde_json::Value) -> Vec<serde_json::Value> {
    status["epics"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|e| e["tasks"].as_array().unwrap().clone())
        .collect()
}

/// Polls `cond` until it holds or `timeout` passes.
pub fn wait_for(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn agent_runs(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join(".factory/agent-runs.log"))
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Sends Ctrl-C (SIGINT) to a running `factory` and waits for it to exit.
pub fn interrupt(child: std::process::Child) -> Output {
    let pid = child.id().to_string();
    let sent = Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .expect("run kill");
    assert!(sent.success(), "kill -INT {pid} failed");
    child.wait_with_output().expect("wait for factory")
}

/// Whether process `pid` is gone (a zombie counts as gone).
pub fn is_dead(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])),
    }
}

/// Every live process below `root` now, by following parent links in /proc.
pub fn descendants(root: u32) -> Vec<u32> {
    let mut parent_of: Vec<(u32, u32)> = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        if let Some(ppid) = rest.split_whitespace().nth(1).and_then(|p| p.parse().ok()) {
            parent_of.push((pid, ppid));
        }
    }
    let mut found = vec![root];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(
            parent_of
                .iter()
                .filter(|&&(_, ppid)| ppid == parent)
                .map(|&(pid, _)| pid),
        );
        i += 1;
    }
    found.remove(0);
    found.retain(|&pid| !is_dead(pid));
    found
}
