//! Cleanup after merges, `factory gc`, `factory merge --dry-run` and spec numbering after a lost
//! database (issue 8, items C14 and D16), with real git and the shell agent.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use crate::fixture::{
    agent_runs, factory, factory_cmd, factory_repo, git, interrupt, status_json, stderr, stdout,
    tasks_of, wait_for,
};

/// Replaces `from` by `to` in `.factory/config.toml`.
fn set_config(dir: &Path, from: &str, to: &str) {
    let path = dir.join(".factory/config.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(from), "{from} not in the config");
    std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
}

fn keep_branches(dir: &Path, keep: bool) {
    if keep {
        set_config(dir, "keep_branches = false", "keep_branches = true");
    } else {
        set_config(dir, "keep_branches = true", "keep_branches = false");
    }
}

/// `factory/*` branch names.
fn factory_branches(dir: &Path) -> Vec<String> {
    git(
        dir,
        &[
            "for-each-ref",
            "--format=%(refname:short)",
            "refs/heads/factory/",
        ],
    )
    .lines()
    .map(str::to_owned)
    .collect()
}

/// `git worktree list --porcelain` paths, the main checkout first.
fn worktrees(dir: &Path) -> Vec<PathBuf> {
    git(dir, &["worktree", "list", "--porcelain"])
        .lines()
        .filter_map(|l| l.strip_prefix("worktree "))
        .map(PathBuf::from)
        .collect()
}

fn task_dir(dir: &Path, spec: &str) -> PathBuf {
    dir.join(".factory/worktrees/tasks").join(spec)
}

/// `git worktree add` of an existing branch at the task's worktree path, as an interrupted run
/// would have left it.
fn add_worktree(dir: &Path, spec: &str) -> PathBuf {
    let path = task_dir(dir, spec);
    git(
        dir,
        &[
            "worktree",
            "add",
            "-q",
            path.to_str().unwrap(),
            &format!("factory/{spec}"),
        ],
    );
    path
}

/// An epic of `tasks` run to completion.
fn merged_repo(dir: &Path, tasks: &[&str], keep: bool) {
    factory_repo(dir, tasks, "true");
    if keep {
        keep_branches(dir, true);
    }
    assert!(factory(dir, &["epic", "add", "Add files"]).status.success());
    let out = factory(dir, &["run"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

/// Everything a read-only command must leave byte-identical: every ref, the worktree registry
/// and every file under `.git/worktrees/` and `.factory/worktrees/`, the user's checkout state
/// and the object store's files.
fn repository_snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut snapshot = vec![
        (
            "refs".to_owned(),
            git(dir, &["for-each-ref", "--format=%(refname) %(objectname)"]).into_bytes(),
        ),
        (
            "worktrees".to_owned(),
            git(dir, &["worktree", "list", "--porcelain"]).into_bytes(),
        ),
        (
            "status".to_owned(),
            git(dir, &["status", "--porcelain=v1", "--untracked-files=all"]).into_bytes(),
        ),
        (
            "HEAD".to_owned(),
            std::fs::read(dir.join(".git/HEAD")).unwrap(),
        ),
    ];
    for root in [
        dir.join(".git/worktrees"),
        dir.join(".factory/worktrees"),
        dir.join(".git/refs"),
        dir.join(".git/objects"),
    ] {
        let mut stack = vec![root];
        while let Some(path) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&path) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                // The index of a checkout is git's cache; `git status` above refreshes it.
                if path.file_name().is_some_and(|n| n == "index") {
                    continue;
                }
                if path.is_dir() {
                    stack.push(path);
                } else {
                    let content = std::fs::read(&path).unwrap_or_default();
                    snapshot.push((path.display().to_string(), content));
                }
            }
        }
    }
    snapshot.sort();
    snapshot
}

/// C14: after a merge the task's worktree is removed and its branch deleted.
#[test]
fn a_merged_tasks_branch_is_deleted_with_its_worktree() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("repo");
    merged_repo(&dir, &["a", "b"], false);
    assert_eq!(git(&dir, &["rev-list", "--merges", "--count", "main"]), "2");
    assert!(
        factory_branches(&dir).is_empty(),
        "{:?}",
        factory_branches(&dir)
    );
    assert_eq!(worktrees(&dir), [dir.canonicalize().unwrap()]);
    let progress =
        std::fs::read_to_string(dir.join(".factory/specs/001-add-a-file/build-progress.txt"))
            .unwrap();
    assert!(
        progress.contains("deleted branch factory/001-add-a-file"),
        "{progress}"
    );
    // Nothing left for gc.
    let out = factory(&dir, &["gc"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "Nothing to clean up.\n");
}

