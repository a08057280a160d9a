//! Property test of issue 8's promise for whole runs: random queues of tasks that edit
//! overlapping files (some fail verify, some conflict with another task), run by real `factory
//! run` processes that are killed (SIGKILL), interrupted (SIGINT, twice, or SIGTERM) at random
//! points and started again until the queue is done. After every run: main passes the project's
//! verify script; every commit main had before is still on its first-parent chain; no task is
//! merged twice and no failing task at all; the user's dirty files are byte-identical. After the
//! last run: each good task merged exactly once (the commit that passed verify), each bad one
//! blocked with a reason, main's files exactly the merged edits in merge order, the user's
//! checkout on the new main with the same uncommitted changes, no process left behind.
//!
//! Ctrl-C is sent to `factory run`'s process group, as a terminal sends it; SIGTERM and SIGKILL
//! to `factory` alone.
//!
//! The cases come from a fixed seed, so a failure names a case that can be run again:
//! `FACTORY_PROP_SEED=<n>` picks another seed, `FACTORY_PROP_CASES=<n>` the number of cases, and
//! `FACTORY_PROP_KEEP=1` keeps each case's directory. The instant an interruption lands depends on
//! timing (it is "after the N-th progress line, plus D ms"), so a case can pass on a second try.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};

use crate::fixture::{factory, factory_cmd, repo, stderr, stdout};

/// Shared files every task edits lines of, and slot lines per file.
const FILES: usize = 3;
const SLOTS: usize = 5;
/// Interrupted runs per case at most, before the last, uninterrupted one.
const MAX_INTERRUPTIONS: usize = 3;
const DEFAULT_SEED: u64 = 0x00fa_c708;
const DEFAULT_CASES: u32 = 8;

/// What a task's worker does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Rewrites its own slot lines: applies on any main.
    Good,
    /// Writes a BROKEN marker into its slot lines: verify fails in every round.
    Failing,
    /// Rewrites another task's slot line (and maybe one of its own): whichever of the two is
    /// merged second conflicts, unless it started after the first was merged.
    Conflicting,
}

/// One line of one shared file: `s<slot> = <value>` in `f<file>.txt`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Slot {
    file: usize,
    slot: usize,
}

impl Slot {
    fn path(self) -> String {
        format!("f{}.txt", self.file)
    }
}

#[derive(Debug, Clone)]
struct TaskPlan {
    key: String,
    kind: Kind,
    /// The lines its worker rewrites to `s<slot> = <key>` (plus ` BROKEN` when failing).
    edits: Vec<Slot>,
}

impl TaskPlan {
    fn value(&self) -> String {
        match self.kind {
            Kind::Failing => format!("{} BROKEN", self.key),
            Kind::Good | Kind::Conflicting => self.key.clone(),
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Signal {
    Kill,
    Int,
    /// SIGINT, then a second one 20 ms later (which exits at once).
    IntTwice,
    Term,
}

#[derive(Debug, Clone)]
struct Interruption {
    signal: Signal,
    /// Progress lines `factory run` prints before the signal is sent.
    after_lines: usize,
    /// Then this long.
    delay_ms: u64,
}

/// Bytes shown as an escaped byte string.
#[derive(Clone, PartialEq, Eq)]
struct Bytes(Vec<u8>);

impl std::fmt::Debug for Bytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "b\"{}\"", self.0.escape_ascii())
    }
}

/// The user's uncommitted work, which no task touches.
#[derive(Debug, Clone)]
struct Dirty {
    /// New content of the tracked `notes.txt`.
    modified: Bytes,
    /// `staged.txt`: this is in the index, and the working file has `edited` appended.
    staged: Bytes,
    edited: Bytes,
    /// `scratch.txt`, untracked.
    untracked: Bytes,
    /// `build.local`, ignored by the committed `.gitignore`.
    ignored: Bytes,
}

#[derive(Debug, Clone)]
struct Case {
    tasks: Vec<TaskPlan>,
    max_parallel: u32,
    interruptions: Vec<Interruption>,
    dirty: Dirty,
}

impl Case {
    fn task(&self, key: &str) -> Option<&TaskPlan> {
        self.tasks.iter().find(|t| t.key == key)
    }

    /// Whether `task` shares a line with another task that can be merged: then either may be
    /// the one that conflicts.
    fn contested(&self, task: &TaskPlan) -> bool {
        task.kind != Kind::Failing
            && self.tasks.iter().any(|other| {
                other.key != task.key
                    && other.kind != Kind::Failing
                    && other.edits.iter().any(|slot| task.edits.contains(slot))
            })
    }
}

fn bytes(max: usize) -> impl Strategy<Value = Bytes> {
    proptest::collection::vec(any::<u8>(), 1..max).prop_map(Bytes)
}

