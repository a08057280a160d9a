//! Orchestration overhead, measured side by side in one run (results in BENCHMARKS.md; not part
//! of the test suite):
//!
//! - `cpu [TASKS] [RUNS]`: a TASKS-task epic (default 20) through `factory run` against a shell
//!   script doing the same work with plain git; CPU time (user + sys of each side's process and
//!   every process it started: git, supervisors, verify shells) and wall time, medians of RUNS
//!   (default 5), and their ratios;
//! - `rss [N,N,...]`: the peak resident set (VmHWM) of the Factory process for epics of N
//!   independent tasks (default 50,200,500), one run each;
//! - `count [TASKS]`: the git commands each side starts, by subcommand (a `git` on PATH that
//!   logs its arguments);
//! - `setup [TASKS]`: prints a prepared repository, for profiling by hand: `<this program>
//!   __factory REPO TASKS` is the Factory side alone.
//!
//! With no mode it runs `cpu` then `rss`:
//! `cargo bench -p factory-examples --bench pipeline [-- MODE ARGS]`. Repositories go in
//! `$FACTORY_BENCH_DIR` (default: the system temp dir).
//!
//! Each side runs as a child process of this program, so its CPU time is read from this
//! process's `cutime`/`cstime` (which include every descendant that was waited for) before and
//! after. The Factory side is this program started again (`__factory REPO TASKS`): it opens the
//! repository as `factory run` does (`Workspace`: real SQLite store, real git, the supervisor and
//! Landlock sandbox for verify, the CLI's runtime) with the zero-time scripted agent.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use factory_agents::{AgentScript, ScriptedAgent};
use factory_core::orchestrate::RoleBackends;
use factory_core::ports::SystemClock;
use factory_workspace::{AgentSetup, InitOptions, Workspace};

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A fresh repository on `main` with one commit, in a new temporary directory.
fn sample_repo() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir_in(bench_dir()).unwrap();
    let root = tmp.path().join("repo");
    std::fs::create_dir(&root).unwrap();
    let root = root.canonicalize().unwrap();
    git(&root, &["init", "-q", "-b", "main"]);
    git(&root, &["config", "user.name", "Bench"]);
    git(&root, &["config", "user.email", "bench@factory.invalid"]);
    std::fs::write(root.join("README.md"), "bench\n").unwrap();
    git(&root, &["add", "-A"]);
    git(&root, &["commit", "-q", "-m", "initial"]);
    (tmp, root)
}

/// Where the repositories (and the commands' temp dirs) go: `$FACTORY_BENCH_DIR`, else the
/// system's temp dir. Compare a disk with a tmpfs (`FACTORY_BENCH_DIR=/dev/shm`) to tell the
/// file system's cost of creating files from Factory's.
fn bench_dir() -> PathBuf {
    std::env::var_os("FACTORY_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
}

/// The scripted agent's script: `tasks` independent tasks, each writing its own file in one
/// round, approved by the reviewer.
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

/// `factory init` (verify = `true`, the scripted agent) and `factory epic add`, as setup: not
/// measured.
fn factory_setup(tasks: usize) -> (tempfile::TempDir, PathBuf) {
    let (tmp, root) = sample_repo();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        Workspace::init(
            &root,
            InitOptions {
                main_branch: Some("main".into()),
                verify: Some("true".into()),
                agent: AgentSetup::Scripted {
                    file: "bench-script.toml".into(),
                    script: script(tasks),
                },
            },
        )
        .await
        .unwrap();
        let ws = Workspace::open(&root).await.unwrap();
        ws.factory().add_epic("bench").await.unwrap();
    });
    (tmp, root)
}

/// [`script`] as the scripted agent's value, built from JSON: the toml parser needs some 30 times
/// the text's size while parsing (about 6 MiB for 500 tasks), which would stay in this
/// process's heap and be counted as Factory's.
fn agent_script(tasks: usize) -> AgentScript {
    let keys = (1..=tasks).map(|i| format!("t{i}"));
    let plan: Vec<_> = keys
        .clone()
        .zip(1..)
        .map(|(key, i)| serde_json::json!({ "key": key, "title": format!("Task {i}") }))
        .collect();
    let per_task: serde_json::Map<String, serde_json::Value> = keys
        .zip(1..)
        .map(|(key, i)| {
            let task = serde_json::json!({
                "rounds": [{ "edits": [{ "path": format!("f{i}.txt"), "write": format!("{i}\n") }] }],
                "reviews": [{ "verdict": "approve" }],
            });
            (key, task)
        })
        .collect();
    serde_json::from_value(serde_json::json!({
        "plan": { "reasoning": "bench", "tasks": plan },
        "tasks": per_task,
    }))
    .unwrap()
}