/// C14: `[merge] keep_branches = true` keeps merged branches; the worktrees still go.
#[test]
fn keep_branches_keeps_merged_branches() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("repo");
    merged_repo(&dir, &["a", "b"], true);
    assert_eq!(
        factory_branches(&dir),
        ["factory/001-add-a-file", "factory/002-add-b-file"]
    );
    assert_eq!(worktrees(&dir).len(), 1);
    // gc respects the setting too.
    let out = factory(&dir, &["gc"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("keep_branches = true"),
        "{}",
        stdout(&out)
    );
    assert_eq!(factory_branches(&dir).len(), 2);
}

/// C14: cleanup an interrupted run left (a merged task's worktree and branch still there) is
/// finished when the next run starts; a branch that moved past the merged commit is kept and
/// the decision log says why, once.
#[test]
fn an_interrupted_cleanup_is_finished_when_the_next_run_starts() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("repo");
    merged_repo(&dir, &["a", "b"], true);
    keep_branches(&dir, false);
    let a = add_worktree(&dir, "001-add-a-file");
    let b = add_worktree(&dir, "002-add-b-file");
    std::fs::write(b.join("later.txt"), "after the merge\n").unwrap();
    git(&b, &["add", "later.txt"]);
    git(&b, &["commit", "-q", "-m", "work after the merge"]);
    let moved = git(&dir, &["rev-parse", "factory/002-add-b-file"]);

    let out = factory(&dir, &["run"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!a.exists() && !b.exists());
    assert_eq!(worktrees(&dir).len(), 1);
    assert_eq!(factory_branches(&dir), ["factory/002-add-b-file"]);
    assert_eq!(git(&dir, &["rev-parse", "factory/002-add-b-file"]), moved);
    let decisions = |dir: &Path| {
        let out = factory(dir, &["decisions", "--json"]);
        let all: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        all.as_array()
            .unwrap()
            .iter()
            .filter(|d| d["decision"] == "keep the merged branch factory/002-add-b-file")
            .cloned()
            .collect::<Vec<_>>()
    };
    let kept = decisions(&dir);
    assert_eq!(kept.len(), 1, "{kept:?}");
    let why = kept[0]["reasoning"].as_str().unwrap();
    assert!(
        why.contains("moved past the merged commit") && why.contains("not on main"),
        "{why}"
    );
    // The next start finds the same branch and does not record it again.
    assert!(factory(&dir, &["run"]).status.success());
    assert_eq!(decisions(&dir).len(), 1);
    assert_eq!(factory_branches(&dir), ["factory/002-add-b-file"]);
}