fn case_strategy() -> impl Strategy<Value = Case> {
    let kinds = proptest::collection::vec(
        prop_oneof![3 => Just(Kind::Good), 2 => Just(Kind::Failing), 2 => Just(Kind::Conflicting)],
        2..=6,
    );
    let all_slots: Vec<Slot> = (0..FILES)
        .flat_map(|file| (0..SLOTS).map(move |slot| Slot { file, slot }))
        .collect();
    let interruption = (
        prop_oneof![
            3 => Just(Signal::Kill),
            2 => Just(Signal::Int),
            1 => Just(Signal::IntTwice),
            1 => Just(Signal::Term),
        ],
        0..24usize,
        0..120u64,
    )
        .prop_map(|(signal, after_lines, delay_ms)| Interruption {
            signal,
            after_lines,
            delay_ms,
        });
    let dirty = (bytes(40), bytes(40), bytes(20), bytes(40), bytes(40)).prop_map(
        |(modified, staged, edited, untracked, ignored)| Dirty {
            modified,
            staged,
            edited,
            untracked,
            ignored,
        },
    );
    (
        kinds,
        Just(all_slots).prop_shuffle(),
        proptest::collection::vec((any::<bool>(), any::<Index>()), 6),
        1..=3u32,
        proptest::collection::vec(interruption, 0..=MAX_INTERRUPTIONS),
        dirty,
    )
        .prop_map(
            |(kinds, slots, choices, max_parallel, interruptions, dirty)| {
                let n = kinds.len();
                // Task i owns slots[2i] and, when it edits two lines, slots[2i + 1].
                let tasks = kinds
                    .iter()
                    .enumerate()
                    .map(|(i, &kind)| {
                        let (two, victim) = choices[i];
                        let own = slots[2 * i];
                        let edits = match kind {
                            Kind::Good | Kind::Failing if two => vec![own, slots[2 * i + 1]],
                            Kind::Good | Kind::Failing => vec![own],
                            Kind::Conflicting => {
                                let other = (i + 1 + victim.index(n - 1)) % n;
                                let mut edits = vec![slots[2 * other]];
                                if two {
                                    edits.push(own);
                                }
                                edits
                            }
                        };
                        TaskPlan {
                            key: format!("t{i}"),
                            kind,
                            edits,
                        }
                    })
                    .collect();
                Case {
                    tasks,
                    max_parallel,
                    interruptions,
                    dirty,
                }
            },
        )
}

/// Random queues, random interruptions: every promise holds after every run.
#[test]
fn interrupted_runs_of_random_queues_keep_every_promise() {
    let seed = std::env::var("FACTORY_PROP_SEED")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(DEFAULT_SEED);
    let cases = std::env::var("FACTORY_PROP_CASES")
        .ok()
        .and_then(|s| s.parse::<u32>().ok())
        .unwrap_or(DEFAULT_CASES);
    let config = Config {
        cases,
        // Every case is real repositories and processes, and its interruptions land by timing:
        // shrinking would be slow and not reproducible. The failing case is printed whole.
        max_shrink_iters: 0,
        failure_persistence: None,
        ..Config::default()
    };
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    let mut runner =
        TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &key));
    let result = runner.run(&case_strategy(), |case| {
        check_case(&case).map_err(|e| TestCaseError::fail(format!("seed {seed}: {e}")))
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// Runs one case to the end and checks every invariant; the error has what failed and every
/// run's output.
fn check_case(case: &Case) -> Result<(), String> {
    let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let dir = tmp.path().join("repo");
    let mut log = String::new();
    let result = drive_case(case, &dir, &mut log);
    if std::env::var_os("FACTORY_PROP_KEEP").is_some() {
        let kept = tmp.keep();
        eprintln!("case kept in {}", kept.display());
    }
    result.map_err(|e| format!("{e}\n--- runs ---\n{log}"))
}

fn drive_case(case: &Case, dir: &Path, log: &mut String) -> Result<(), String> {
    set_up(case, dir)?;
    let user = UserState::read(dir)?;
    let mut mains = vec![rev(dir, "main")?];
    for (n, interruption) in case.interruptions.iter().enumerate() {
        let code = run_interrupted(dir, interruption, log, n + 1)?;
        check_after_run(case, dir, &user, &mains)
            .map_err(|e| format!("after run {} ({interruption:?}, exit {code:?}): {e}", n + 1))?;
        mains.push(rev(dir, "main")?);
    }
    let code = run_to_end(dir, log)?;
    check_after_run(case, dir, &user, &mains).map_err(|e| format!("after the last run: {e}"))?;
    check_final(case, dir, &user, &mains[0], code)
        .map_err(|e| format!("after the last run: {e}"))?;
    // One line per case, for `--nocapture`: what was generated and how it ended.
    let count = |kind| case.tasks.iter().filter(|t| t.kind == kind).count();
    let states: Vec<String> = tasks_json(dir)?
        .iter()
        .map(|t| {
            format!(
                "{}:{}",
                t["key"].as_str().unwrap_or("?"),
                t["state"].as_str().unwrap_or("?")
            )
        })
        .collect();
    eprintln!(
        "case: {} good, {} failing, {} conflicting, max_parallel {}, interruptions {:?} -> {}",
        count(Kind::Good),
        count(Kind::Failing),
        count(Kind::Conflicting),
        case.max_parallel,
        case.interruptions
            .iter()
            .map(|i| format!("{:?}@{}+{}ms", i.signal, i.after_lines, i.delay_ms))
            .collect::<Vec<_>>(),
        states.join(" ")
    );
    Ok(())
}

fn initial_file(file: usize) -> String {
    let mut text = format!("# shared file {file}\n");
    for slot in 0..SLOTS {
        let _ = writeln!(text, "s{slot} = base");
        // Two unchanged lines between slots, so edits of different slots merge cleanly.
        let _ = writeln!(text, "~ f{file} gap {slot}a\n~ f{file} gap {slot}b");
    }
    text
}

/// The project's own check, committed in the repository.
fn verify_script() -> String {
    let files: Vec<String> = (0..FILES).map(|f| format!("f{f}.txt")).collect();
    format!(
        r#"#!/bin/sh
# Every shared file has its {SLOTS} slot lines, and none holds a BROKEN or conflict marker.
status=0
for f in {files}; do
  if [ ! -f "$f" ]; then echo "$f: missing"; status=1; continue; fi
  n=$(grep -c '^s[0-9]* = ' "$f")
  if [ "$n" -ne {SLOTS} ]; then echo "$f: $n slot lines, expected {SLOTS}"; status=1; fi
  if grep -n -H -e BROKEN -e '^<<<<<<<' -e '^=======' -e '^>>>>>>>' "$f"; then status=1; fi
done
exit $status
"#,
        files = files.join(" ")
    )
}

/// A shell agent for `case`: the planner plans its tasks, each worker rewrites its lines with
/// sed (the same edit every round), the reviewer approves.
fn agent_script(case: &Case) -> String {
    let plan: Vec<serde_json::Value> = case
        .tasks
        .iter()
        .map(|t| {
            serde_json::json!({
                "key": t.key,
                "title": format!("Edit shared lines {}", t.key),
                "description": format!("rewrite lines {:?}", t.edits),
                "acceptance": ["verify.sh passes"],
                "depends_on": [],
            })
        })
        .collect();
    let plan = serde_json::json!({"reasoning": "property test", "tasks": plan}).to_string();
    let mut workers = String::new();
    for t in &case.tasks {
        let _ = write!(workers, "      {})", t.key);
        for slot in &t.edits {
            let _ = write!(
                workers,
                " sed -i 's/^s{s} = .*/s{s} = {v}/' {p};",
                s = slot.slot,
                v = t.value(),
                p = slot.path()
            );
        }
        workers.push_str(" ;;\n");
    }
    format!(
        r#"#!/bin/sh
cat > /dev/null
case "$FACTORY_ROLE" in
  planner) echo '{plan}' ;;
  worker)
    case "$FACTORY_TASK_KEY" in
{workers}    esac
    echo "DECISION: rewrite the task's lines -- the task says so" ;;
  reviewer) echo '{{"verdict":"approve","summary":"looks right"}}' ;;
esac
"#
    )
}

