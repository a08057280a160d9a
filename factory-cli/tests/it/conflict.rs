//! Issue item 13: a task whose branch conflicts with main after another task merged goes back to
//! its worker for a conflict round (the files, both sides, the task); resolved, it is reviewed,
//! verified and merged; unresolved after `[merge] conflict_attempts` rounds, it is blocked with
//! the files named and the human gets mail.

use std::path::{Path, PathBuf};

use crate::fixture::{factory, factory_repo, git, status_json, stderr, stdout, tasks_of};

/// Two independent tasks that both rewrite the first line of `shared.txt`, so whichever merges
/// second conflicts. In a conflict round the worker writes the combined line when
/// `.factory/RESOLVE` exists, and otherwise leaves the markers where they are. Every prompt is
/// saved as `.factory/prompt-<spec>-<n>.txt` (n counts the task's worker runs).
const AGENT: &str = r#"#!/bin/sh
F="$(git rev-parse --path-format=absolute --git-common-dir)/../.factory"
PROMPT="$(cat)"
echo "$FACTORY_ROLE $FACTORY_SPEC_ID $FACTORY_ROUND" >> "$F/agent-runs.log"
case "$FACTORY_ROLE" in
  planner)
    echo '{"reasoning":"two edits of one line","tasks":[
      {"key":"a","title":"Say a","description":"shared.txt says a","acceptance":["ok"],"depends_on":[]},
      {"key":"b","title":"Say b","description":"shared.txt says b","acceptance":["ok"],"depends_on":[]}]}' ;;
  worker)
    n=$(grep -c "^worker $FACTORY_SPEC_ID " "$F/agent-runs.log")
    printf '%s' "$PROMPT" > "$F/prompt-$FACTORY_SPEC_ID-$n.txt"
    case "$PROMPT" in
      *"conflicts with the main branch"*)
        if [ -f "$F/RESOLVE" ]; then printf 'said by a and b\nshared tail\n' > shared.txt; fi ;;
      *) printf 'said by %s\nshared tail\n' "$FACTORY_TASK_KEY" > shared.txt ;;
    esac ;;
  reviewer) echo '{"verdict":"approve","summary":"fine"}' ;;
esac
"#;

/// A repository with `shared.txt` on main and the agent above.
fn conflict_repo(dir: &Path) {
    let agent = factory_repo(dir, &[], "! grep -q '<<<<<<<' shared.txt");
    std::fs::write(&agent, AGENT).unwrap();
    std::fs::write(dir.join("shared.txt"), "said by nobody\nshared tail\n").unwrap();
    git(dir, &["add", "shared.txt"]);
    git(dir, &["commit", "-q", "-m", "shared file"]);
}

fn set_conflict_attempts(dir: &Path, n: u32) {
    let path = dir.join(".factory/config.toml");
    let config = std::fs::read_to_string(&path).unwrap();
    let config = config.replace("conflict_attempts = 2", &format!("conflict_attempts = {n}"));
    std::fs::write(&path, config).unwrap();
}