/// The Factory side, in the child process: `factory run` on `root` (the repository opened as the
/// CLI opens it; the scripted agent given through the library, see [`agent_script`]). Prints the
/// number of merged tasks and this process's peak resident set.
fn factory_side(root: &Path, tasks: usize) -> ExitCode {
    // As the CLI runs it.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let merged = rt.block_on(async {
        let agent = ScriptedAgent::new(agent_script(tasks), Arc::new(SystemClock));
        let agents = RoleBackends::same(Arc::new(agent));
        let ws = Workspace::open_with_agents(root, agents).await.unwrap();
        ws.require_agents().unwrap();
        let run = ws.start_run(ws.run_options("bench")).await.unwrap();
        let report = run.wait().await.unwrap();
        assert!(report.all_merged(), "{report:?}");
        report.merged.len()
    });
    if std::env::var_os("FACTORY_BENCH_DEBUG").is_some() {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        for line in status.lines().filter(|l| {
            [
                "VmHWM", "VmRSS", "RssAnon", "RssFile", "RssShmem", "Threads", "VmData",
            ]
            .iter()
            .any(|k| l.starts_with(k))
        }) {
            eprintln!("{line}");
        }
    }
    drop(rt);
    let own = own_cpu();
    println!(
        "merged={merged} vm_hwm_kb={} own_cpu_ms={}",
        vm_hwm_kb(),
        own.as_millis()
    );
    ExitCode::SUCCESS
}

/// This process's peak resident set in KiB (`VmHWM` of /proc/self/status).
fn vm_hwm_kb() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// The same work with plain git, as a person would script it: per task a worktree on a new
/// branch from main, the file written, `add -A`, `commit`, verify (`sh -c true` in the worktree);
/// then, one task behind (as Factory's two pipelines and one merge queue are), the previous
/// task's branch rebased onto main (which has moved by one merge since it branched), verify
/// again, `merge --no-ff` into main in the user's checkout, and its worktree removed.
const BASELINE: &str = r#"
set -e
n=$1
G="git -c core.hooksPath=/dev/null -c commit.gpgsign=false -c maintenance.auto=false -c gc.auto=0"
merge() {
  wt=.factory/worktrees/tasks/$1
  $G -C $wt rebase -q main
  (cd $wt && exec sh -c true)
  $G merge -q --no-ff -m "Merge factory/$1" factory/$1
  $G worktree remove --force $wt
}
for i in $(seq 1 $n); do
  wt=.factory/worktrees/tasks/$i
  $G worktree add -q -b factory/$i $wt main
  echo $i > $wt/f$i.txt
  $G -C $wt add -A
  $G -C $wt commit -q -m "task $i"
  (cd $wt && exec sh -c true)
  [ $i -gt 1 ] && merge $((i - 1))
done
merge $n
"#;

fn baseline_setup() -> (tempfile::TempDir, PathBuf) {
    let (tmp, root) = sample_repo();
    std::fs::write(root.join(".git/info/exclude"), "/.factory/\n").unwrap();
    (tmp, root)
}

fn check_merges(root: &Path, tasks: usize) {
    let merges = git(
        root,
        &["rev-list", "--merges", "--first-parent", "--count", "main"],
    );
    assert_eq!(merges, tasks.to_string());
}

/// Fields of /proc/self/stat from field 3 (state) on.
fn self_stat() -> Vec<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let (_, rest) = stat.rsplit_once(')').unwrap();
    rest.split_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect()
}

fn ticks(t: u64) -> Duration {
    Duration::from_secs_f64(t as f64 / clock_ticks() as f64)
}

/// CPU time (user, sys) of this process's waited-for children so far.
fn children_cpu() -> (Duration, Duration) {
    let fields = self_stat();
    // Field 3 (state) is fields[0]: cutime is field 16, cstime field 17.
    (ticks(fields[13]), ticks(fields[14]))
}

/// CPU time (user + sys) of this process itself, without its children.
fn own_cpu() -> Duration {
    let fields = self_stat();
    // utime is field 14, stime field 15.
    ticks(fields[11]) + ticks(fields[12])
}

fn clock_ticks() -> u64 {
    static HZ: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *HZ.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100)
    })
}