fn set_up(case: &Case, dir: &Path) -> Result<(), String> {
    repo(dir);
    for file in 0..FILES {
        write(
            &dir.join(format!("f{file}.txt")),
            initial_file(file).as_bytes(),
        )?;
    }
    write(&dir.join("verify.sh"), verify_script().as_bytes())?;
    write(&dir.join(".gitignore"), b"*.local\n")?;
    git(dir, &["add", "-A"])?;
    git(dir, &["commit", "-q", "-m", "shared files and their check"])?;

    let agent = dir.with_extension("agent.sh");
    write(&agent, agent_script(case).as_bytes())?;
    let mut perms = std::fs::metadata(&agent)
        .map_err(|e| e.to_string())?
        .permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&agent, perms).map_err(|e| e.to_string())?;
    let agent = agent.to_string_lossy().into_owned();
    let out = factory(
        dir,
        &["init", "--verify", "sh verify.sh", "--agent", &agent],
    );
    if !out.status.success() {
        return Err(format!("init: {}", stderr(&out)));
    }
    let config_path = dir.join(".factory/config.toml");
    let text = std::fs::read_to_string(&config_path).map_err(|e| e.to_string())?;
    let mut config: toml::Table = toml::from_str(&text).map_err(|e| e.to_string())?;
    config.insert(
        "max_parallel".into(),
        toml::Value::Integer(case.max_parallel.into()),
    );
    std::fs::write(
        &config_path,
        toml::to_string(&config).map_err(|e| e.to_string())?,
    )
    .map_err(|e| e.to_string())?;

    let out = factory(dir, &["epic", "add", "Edit the shared files"]);
    if !out.status.success() {
        return Err(format!("epic add: {}", stderr(&out)));
    }

    let d = &case.dirty;
    let mut modified = b"my unsaved edit: ".to_vec();
    modified.extend_from_slice(&d.modified.0);
    write(&dir.join("notes.txt"), &modified)?;
    write(&dir.join("staged.txt"), &d.staged.0)?;
    git(dir, &["add", "staged.txt"])?;
    let mut edited = d.staged.0.clone();
    edited.extend_from_slice(&d.edited.0);
    write(&dir.join("staged.txt"), &edited)?;
    write(&dir.join("scratch.txt"), &d.untracked.0)?;
    write(&dir.join("build.local"), &d.ignored.0)?;
    Ok(())
}

/// What the user has in their checkout before any run.
struct UserState {
    files: BTreeMap<&'static str, Vec<u8>>,
    staged_blob: Vec<u8>,
    status: Vec<u8>,
}

