//! Orchestration overhead: a 20-task epic through Factory (zero-time scripted agent, verify =
//! `true`) against a shell script that performs the same git operations with no orchestration.
//!
//! `cargo bench -p factory-examples --bench pipeline [-- TASKS RUNS]` prints both medians and
//! their ratio. Results are recorded in BENCHMARKS.md. Not part of the test suite.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use factory_agents::{AgentScript, ProcessSandbox, ScriptedAgent};
use factory_core::config::FactoryConfig;
use factory_core::layout::Layout;
use factory_core::orchestrate::{Factory, Ports, RoleBackends, RunOptions, stop_signal};
use factory_core::ports::{Clock, SystemClock};
use factory_git::GitRepo;
use factory_store::SqliteStore;

fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn sample_repo(dir: &Path) {
    git(dir, &["init", "-q", "-b", "main"]);
    git(dir, &["config", "user.name", "Bench"]);
    git(dir, &["config", "user.email", "bench@factory.invalid"]);
    std::fs::write(dir.join("README.md"), "bench\n").unwrap();
    std::fs::write(dir.join(".gitignore"), "/.factory/\n").unwrap();
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "-m", "initial"]);
}

fn script(tasks: usize) -> String {
    let mut s = String::from("[plan]\nreasoning = \"bench\"\n");
    for i in 1..=tasks {
        s.push_str(&format!(
            "[[plan.tasks]]\nkey = \"t{i}\"\ntitle = \"Task {i}\"\n"
        ));
    }
    for i in 1..=tasks {
        s.push_str(&format!(
            "[[tasks.t{i}.rounds]]\n[[tasks.t{i}.rounds.edits]]\npath = \"f{i}.txt\"\nwrite = \"{i}\\n\"\n\
             [[tasks.t{i}.reviews]]\nverdict = \"approve\"\n"
        ));
    }
    s
}

fn run_factory(tasks: usize) -> Duration {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().canonicalize().unwrap();
    sample_repo(&root);
    let layout = Layout::new(&root);
    std::fs::create_dir_all(layout.factory_dir()).unwrap();
    let mut config = FactoryConfig::default();
    config.verify.command = "true".into();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let script = AgentScript::from_toml_str(&script(tasks), Path::new("bench")).unwrap();
        let ports = Ports {
            store: Arc::new(
                SqliteStore::open(&layout.db_path(), clock.clone())
                    .await
                    .unwrap(),
            ),
            vcs: Arc::new(
                GitRepo::open(&root, config.git.identity(), layout.merge_worktree()).unwrap(),
            ),
            sandbox: Arc::new(ProcessSandbox::new()),
            agents: RoleBackends::same(Arc::new(ScriptedAgent::new(script, clock.clone()))),
            clock,
        };
        let factory = Factory::new(ports, config, layout);
        factory.add_epic("bench").await.unwrap();
        let start = Instant::now();
        let report = factory
            .run(RunOptions::default(), stop_signal().1)
            .await
            .unwrap();
        let elapsed = start.elapsed();
        assert_eq!(report.merged.len(), tasks, "{report:?}");
        elapsed
    })
}

/// The git operations Factory performs per task, as plain commands in sequence.
const BASELINE: &str = r#"
set -e
n=$1
G="git -c core.hooksPath=/dev/null -c commit.gpgsign=false"
M=.factory/worktrees/merge
for i in $(seq 1 $n); do
  wt=.factory/worktrees/tasks/$i
  $G worktree add -q -b factory/$i $wt main
  echo $i > $wt/f$i.txt
  $G -C $wt add -A
  $G -C $wt commit -q -m "task $i"
  $G diff --name-only main factory/$i > /dev/null
  (cd $wt && true)
  $G -C $wt rebase -q main
  (cd $wt && true)
  [ -d $M ] || $G worktree add -q --detach $M main
  $G -C $M checkout -q --detach main
  $G -C $M merge -q --no-ff -m "Merge factory/$i" factory/$i
  old=$($G rev-parse main); new=$($G -C $M rev-parse HEAD)
  $G status --porcelain > /dev/null
  $G read-tree -m -u $old $new
  $G update-ref refs/heads/main $new $old
  $G worktree remove --force $wt
done
$G worktree remove --force $M
"#;

fn run_baseline(tasks: usize) -> Duration {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    sample_repo(root);
    let start = Instant::now();
    let out = Command::new("sh")
        .args(["-c", BASELINE, "baseline", &tasks.to_string()])
        .current_dir(root)
        .output()
        .unwrap();
    let elapsed = start.elapsed();
    assert!(
        out.status.success(),
        "baseline: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let merges = Command::new("git")
        .args(["rev-list", "--merges", "--count", "main"])
        .current_dir(root)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&merges.stdout).trim(),
        tasks.to_string()
    );
    elapsed
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() -> std::process::ExitCode {
    // ProcessSandbox starts this program as the supervisor of each verify command.
    if let Some(code) = factory_agents::supervise::run_if_requested() {
        return code;
    }
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let tasks: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(20);
    let runs: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(5);
    let mut factory = Vec::new();
    let mut baseline = Vec::new();
    for _ in 0..runs {
        baseline.push(run_baseline(tasks));
        factory.push(run_factory(tasks));
    }
    let (f, b) = (median(factory), median(baseline));
    println!("pipeline: {tasks} tasks, {runs} runs each (medians)");
    println!(
        "  shell script, same git operations: {:>8.3} s",
        b.as_secs_f64()
    );
    println!(
        "  factory run (scripted agent):      {:>8.3} s",
        f.as_secs_f64()
    );
    println!(
        "  ratio factory / script:            {:>8.2}x (target <= 1.3x)",
        f.as_secs_f64() / b.as_secs_f64()
    );
    std::process::ExitCode::SUCCESS
}