/// C14 with B11: a cancelled task's worktree left behind is removed when a run starts; its
/// branch is kept.
#[test]
fn a_cancelled_tasks_worktree_is_removed_at_start_and_its_branch_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("repo");
    factory_repo(&dir, &["a"], "true");
    std::fs::write(dir.join(".factory/FAIL_worker"), "").unwrap();
    assert!(factory(&dir, &["epic", "add", "Add a"]).status.success());
    assert_eq!(factory(&dir, &["run"]).status.code(), Some(1));
    let out = factory(&dir, &["task", "cancel", "001"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let worktree = add_worktree(&dir, "001-add-a-file");
    std::fs::remove_file(dir.join(".factory/FAIL_worker")).unwrap();

    let out = factory(&dir, &["run"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!worktree.exists());
    assert_eq!(factory_branches(&dir), ["factory/001-add-a-file"]);
}

/// C14: `factory gc --dry-run` lists what it would remove and changes nothing; `factory gc`
/// then removes exactly that: an orphaned worktree, finished tasks' branches and a stale
/// `.git/worktrees` entry.
#[test]
fn gc_dry_run_lists_and_changes_nothing_then_gc_removes_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("repo");
    merged_repo(&dir, &["a", "b"], true);
    keep_branches(&dir, false);
    let a = add_worktree(&dir, "001-add-a-file");
    // A worktree of a task no database knows, whose directory was deleted by hand.
    let gone = task_dir(&dir, "050-gone");
    git(
        &dir,
        &[
            "worktree",
            "add",
            "-q",
            "-b",
            "factory/050-gone",
            gone.to_str().unwrap(),
        ],
    );
    std::fs::remove_dir_all(&gone).unwrap();

    let before = repository_snapshot(&dir);
    let out = factory(&dir, &["gc", "--dry-run"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    for line in [
        "Would remove worktree .factory/worktrees/tasks/001-add-a-file: its task 001-add-a-file was merged",
        "Would remove stale worktree entry .factory/worktrees/tasks/050-gone: its directory is gone",
        "Would remove branch factory/001-add-a-file: its task 001-add-a-file was merged",
        "Would remove branch factory/002-add-b-file: its task 002-add-b-file was merged",
        "Would remove branch factory/050-gone: no task in the database uses it",
        "Dry run: nothing was changed.",
    ] {
        assert!(text.contains(line), "missing `{line}` in:\n{text}");
    }
    assert!(
        repository_snapshot(&dir) == before,
        "gc --dry-run changed the repository"
    );
    let json = factory(&dir, &["gc", "--dry-run", "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(report["dry_run"], true);
    assert_eq!(report["removed"].as_array().unwrap().len(), 5, "{report}");

    let out = factory(&dir, &["gc"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("Removed worktree .factory/worktrees/tasks/001-add-a-file")
            && text.contains("Removed stale worktree entry .factory/worktrees/tasks/050-gone")
            && text.contains("Removed branch factory/050-gone"),
        "{text}"
    );
    assert!(!a.exists());
    assert!(factory_branches(&dir).is_empty());
    assert_eq!(worktrees(&dir), [dir.canonicalize().unwrap()]);
    assert!(
        std::fs::read_dir(dir.join(".git/worktrees"))
            .map(|mut d| d.next().is_none())
            .unwrap_or(true),
        "a stale .git/worktrees entry is left"
    );
    assert_eq!(git(&dir, &["rev-list", "--merges", "--count", "main"]), "2");
}

/// C14: a stale `.git/worktrees` entry of Factory's is pruned; one of the user's own, outside
/// `.factory/worktrees/`, is left for them, said so.
#[test]
fn gc_prunes_factorys_stale_worktree_entries_only() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("repo");
    factory_repo(&dir, &["a"], "true");
    let ours = task_dir(&dir, "007-old");
    git(
        &dir,
        &[
            "worktree",
            "add",
            "-q",
            "-b",
            "factory/007-old",
            ours.to_str().unwrap(),
        ],
    );
    let theirs = tmp.path().join("my-worktree");
    git(
        &dir,
        &[
            "worktree",
            "add",
            "-q",
            "-b",
            "mine",
            theirs.to_str().unwrap(),
        ],
    );
    std::fs::remove_dir_all(&ours).unwrap();
    std::fs::remove_dir_all(&theirs).unwrap();

    let out = factory(&dir, &["gc"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains(
            "Removed stale worktree entry .factory/worktrees/tasks/007-old: its directory is gone"
        ),
        "{text}"
    );
    assert!(
        text.contains("Kept stale worktree entry") && text.contains("not Factory's"),
        "{text}"
    );
    let listed = git(&dir, &["worktree", "list", "--porcelain"]);
    assert!(!listed.contains("007-old"), "{listed}");
    assert!(listed.contains("my-worktree"), "{listed}");
    assert!(!git(&dir, &["rev-parse", "--verify", "-q", "refs/heads/mine"]).is_empty());
}

/// C14: gc keeps a branch holding commits on no other branch and a worktree holding
/// uncommitted files, saying why and how to force it; `--force` removes them; an unfinished
/// task's worktree and branch are never touched, even forced.
#[test]
fn gc_keeps_unmerged_work_unless_forced_and_never_touches_unfinished_tasks() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("repo");
    merged_repo(&dir, &["a", "b"], true);
    keep_branches(&dir, false);
    // 001's branch gets a commit main does not have; 002's worktree holds an uncommitted file.
    let a = add_worktree(&dir, "001-add-a-file");
    std::fs::write(a.join("extra.txt"), "unmerged\n").unwrap();
    git(&a, &["add", "extra.txt"]);
    git(&a, &["commit", "-q", "-m", "unmerged work"]);
    git(&dir, &["worktree", "remove", a.to_str().unwrap()]);
    let b = add_worktree(&dir, "002-add-b-file");
    std::fs::write(b.join("notes.md"), "do not lose me\n").unwrap();
    // A second epic whose tasks are blocked: unfinished.
    std::fs::write(dir.join(".factory/FAIL_worker"), "").unwrap();
    assert!(
        factory(&dir, &["epic", "add", "More files"])
            .status
            .success()
    );
    assert_eq!(factory(&dir, &["run"]).status.code(), Some(1));
    let live: Vec<String> = tasks_of(&status_json(&dir))
        .iter()
        .filter(|t| t["state"] == "blocked")
        .map(|t| t["spec_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(live.len(), 2, "{live:?}");
    let live_worktree = task_dir(&dir, &live[0]);
    assert!(live_worktree.exists());
    std::fs::write(live_worktree.join("wip.txt"), "work in progress\n").unwrap();

    let out = factory(&dir, &["gc"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("Kept branch factory/001-add-a-file: its task 001-add-a-file was merged, but it holds 1 commit(s) on no other branch"),
        "{text}"
    );
    assert!(
        text.contains("Kept worktree .factory/worktrees/tasks/002-add-b-file: its task 002-add-b-file was merged, but it holds 1 uncommitted file(s): notes.md"),
        "{text}"
    );
    assert!(
        text.contains("Kept branch factory/002-add-b-file")
            && text.contains("checked out in .factory/worktrees/tasks/002-add-b-file"),
        "{text}"
    );
    assert!(text.contains("`factory gc --force`"), "{text}");
    assert!(
        text.contains("Left alone: 4 worktree(s) or branch(es) of unfinished tasks"),
        "{text}"
    );
    assert!(
        !text.contains(&live[0]) && !text.contains(&live[1]),
        "{text}"
    );
    assert_eq!(
        std::fs::read_to_string(b.join("notes.md")).unwrap(),
        "do not lose me\n"
    );
    assert!(factory_branches(&dir).contains(&"factory/001-add-a-file".to_owned()));

    let out = factory(&dir, &["gc", "--force"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("Removed branch factory/001-add-a-file")
            && text.contains("forced: 1 commit(s) on no other branch dropped")
            && text.contains("Removed worktree .factory/worktrees/tasks/002-add-b-file")
            && text.contains("Removed branch factory/002-add-b-file"),
        "{text}"
    );
    assert!(!b.exists());
    // The unfinished tasks' worktrees, files and branches are all still there.
    let mut expected: Vec<String> = live.iter().map(|s| format!("factory/{s}")).collect();
    expected.sort();
    assert_eq!(factory_branches(&dir), expected);
    assert_eq!(
        std::fs::read_to_string(live_worktree.join("wip.txt")).unwrap(),
        "work in progress\n"
    );
}

/// C14: `factory merge --dry-run` shows the queue in order with each task's next step (up to
/// date, waiting on the user's files, needs a rebase, would conflict) and changes nothing;
/// `factory merge` alone says merges happen in `factory run` and exits 2.
#[test]
fn merge_dry_run_shows_the_queue_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("repo");
    factory_repo(&dir, &["a", "b", "c"], "true");
    // The user's untracked files stand where each task writes: every merge waits.
    for key in ["a", "b", "c"] {
        std::fs::write(dir.join(format!("{key}.txt")), "mine\n").unwrap();
    }
    assert!(
        factory(&dir, &["epic", "add", "Three files"])
            .status
            .success()
    );
    assert_eq!(factory(&dir, &["run"]).status.code(), Some(1));
    let states: Vec<String> = tasks_of(&status_json(&dir))
        .iter()
        .map(|t| t["state"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(states, ["merging", "merging", "merging"]);

    let out = factory(&dir, &["merge"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("factory run") && stderr(&out).contains("--dry-run"));

    // b's way is clear: b would merge as it is; a waits on the user's a.txt; c's branch got a
    // commit after it passed verify, so it would be blocked rather than merged.
    std::fs::remove_file(dir.join("b.txt")).unwrap();
    let c = task_dir(&dir, "003-add-c-file");
    std::fs::write(c.join("late.txt"), "after verify\n").unwrap();
    git(&c, &["add", "late.txt"]);
    git(&c, &["commit", "-q", "-m", "a commit after verify"]);
    let out = factory(&dir, &["merge", "--dry-run"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let order: Vec<usize> = ["001-add-a-file", "002-add-b-file", "003-add-c-file"]
        .iter()
        .map(|spec| {
            text.find(spec)
                .unwrap_or_else(|| panic!("{spec} missing:\n{text}"))
        })
        .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{text}");
    assert!(
        text.contains("up to date with main: merged --no-ff as it is"),
        "{text}"
    );
    assert!(
        text.contains("would wait: your uncommitted changes to a.txt in your checkout of main"),
        "{text}"
    );
    assert!(
        text.contains("its branch moved after it passed verify"),
        "{text}"
    );

    // The user clears the way and commits on main: a and b now need a clean rebase, and c's
    // rebase would conflict with the user's c.txt.
    std::fs::remove_file(dir.join("a.txt")).unwrap();
    std::fs::write(dir.join("c.txt"), "the user's c\n").unwrap();
    git(&dir, &["add", "c.txt"]);
    git(&dir, &["commit", "-q", "-m", "user adds c"]);
    let before = repository_snapshot(&dir);
    let out = factory(&dir, &["merge", "--dry-run"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert_eq!(
        text.matches("needs a rebase onto main, which applies cleanly")
            .count(),
        2,
        "{text}"
    );
    assert!(
        text.contains("needs a rebase onto main, which conflicts in: c.txt"),
        "{text}"
    );
    let json = factory(&dir, &["merge", "--dry-run", "--json"]);
    let preview: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let kinds: Vec<&str> = preview["queue"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["next"]["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["rebase", "rebase", "rebase_conflicts"]);
    assert!(
        repository_snapshot(&dir) == before,
        "merge --dry-run changed the repository"
    );

    // A branch deleted behind Factory's back.
    git(
        &dir,
        &["update-ref", "-d", "refs/heads/factory/001-add-a-file"],
    );
    let out = factory(&dir, &["merge", "--dry-run"]);
    assert!(
        stdout(&out).contains("its branch is gone"),
        "{}",
        stdout(&out)
    );
}

/// D16: a new database continues spec numbering after the existing `factory/*` branches (and
/// spec dirs), and never reuses a branch: main gets no second `Merge factory/001`.
#[test]
fn a_new_database_continues_numbering_after_existing_branches() {
    for keep in [true, false] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("repo");
        merged_repo(&dir, &["a"], keep);
        for entry in std::fs::read_dir(dir.join(".factory")).unwrap().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with("factory.db") {
                std::fs::remove_file(entry.path()).unwrap();
            }
        }
        std::fs::remove_dir_all(dir.join(".factory/specs")).unwrap();
        if keep {
            // Only the kept branch remembers 001.
            std::fs::remove_dir_all(dir.join(".factory/logs")).unwrap();
        }
        assert!(
            factory(&dir, &["epic", "add", "Add a again"])
                .status
                .success()
        );
        let out = factory(&dir, &["run"]);
        assert!(out.status.success(), "keep={keep}: {}", stderr(&out));
        let tasks = tasks_of(&status_json(&dir));
        assert_eq!(tasks.len(), 1);
        assert_eq!(tasks[0]["spec_id"], "002-add-a-file", "keep={keep}");
        let merges = git(&dir, &["log", "--merges", "--format=%s", "main"]);
        assert_eq!(
            merges.matches("Merge factory/001-").count(),
            1,
            "keep={keep}: {merges}"
        );
        assert_eq!(merges.matches("Merge factory/002-").count(), 1, "{merges}");
    }
}

/// C14: a worktree whose `.git` file is gone cannot be checked for work, so gc keeps it (and its
/// branch, still checked out there) even with `--force`, saying why.
#[test]
fn gc_keeps_a_damaged_worktree_even_forced() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("repo");
    factory_repo(&dir, &["a"], "true");
    let broken = task_dir(&dir, "060-broken");
    git(
        &dir,
        &[
            "worktree",
            "add",
            "-q",
            "-b",
            "factory/060-broken",
            broken.to_str().unwrap(),
        ],
    );
    std::fs::write(broken.join("work.txt"), "uncommitted\n").unwrap();
    std::fs::remove_file(broken.join(".git")).unwrap();

    let out = factory(&dir, &["gc", "--force"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("Kept worktree .factory/worktrees/tasks/060-broken: it is damaged (its .git file is gone)")
            && text.contains("Kept branch factory/060-broken: no task in the database uses it, but it is checked out in .factory/worktrees/tasks/060-broken"),
        "{text}"
    );
    assert_eq!(
        std::fs::read_to_string(broken.join("work.txt")).unwrap(),
        "uncommitted\n"
    );
    assert_eq!(factory_branches(&dir), ["factory/060-broken"]);
}

/// C14: `factory gc` holds the run lease, so it refuses while a run is in progress (exit 2,
/// naming the run); `--dry-run` changes nothing and still works.
#[test]
fn gc_refuses_while_a_run_is_in_progress() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("repo");
    factory_repo(&dir, &["a"], "true");
    std::fs::write(dir.join(".factory/SLOW_a"), "").unwrap();
    assert!(factory(&dir, &["epic", "add", "Add a"]).status.success());
    let run = factory_cmd(&dir, &["run"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for(Duration::from_secs(60), "the worker to start", || {
        agent_runs(&dir).iter().any(|l| l.starts_with("worker"))
    });
    let out = factory(&dir, &["gc"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("already being run by factory run"),
        "{}",
        stderr(&out)
    );
    let out = factory(&dir, &["gc", "--dry-run"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        !stdout(&out).contains("001-add-a-file"),
        "the running task's worktree and branch are not listed: {}",
        stdout(&out)
    );
    assert_eq!(interrupt(run).status.code(), Some(130));
    assert!(task_dir(&dir, "001-add-a-file").exists());
}