const USER_FILES: [&str; 4] = ["notes.txt", "staged.txt", "scratch.txt", "build.local"];

impl UserState {
    fn read(dir: &Path) -> Result<UserState, String> {
        let mut files = BTreeMap::new();
        for name in USER_FILES {
            files.insert(
                name,
                std::fs::read(dir.join(name)).map_err(|e| format!("{name}: {e}"))?,
            );
        }
        Ok(UserState {
            files,
            staged_blob: git_bytes(dir, &["show", ":staged.txt"])?,
            status: git_bytes(dir, &["status", "--porcelain=v1", "-z"])?,
        })
    }

    /// The user's files and staged content are as they were, byte for byte.
    fn check_files(&self, dir: &Path) -> Result<(), String> {
        for (name, before) in &self.files {
            let now = std::fs::read(dir.join(name)).map_err(|e| format!("{name}: {e}"))?;
            if &now != before {
                return Err(format!(
                    "the user's {name} changed: was {:?}, now {:?}",
                    Bytes(before.clone()),
                    Bytes(now)
                ));
            }
        }
        let blob = git_bytes(dir, &["show", ":staged.txt"])?;
        if blob != self.staged_blob {
            return Err(format!(
                "the staged staged.txt changed: was {:?}, now {:?}",
                Bytes(self.staged_blob.clone()),
                Bytes(blob)
            ));
        }
        Ok(())
    }
}

/// Starts `factory run`, sends `interruption` once it has printed enough lines, and waits for
/// it to end. Returns its exit code (None when killed).
fn run_interrupted(
    dir: &Path,
    interruption: &Interruption,
    log: &mut String,
    n: usize,
) -> Result<Option<i32>, String> {
    let mut child = spawn_run(dir)?;
    let (lines, out, err) = capture(&mut child);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = 0;
    while seen < interruption.after_lines {
        match lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(()) => seen += 1,
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let _ = child.kill();
                return Err(format!("run {n} printed nothing new for 60 s"));
            }
        }
    }
    std::thread::sleep(Duration::from_millis(interruption.delay_ms));
    // Not yet reaped, so the pid (and the group, which it leads) is still this child's even if
    // it has exited. Ctrl-C goes to the whole process group, as a terminal sends it; SIGTERM and
    // SIGKILL to `factory` alone, as `kill` does.
    let pid = child.id().to_string();
    let group = format!("-{pid}");
    let send = |sig: &str, to: &str| {
        let _ = Command::new("kill").args([sig, "--", to]).status();
    };
    match interruption.signal {
        Signal::Kill => send("-KILL", &pid),
        Signal::Term => send("-TERM", &pid),
        Signal::Int => send("-INT", &group),
        Signal::IntTwice => {
            send("-INT", &group);
            std::thread::sleep(Duration::from_millis(20));
            send("-INT", &group);
        }
    }
    let status = wait_deadline(&mut child, Duration::from_secs(30))
        .ok_or_else(|| format!("run {n} did not stop within 30 s of {interruption:?}"))?;
    let (out, err) = (
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default(),
    );
    let _ = writeln!(
        log,
        "run {n}: {interruption:?} after {seen} line(s) -> {status}\nstdout:\n{out}stderr:\n{err}"
    );
    no_debug_text(&out, &err).map_err(|e| format!("run {n}: {e}"))?;
    // After `kill -9`, the git command Factory was running finishes on its own; the user starts
    // the next run after that (a restart racing a finishing git command is not modelled).
    let stragglers = processes_in(dir.parent().unwrap_or(dir))?;
    if !stragglers.is_empty() {
        let _ = writeln!(log, "still running after run {n}: {stragglers:?}");
    }
    no_process_left(dir.parent().unwrap_or(dir))?;
    let code = status.code();
    // A run may end on its own before the signal (0 or 1), else by it.
    if !matches!(code, None | Some(0 | 1 | 130 | 143)) {
        return Err(format!("run {n} exited with {status}: {err}"));
    }
    Ok(code)
}

/// Runs `factory run` until it ends on its own; returns its exit code.
fn run_to_end(dir: &Path, log: &mut String) -> Result<i32, String> {
    let mut child = spawn_run(dir)?;
    let (_lines, out, err) = capture(&mut child);
    let status = wait_deadline(&mut child, Duration::from_secs(120))
        .ok_or("the last run did not finish within 120 s")?;
    let (out, err) = (
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default(),
    );
    let _ = writeln!(log, "last run -> {status}\nstdout:\n{out}stderr:\n{err}");
    no_debug_text(&out, &err).map_err(|e| format!("the last run: {e}"))?;
    match status.code() {
        Some(code @ (0 | 1)) => Ok(code),
        _ => Err(format!("the last run exited with {status}: {err}")),
    }
}

/// What people read carries no Rust debug text (issue 8, item 19). Not checked when
/// diagnostics are asked for with `FACTORY_LOG`.
fn no_debug_text(out: &str, err: &str) -> Result<(), String> {
    if std::env::var_os("FACTORY_LOG").is_some() {
        return Ok(());
    }
    let line = out
        .lines()
        .chain(err.lines())
        .find(|line| line.contains("Some(") || line.contains("None"));
    match line {
        Some(line) => Err(format!("printed Rust debug text: {line}")),
        None => Ok(()),
    }
}