fn prompts(dir: &Path) -> Vec<(String, String)> {
    let mut found: Vec<(String, String)> = std::fs::read_dir(dir.join(".factory"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("prompt-"))
        .map(|n| {
            let text = std::fs::read_to_string(dir.join(".factory").join(&n)).unwrap();
            (n, text)
        })
        .collect();
    found.sort();
    found
}

fn conflict_prompts(dir: &Path) -> Vec<(String, String)> {
    prompts(dir)
        .into_iter()
        .filter(|(_, text)| text.contains("conflicts with the main branch"))
        .collect()
}

fn first_parent_merges(dir: &Path) -> Vec<String> {
    git(
        dir,
        &["log", "--first-parent", "--merges", "--format=%s", "main"],
    )
    .lines()
    .map(str::to_owned)
    .collect()
}

fn run(dir: &Path) -> std::process::Output {
    let out = factory(dir, &["run"]);
    eprintln!("run: {}\n{}", stdout(&out), stderr(&out));
    out
}

#[test]
fn a_conflict_goes_back_to_the_worker_and_the_resolution_merges() {
    let tmp = tempfile::tempdir().unwrap();
    let dir: PathBuf = tmp.path().join("repo");
    conflict_repo(&dir);
    std::fs::write(dir.join(".factory/RESOLVE"), "").unwrap();
    assert!(
        factory(&dir, &["epic", "add", "Say a and b"])
            .status
            .success()
    );

    let out = run(&dir);
    assert_eq!(out.status.code(), Some(0));
    let tasks = tasks_of(&status_json(&dir));
    assert!(
        tasks.iter().all(|t| t["state"] == "completed"),
        "{tasks:#?}"
    );

    // Exactly one conflict round, for the task that merged second, with the files, both sides
    // and the task in its prompt.
    let conflicts = conflict_prompts(&dir);
    assert_eq!(conflicts.len(), 1, "{conflicts:#?}");
    let (_, prompt) = &conflicts[0];
    assert!(prompt.contains("## shared.txt"), "{prompt}");
    assert!(
        prompt.contains("+said by a") && prompt.contains("+said by b"),
        "{prompt}"
    );
    assert!(prompt.contains("# Task 00"), "{prompt}");

    // Both merged exactly once; main holds the resolution, which is what passed verify.
    let merges = first_parent_merges(&dir);
    assert_eq!(merges.len(), 2, "{merges:?}");
    assert_eq!(
        std::fs::read_to_string(dir.join("shared.txt")).unwrap(),
        "said by a and b\nshared tail\n"
    );
    assert!(git(&dir, &["status", "--porcelain"]).trim().is_empty());
    // The resolved branch was a plain commit on main: no merge from main inside it.
    let all_merges = git(&dir, &["rev-list", "--merges", "main"]);
    assert_eq!(all_merges.lines().count(), 2, "{all_merges}");
}

#[test]
fn an_unresolved_conflict_is_blocked_after_the_configured_rounds_with_mail() {
    let tmp = tempfile::tempdir().unwrap();
    let dir: PathBuf = tmp.path().join("repo");
    conflict_repo(&dir);
    assert!(
        factory(&dir, &["epic", "add", "Say a and b"])
            .status
            .success()
    );

    let out = run(&dir);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a blocked task ends the run with 1"
    );
    let tasks = tasks_of(&status_json(&dir));
    let merged: Vec<_> = tasks.iter().filter(|t| t["state"] == "completed").collect();
    let blocked: Vec<_> = tasks.iter().filter(|t| t["state"] == "blocked").collect();
    assert_eq!((merged.len(), blocked.len()), (1, 1), "{tasks:#?}");
    let reason = blocked[0]["blocked_reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("shared.txt") && reason.contains("2 conflict round"),
        "{reason}"
    );
    // Two conflict rounds (the default), then no more worker runs.
    assert_eq!(conflict_prompts(&dir).len(), 2, "{:#?}", prompts(&dir));
    assert_eq!(first_parent_merges(&dir).len(), 1);
    assert!(
        !std::fs::read_to_string(dir.join("shared.txt"))
            .unwrap()
            .contains("<<<<<<<")
    );

    let mail = factory(&dir, &["mail", "--all"]);
    let mail = stdout(&mail);
    assert!(
        mail.contains("is blocked") && mail.contains("shared.txt"),
        "{mail}"
    );

    // Retrying gives the conflict rounds afresh; resolved now, it merges.
    std::fs::write(dir.join(".factory/RESOLVE"), "").unwrap();
    let spec = blocked[0]["spec_id"].as_str().unwrap().to_owned();
    let retry = factory(&dir, &["task", "retry", &spec]);
    assert!(retry.status.success(), "{}", stderr(&retry));
    assert_eq!(run(&dir).status.code(), Some(0));
    assert!(
        tasks_of(&status_json(&dir))
            .iter()
            .all(|t| t["state"] == "completed")
    );
    assert_eq!(first_parent_merges(&dir).len(), 2);
    assert_eq!(
        std::fs::read_to_string(dir.join("shared.txt")).unwrap(),
        "said by a and b\nshared tail\n"
    );
}

#[test]
fn with_conflict_attempts_zero_a_conflict_blocks_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let dir: PathBuf = tmp.path().join("repo");
    conflict_repo(&dir);
    set_conflict_attempts(&dir, 0);
    assert!(
        factory(&dir, &["epic", "add", "Say a and b"])
            .status
            .success()
    );

    assert_eq!(run(&dir).status.code(), Some(1));
    let tasks = tasks_of(&status_json(&dir));
    let blocked: Vec<_> = tasks.iter().filter(|t| t["state"] == "blocked").collect();
    assert_eq!(blocked.len(), 1, "{tasks:#?}");
    let reason = blocked[0]["blocked_reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("shared.txt") && reason.contains("conflict_attempts = 0"),
        "{reason}"
    );
    assert!(conflict_prompts(&dir).is_empty());
}