/// What one side cost.
#[derive(Debug, Clone, Copy, Default)]
struct Cost {
    wall: Duration,
    user: Duration,
    sys: Duration,
    /// The Factory process's peak resident set (KiB); 0 for the script.
    hwm_kb: u64,
    /// CPU time of the Factory process itself, without the processes it started.
    own: Duration,
}

impl Cost {
    fn cpu(&self) -> Duration {
        self.user + self.sys
    }
}

/// Runs `cmd` to completion and measures it and everything it started.
fn measure(mut cmd: Command) -> (Cost, String) {
    cmd.env("TMPDIR", bench_dir());
    let (u0, s0) = children_cpu();
    let start = Instant::now();
    let out = cmd.stdin(Stdio::null()).output().unwrap();
    let wall = start.elapsed();
    let (u1, s1) = children_cpu();
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let field = |name: &str| -> u64 {
        stdout
            .split_whitespace()
            .find_map(|w| w.strip_prefix(name))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let (hwm_kb, own) = (
        field("vm_hwm_kb="),
        Duration::from_millis(field("own_cpu_ms=")),
    );
    (
        Cost {
            wall,
            user: u1 - u0,
            sys: s1 - s0,
            hwm_kb,
            own,
        },
        stdout,
    )
}

fn run_factory(tasks: usize, path: Option<&std::ffi::OsStr>) -> Cost {
    let (_tmp, root) = factory_setup(tasks);
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.arg("__factory").arg(&root).arg(tasks.to_string());
    if let Some(path) = path {
        cmd.env("PATH", path);
    }
    let (cost, out) = measure(cmd);
    assert!(out.contains(&format!("merged={tasks} ")), "{out}");
    check_merges(&root, tasks);
    cost
}

fn run_baseline(tasks: usize, path: Option<&std::ffi::OsStr>) -> Cost {
    let (_tmp, root) = baseline_setup();
    let mut cmd = Command::new("sh");
    cmd.args(["-c", BASELINE, "baseline", &tasks.to_string()])
        .current_dir(&root);
    if let Some(path) = path {
        cmd.env("PATH", path);
    }
    let (cost, _) = measure(cmd);
    check_merges(&root, tasks);
    cost
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn secs(d: Duration) -> String {
    format!("{:.3} s", d.as_secs_f64())
}

fn cpu(tasks: usize, runs: usize) {
    println!(
        "cpu: {tasks}-task epic, {runs} runs of each side, alternating (medians), in {}",
        bench_dir().display()
    );
    let mut factory = Vec::new();
    let mut script = Vec::new();
    let mut ratios = Vec::new();
    for run in 1..=runs {
        let b = run_baseline(tasks, None);
        let f = run_factory(tasks, None);
        println!(
            "  run {run}: script cpu {} (user {}, sys {}) wall {} | factory cpu {} (user {}, sys {}; the factory process itself {}) wall {} | cpu ratio {:.2}x",
            secs(b.cpu()),
            secs(b.user),
            secs(b.sys),
            secs(b.wall),
            secs(f.cpu()),
            secs(f.user),
            secs(f.sys),
            secs(f.own),
            secs(f.wall),
            f.cpu().as_secs_f64() / b.cpu().as_secs_f64()
        );
        ratios.push(Duration::from_secs_f64(
            f.cpu().as_secs_f64() / b.cpu().as_secs_f64(),
        ));
        factory.push(f);
        script.push(b);
    }
    let m = |v: &[Cost], f: fn(&Cost) -> Duration| median(v.iter().map(f).collect());
    let (fc, bc) = (m(&factory, Cost::cpu), m(&script, Cost::cpu));
    let (fw, bw) = (m(&factory, |c| c.wall), m(&script, |c| c.wall));
    println!(
        "  script (plain git):  cpu {} (user {}, sys {}), wall {}",
        secs(bc),
        secs(m(&script, |c| c.user)),
        secs(m(&script, |c| c.sys)),
        secs(bw)
    );
    println!(
        "  factory run:         cpu {} (user {}, sys {}; the factory process itself {}), wall {}, peak RSS {} KiB",
        secs(fc),
        secs(m(&factory, |c| c.user)),
        secs(m(&factory, |c| c.sys)),
        secs(m(&factory, |c| c.own)),
        secs(fw),
        factory.iter().map(|c| c.hwm_kb).max().unwrap_or(0)
    );
    println!(
        "  ratio factory/script: cpu {:.2}x of medians (median of per-run ratios {:.2}x; target <= 1.1x), wall {:.2}x",
        fc.as_secs_f64() / bc.as_secs_f64(),
        median(ratios).as_secs_f64(),
        fw.as_secs_f64() / bw.as_secs_f64()
    );
}

fn rss(sizes: &[usize]) {
    println!(
        "rss: peak resident set of the factory process, one run per size, in {}",
        bench_dir().display()
    );
    for &tasks in sizes {
        let f = run_factory(tasks, None);
        println!(
            "  {tasks:>4} tasks: peak RSS {:>6.1} MiB, cpu {} (user {}, sys {}; the factory process itself {}), wall {}, {:.1} ms cpu per task",
            f.hwm_kb as f64 / 1024.0,
            secs(f.cpu()),
            secs(f.user),
            secs(f.sys),
            secs(f.own),
            secs(f.wall),
            f.cpu().as_secs_f64() * 1000.0 / tasks as f64
        );
    }
}

/// A directory with a `git` that logs each call's arguments to `log` before running the real
/// one, put first on PATH.
fn counting_path(dir: &Path, log: &Path) -> std::ffi::OsString {
    let real = Command::new("sh")
        .args(["-c", "command -v git"])
        .output()
        .unwrap();
    let real = String::from_utf8_lossy(&real.stdout).trim().to_owned();
    let shim = dir.join("git");
    std::fs::write(
        &shim,
        format!(
            "#!/bin/sh\ncall=$(printf '%s\\037' \"$@\")\nprintf '%s\\036' \"$call\" >> '{log}'\nexec '{real}' \"$@\"\n",
            log = log.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&shim, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut path = dir.as_os_str().to_owned();
    path.push(":");
    path.push(std::env::var_os("PATH").unwrap_or_default());
    path
}

/// The git subcommand of a logged call (the first argument that is not a global option).
fn subcommand(call: &str) -> String {
    let mut words = call.split('\x1f');
    while let Some(w) = words.next() {
        match w {
            "-c" | "-C" => {
                words.next();
            }
            w if w.starts_with('-') => {}
            "worktree" => return format!("worktree {}", words.next().unwrap_or("")),
            w => return w.to_owned(),
        }
    }
    String::from("?")
}

fn tally(log: &Path) -> (usize, Vec<(String, usize)>) {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut counts = std::collections::BTreeMap::new();
    for call in text.split('\x1e').filter(|c| !c.is_empty()) {
        *counts.entry(subcommand(call)).or_insert(0) += 1;
    }
    let total = counts.values().sum();
    (total, counts.into_iter().collect())
}

fn count(tasks: usize) {
    let dir = tempfile::tempdir().unwrap();
    for side in ["script", "factory"] {
        let log = dir.path().join(format!("{side}.log"));
        let path = counting_path(dir.path(), &log);
        if side == "script" {
            run_baseline(tasks, Some(&path));
        } else {
            run_factory(tasks, Some(&path));
        }
        let (total, by_command) = tally(&log);
        let list: Vec<String> = by_command.iter().map(|(c, n)| format!("{c} {n}")).collect();
        println!(
            "count: {side}, {tasks} tasks: {total} git processes ({:.1} per task): {}",
            total as f64 / tasks as f64,
            list.join(", ")
        );
    }
}

fn main() -> ExitCode {
    // This program is also the supervisor of each verify command the Factory side runs.
    if let Some(code) = factory_workspace::run_supervisor_if_requested() {
        return code;
    }
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let num =
        |i: usize, default: usize| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(default);
    match args.first().map(String::as_str) {
        Some("__factory") => return factory_side(Path::new(&args[1]), num(2, 20)),
        Some("cpu") => cpu(num(1, 20), num(2, 5)),
        Some("rss") => {
            let sizes: Vec<usize> = args
                .get(1)
                .map(|s| s.split(',').filter_map(|n| n.parse().ok()).collect())
                .unwrap_or_else(|| vec![50, 200, 500]);
            rss(&sizes);
        }
        Some("count") => count(num(1, 20)),
        Some("setup") => {
            // For profiling one side by hand: `… setup 20` prints a prepared repository, then
            // `strace -f -c <this program> __factory <repo> 20` (or `factory run` in it).
            let (tmp, root) = factory_setup(num(1, 20));
            let _ = tmp.keep();
            println!("{}", root.display());
        }
        Some(other) => {
            eprintln!(
                "unknown mode {other}: use cpu [TASKS] [RUNS], rss [N,N,...] or count [TASKS]"
            );
            return ExitCode::from(2);
        }
        None => {
            cpu(20, 5);
            rss(&[50, 200, 500]);
        }
    }
    ExitCode::SUCCESS
}