/// `factory run` in a process group of its own, so Ctrl-C can be sent to it as a terminal would.
fn spawn_run(dir: &Path) -> Result<Child, String> {
    use std::os::unix::process::CommandExt;
    factory_cmd(dir, &["run"])
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("spawn factory run: {e}"))
}

type Collector = std::thread::JoinHandle<String>;

/// Reads the child's stdout (one message per line on the channel) and stderr in threads.
fn capture(child: &mut Child) -> (mpsc::Receiver<()>, Collector, Collector) {
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let out = std::thread::spawn(move || {
        let mut text = String::new();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            text.push_str(&line);
            text.push('\n');
            let _ = tx.send(());
        }
        text
    });
    let err = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    (rx, out, err)
}

fn wait_deadline(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A merge commit on main's first-parent chain made for a task.
struct MainMerge {
    commit: String,
    second_parent: String,
    spec: String,
}

/// Main's first-parent chain from `base` (oldest first), and which of its commits are task
/// merges. Fails on anything else on the chain.
fn first_parent_merges(dir: &Path, base: &str) -> Result<Vec<MainMerge>, String> {
    let range = format!("{base}..main");
    let log = git(
        dir,
        &[
            "log",
            "--first-parent",
            "--reverse",
            "--format=%H %P%x09%s",
            &range,
        ],
    )?;
    let mut merges = Vec::new();
    for line in log.lines() {
        let (ids, subject) = line.split_once('\t').unwrap_or((line, ""));
        let ids: Vec<&str> = ids.split_whitespace().collect();
        let spec = subject
            .strip_prefix("Merge factory/")
            .and_then(|rest| rest.split_once(':'))
            .map(|(spec, _)| spec.to_owned());
        match (ids.as_slice(), spec) {
            ([commit, _first, second], Some(spec)) => merges.push(MainMerge {
                commit: (*commit).to_owned(),
                second_parent: (*second).to_owned(),
                spec,
            }),
            _ => return Err(format!("main has a commit that is no task merge: {line}")),
        }
    }
    Ok(merges)
}

fn tasks_json(dir: &Path) -> Result<Vec<serde_json::Value>, String> {
    let out = factory(dir, &["tasks", "--json"]);
    if !out.status.success() {
        return Err(format!("factory tasks --json: {}", stderr(&out)));
    }
    let value: serde_json::Value =
        serde_json::from_slice(&out.stdout).map_err(|e| format!("{e}: {}", stdout(&out)))?;
    value
        .as_array()
        .cloned()
        .ok_or_else(|| format!("not a list: {value}"))
}

/// Invariants that hold after every run, interrupted or not.
fn check_after_run(
    case: &Case,
    dir: &Path,
    user: &UserState,
    mains: &[String],
) -> Result<(), String> {
    user.check_files(dir)?;
    let head = std::fs::read_to_string(dir.join(".git/HEAD")).map_err(|e| e.to_string())?;
    if head.trim() != "ref: refs/heads/main" {
        return Err(format!("the user's HEAD moved off main: {head}"));
    }
    // No commit main had before any run is lost: each is on the first-parent chain.
    let chain = git(dir, &["rev-list", "--first-parent", "main"])?;
    let chain: BTreeSet<&str> = chain.lines().collect();
    for old in mains {
        if !chain.contains(old.as_str()) {
            return Err(format!(
                "{old}, once main, is not on main's first-parent chain"
            ));
        }
    }
    let merges = first_parent_merges(dir, &mains[0])?;
    let mut seen = BTreeSet::new();
    for merge in &merges {
        if !seen.insert(merge.spec.as_str()) {
            return Err(format!("{} is merged twice", merge.spec));
        }
    }
    if !merges.is_empty() {
        let tasks = tasks_json(dir)?;
        for merge in &merges {
            let key = tasks
                .iter()
                .find(|t| t["spec_id"] == merge.spec.as_str())
                .and_then(|t| t["key"].as_str())
                .ok_or_else(|| format!("main merged {}, which is no task", merge.spec))?;
            if case.task(key).is_some_and(|t| t.kind == Kind::Failing) {
                return Err(format!("failing task {key} was merged as {}", merge.commit));
            }
        }
    }
    verify_main(dir)
}

/// Runs the committed verify script on main's tree, in a directory of its own.
fn verify_main(dir: &Path) -> Result<(), String> {
    let tree = dir.with_extension("main-tree");
    let _ = std::fs::remove_dir_all(&tree);
    std::fs::create_dir_all(&tree).map_err(|e| e.to_string())?;
    let archive = git_bytes(dir, &["archive", "--format=tar", "main"])?;
    let mut tar = Command::new("tar")
        .args(["-x", "-C"])
        .arg(&tree)
        .stdin(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    std::io::Write::write_all(tar.stdin.as_mut().expect("piped stdin"), &archive)
        .map_err(|e| e.to_string())?;
    drop(tar.stdin.take());
    if !tar.wait().map_err(|e| e.to_string())?.success() {
        return Err("tar -x of main failed".into());
    }
    let out = Command::new("sh")
        .arg("verify.sh")
        .current_dir(&tree)
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!(
            "main fails verify: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(())
}

/// Invariants once the queue is done.
fn check_final(
    case: &Case,
    dir: &Path,
    user: &UserState,
    base: &str,
    code: i32,
) -> Result<(), String> {
    let tasks = tasks_json(dir)?;
    if tasks.len() != case.tasks.len() {
        return Err(format!(
            "{} tasks planned, expected {}",
            tasks.len(),
            case.tasks.len()
        ));
    }
    let merges = first_parent_merges(dir, base)?;
    let mut all_merged = true;
    for task in &tasks {
        let key = task["key"].as_str().unwrap_or_default();
        let plan = case
            .task(key)
            .ok_or_else(|| format!("unplanned task {task}"))?;
        let spec = task["spec_id"].as_str().unwrap_or_default();
        let state = task["state"].as_str().unwrap_or_default();
        let reason = task["blocked_reason"].as_str().unwrap_or_default();
        let merged: Vec<&MainMerge> = merges.iter().filter(|m| m.spec == spec).collect();
        let contested = case.contested(plan);
        let show = || {
            format!(
                "task {key} ({:?}, contested: {contested}): {task}",
                plan.kind
            )
        };
        if state == "completed" {
            if plan.kind == Kind::Failing {
                return Err(format!("a failing task completed: {}", show()));
            }
            let [merge] = merged.as_slice() else {
                return Err(format!("{} merge(s) on main for {}", merged.len(), show()));
            };
            if task["merge_commit"] != merge.commit.as_str() {
                return Err(format!(
                    "recorded merge is not {}: {}",
                    merge.commit,
                    show()
                ));
            }
            if task["verified_commit"] != merge.second_parent.as_str() {
                return Err(format!(
                    "main merged {}, not the verified commit: {}",
                    merge.second_parent,
                    show()
                ));
            }
            continue;
        }
        all_merged = false;
        if !merged.is_empty() {
            return Err(format!("merged on main but {state}: {}", show()));
        }
        if !matches!(state, "blocked" | "failed") || reason.trim().is_empty() {
            return Err(format!(
                "neither merged nor blocked with a reason: {}",
                show()
            ));
        }
        match plan.kind {
            Kind::Failing => {}
            _ if contested => {
                if !plan.edits.iter().any(|slot| reason.contains(&slot.path())) {
                    return Err(format!(
                        "blocked without naming its conflicting file: {}",
                        show()
                    ));
                }
            }
            _ => return Err(format!("a good task was not merged: {}", show())),
        }
    }
    if (code == 0) != all_merged {
        return Err(format!(
            "the last run exited {code}, but all merged: {all_merged}"
        ));
    }

    // Main's files are exactly the merged tasks' edits, applied in merge order.
    let mut model: BTreeMap<Slot, String> = BTreeMap::new();
    for merge in &merges {
        let key = tasks
            .iter()
            .find(|t| t["spec_id"] == merge.spec.as_str())
            .and_then(|t| t["key"].as_str())
            .unwrap_or_default();
        if let Some(plan) = case.task(key) {
            for slot in &plan.edits {
                model.insert(*slot, plan.value());
            }
        }
    }
    for file in 0..FILES {
        let mut expected = initial_file(file);
        for slot in 0..SLOTS {
            if let Some(value) = model.get(&Slot { file, slot }) {
                expected = expected.replace(
                    &format!("s{slot} = base\n"),
                    &format!("s{slot} = {value}\n"),
                );
            }
        }
        let actual = git_bytes(dir, &["show", &format!("main:f{file}.txt")])?;
        if actual != expected.as_bytes() {
            return Err(format!(
                "main's f{file}.txt is not the merged edits in merge order:\nexpected:\n{expected}\nactual:\n{}",
                String::from_utf8_lossy(&actual)
            ));
        }
    }

    // The checkout follows main and keeps exactly the user's uncommitted changes.
    if rev(dir, "HEAD")? != rev(dir, "main")? {
        return Err("the user's checkout is not on the new main".into());
    }
    let status = git_bytes(dir, &["status", "--porcelain=v1", "-z"])?;
    if status != user.status {
        return Err(format!(
            "git status changed: was {:?}, now {:?}",
            Bytes(user.status.clone()),
            Bytes(status)
        ));
    }
    git(dir, &["fsck", "--no-progress", "--no-dangling"])?;
    no_process_left(dir.parent().unwrap_or(dir))?;
    // Nothing holds a git lock any more: the user's next git command works.
    let locks = lock_files(&dir.join(".git"));
    if !locks.is_empty() {
        return Err(format!("lock files left in .git: {locks:?}"));
    }
    Ok(())
}

/// Every `*.lock` file under `dir`.
fn lock_files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(dir) = todo.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                todo.push(path);
            } else if path.extension().is_some_and(|ext| ext == "lock") {
                found.push(path);
            }
        }
    }
    found
}

/// Processes running in `root` or below: agents, verify commands, git.
fn processes_in(root: &Path) -> Result<Vec<String>, String> {
    Ok(std::fs::read_dir("/proc")
        .map_err(|e| e.to_string())?
        .flatten()
        .filter(|entry| entry.file_name().to_string_lossy().parse::<u32>().is_ok())
        .filter_map(|entry| {
            let cwd = std::fs::read_link(entry.path().join("cwd")).ok()?;
            cwd.starts_with(root).then(|| {
                let cmd = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
                format!(
                    "{} {}",
                    entry.file_name().to_string_lossy(),
                    String::from_utf8_lossy(&cmd).replace('\0', " ")
                )
            })
        })
        .collect())
}

/// No process runs in `root` (agents, verify commands, git) within 5 s.
fn no_process_left(root: &Path) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = processes_in(root)?;
        if left.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("processes left in the repository: {left:?}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), String> {
    std::fs::write(path, bytes).map_err(|e| format!("{}: {e}", path.display()))
}

fn rev(dir: &Path, name: &str) -> Result<String, String> {
    git(dir, &["rev-parse", name])
}

/// `git ARGS` in `dir` without the environment's identity or system config; its stdout.
fn git_bytes(dir: &Path, args: &[&str]) -> Result<Vec<u8>, String> {
    let mut cmd = Command::new("git");
    cmd.args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1");
    for var in [
        "GIT_AUTHOR_NAME",
        "GIT_AUTHOR_EMAIL",
        "GIT_COMMITTER_NAME",
        "GIT_COMMITTER_EMAIL",
    ] {
        cmd.env_remove(var);
    }
    let out = cmd.output().map_err(|e| format!("git {args:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(out.stdout)
}

fn git(dir: &Path, args: &[&str]) -> Result<String, String> {
    git_bytes(dir, args).map(|out| String::from_utf8_lossy(&out).trim().to_owned())
}

/// A repository whose one task adds 32 MB of random data, so the git commands that write it
/// (`git add` in the task's worktree, `read-tree` moving the user's checkout) run long enough to
/// be caught holding their locks. The user has main checked out with an untracked file.
fn big_file_repo(tmp: &Path) -> PathBuf {
    let dir = tmp.join("repo");
    repo(&dir);
    let agent = tmp.join("agent.sh");
    let plan = r#"{"reasoning":"one task","tasks":[{"key":"big","title":"Add big files","depends_on":[]}]}"#;
    write(
        &agent,
        format!(
            r#"#!/bin/sh
cat > /dev/null
case "$FACTORY_ROLE" in
  planner) echo '{plan}' ;;
  worker) for i in 1 2 3 4; do head -c 8000000 /dev/urandom > "big$i.bin"; done ;;
  reviewer) echo '{{"verdict":"approve","summary":"ok"}}' ;;
esac
"#
        )
        .as_bytes(),
    )
    .unwrap();
    let mut perms = std::fs::metadata(&agent).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&agent, perms).unwrap();
    let out = factory(
        &dir,
        &[
            "init",
            "--verify",
            "true",
            "--agent",
            agent.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        factory(&dir, &["epic", "add", "Big files"])
            .status
            .success()
    );
    write(&dir.join("scratch.txt"), b"untracked scratch\n").unwrap();
    dir
}

/// Starts `factory run` in `dir`, sends `signal` as soon as `lock` exists (SIGINT to the process
/// group, as Ctrl-C in a terminal; others to `factory`), and waits for the run to end; returns
/// its exit code (None when killed). When `lock` is the task's `index.lock`, only once the
/// worker has written its files: that lock is then `git add`'s.
fn signal_when_locked(dir: &Path, lock: &Path, signal: &str) -> Option<i32> {
    let written = dir.join(".factory/worktrees/tasks/001-add-big-files/big4.bin");
    let task_lock = lock.starts_with(dir.join(".git/worktrees"));
    let mut child = spawn_run(dir).unwrap();
    let (_lines, _out, err) = capture(&mut child);
    let deadline = Instant::now() + Duration::from_secs(60);
    let ready = || {
        lock.exists()
            && (!task_lock || std::fs::metadata(&written).is_ok_and(|m| m.len() == 8_000_000))
    };
    while !ready() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {}",
            lock.display()
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before taking {}",
            lock.display()
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    // "-INT" goes to the process group, as Ctrl-C in a terminal does.
    let pid = child.id().to_string();
    let to = if signal == "-INT" {
        format!("-{pid}")
    } else {
        pid
    };
    Command::new("kill")
        .args([signal, "--", &to])
        .status()
        .unwrap();
    let status = wait_deadline(&mut child, Duration::from_secs(30)).expect("run stops");
    eprintln!("{}", err.join().unwrap());
    status.code()
}

/// The next run merges the task, and the user's checkout is on the new main with only their
/// untracked file: nothing half-moved, no lock left in `.git`.
fn next_run_merges_and_the_checkout_is_clean(dir: &Path) {
    let out = factory(dir, &["run"]);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert_eq!(
        git(dir, &["rev-list", "--merges", "--count", "main"]).unwrap(),
        "1"
    );
    assert_eq!(
        git(dir, &["rev-parse", "HEAD"]),
        git(dir, &["rev-parse", "main"])
    );
    assert_eq!(
        git(dir, &["status", "--porcelain"]).unwrap(),
        "?? scratch.txt"
    );
    for lock in ["HEAD.lock", "index.lock"] {
        assert!(!dir.join(".git").join(lock).exists(), "{lock} left");
    }
    // The user's own git works.
    git(dir, &["commit", "-q", "--allow-empty", "-m", "mine"]).unwrap();
}

/// Found by the property test (seed 16434952): SIGTERM while Factory's `git add` ran in a task's
/// worktree killed git with SIGKILL, which left that worktree's `index.lock`; the next run
/// blocked the task with git's "index.lock: File exists".
#[test]
fn a_stop_while_git_writes_a_task_index_leaves_no_lock_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = big_file_repo(tmp.path());
    let lock = dir.join(".git/worktrees/001-add-big-files/index.lock");
    assert_eq!(signal_when_locked(&dir, &lock, "-TERM"), Some(143));
    crate::fixture::wait_for(Duration::from_secs(5), "the index lock to go", || {
        !lock.exists()
    });
    next_run_merges_and_the_checkout_is_clean(&dir);
}

/// Found by the property test (seed 16434952): Ctrl-C in a terminal reaches the whole
/// foreground process group, so it killed the `git add` Factory was running for a task, and the
/// still-stopping run blocked the task "`git add --all` failed (killed by a signal)". Git now
/// runs in a process group of its own and finishes; the task is resumed, not blocked.
#[test]
fn ctrl_c_does_not_kill_the_git_command_of_a_task() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = big_file_repo(tmp.path());
    let lock = dir.join(".git/worktrees/001-add-big-files/index.lock");
    assert_eq!(signal_when_locked(&dir, &lock, "-INT"), Some(130));
    // The `git add` finished: the files are in the task's index (or already committed).
    crate::fixture::wait_for(Duration::from_secs(10), "git add to finish", || {
        !lock.exists()
    });
    let worktree = dir.join(".factory/worktrees/tasks/001-add-big-files");
    let staged = git(&worktree, &["ls-files"]).unwrap();
    assert!(staged.contains("big4.bin"), "{staged}");
    let task = crate::fixture::tasks_of(&crate::fixture::status_json(&dir)).remove(0);
    assert_ne!(task["state"], "blocked", "{task}");
    next_run_merges_and_the_checkout_is_clean(&dir);
}

/// Found by the property test (seed 16434952): `kill -9` of `factory run` while it held
/// `.git/HEAD.lock` of the user's checkout (moving it to a merge) left that lock: every later
/// merge waited on it ("a git command is running"), the run exited 1 telling the user to commit
/// or stash, and the user's own `git commit` failed. The checkout could also be left on the
/// merge while main was not.
#[test]
fn kill_9_while_moving_the_users_checkout_is_recovered_by_the_next_run() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = big_file_repo(tmp.path());
    assert_eq!(
        signal_when_locked(&dir, &dir.join(".git/HEAD.lock"), "-KILL"),
        None
    );
    next_run_merges_and_the_checkout_is_clean(&dir);
}

/// Ctrl-C while the user's checkout is being moved to a merge: the next run finds the checkout
/// whole, either where it was or put back, and merges.
#[test]
fn ctrl_c_while_moving_the_users_checkout_leaves_it_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = big_file_repo(tmp.path());
    assert_eq!(
        signal_when_locked(&dir, &dir.join(".git/HEAD.lock"), "-INT"),
        Some(130)
    );
    next_run_merges_and_the_checkout_is_clean(&dir);
}

/// Found by the property test (seed 16434952): a git command interrupted before it could clean
/// up (Ctrl-C pressed twice reaches git too; a signal in git's first instants; a crash) leaves a
/// lock file in a task's worktree, e.g. `AUTO_MERGE.lock` from `git rebase --abort`. Git then
/// refuses that worktree, and the next run blocked the task. Factory owns task worktrees, so a
/// run clears the locks no live process holds there before it starts.
#[test]
fn locks_an_interrupted_git_left_in_a_task_worktree_are_cleared() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("repo");
    crate::fixture::factory_repo(&dir, &["a"], "true");
    std::fs::write(dir.join(".factory/SLOW_a"), "").unwrap();
    assert!(factory(&dir, &["epic", "add", "Add a"]).status.success());
    let child = factory_cmd(&dir, &["run"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    crate::fixture::wait_for(Duration::from_secs(60), "the worker to start", || {
        crate::fixture::agent_runs(&dir)
            .iter()
            .any(|l| l.starts_with("worker 001"))
    });
    assert_eq!(crate::fixture::interrupt(child).status.code(), Some(130));
    let admin = dir.join(".git/worktrees/001-add-a-file");
    for lock in ["index.lock", "AUTO_MERGE.lock", "HEAD.lock"] {
        std::fs::write(admin.join(lock), "").unwrap();
    }
    std::fs::write(dir.join(".git/refs/heads/factory/001-add-a-file.lock"), "").unwrap();
    std::fs::remove_file(dir.join(".factory/SLOW_a")).unwrap();

    let out = factory(&dir, &["run"]);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    let tasks = crate::fixture::tasks_of(&crate::fixture::status_json(&dir));
    assert_eq!(tasks[0]["state"], "completed", "{tasks:?}");
}
