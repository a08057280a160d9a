//! Limits on what a run takes in: a change that adds or grows a file past
//! `[merge] max_file_bytes` blocks its task, naming the file, and nothing of it is merged.

use std::path::Path;

use crate::fixture::{
    agent_runs, factory, factory_repo, git, status_json, stderr, stdout, tasks_of,
};

/// Extra steering for the fixture's shell agent: `BIG_<key>` (holding a byte count) makes that
/// task's worker write `big-<key>.bin` of that size; `REVIEWER_BIG_<key>` makes its reviewer
/// write and commit `late-<key>.bin` of that size.
const BIG_FILES: &str = r#"
if [ "$FACTORY_ROLE" = worker ] && [ -f "$F/BIG_$FACTORY_TASK_KEY" ]; then
  head -c "$(cat "$F/BIG_$FACTORY_TASK_KEY")" /dev/zero > "big-$FACTORY_TASK_KEY.bin"
fi
if [ "$FACTORY_ROLE" = reviewer ] && [ -f "$F/REVIEWER_BIG_$FACTORY_TASK_KEY" ]; then
  head -c "$(cat "$F/REVIEWER_BIG_$FACTORY_TASK_KEY")" /dev/zero > "late-$FACTORY_TASK_KEY.bin"
  git add -A && git -c user.name=Agent -c user.email=agent@example.invalid commit -q -m "the reviewer's file"
fi
"#;

/// A repository with the shell agent (plus [`BIG_FILES`]) and `max_file_bytes = 4096`.
fn limited_repo(dir: &Path, tasks: &[&str]) {
    let agent = factory_repo(dir, tasks, "true");
    let mut script = std::fs::read_to_string(&agent).unwrap();
    script.push_str(BIG_FILES);
    std::fs::write(&agent, script).unwrap();
    edit_config(dir, "max_file_bytes = 10485760", "max_file_bytes = 4096");
}

fn edit_config(dir: &Path, from: &str, to: &str) {
    let path = dir.join(".factory/config.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(from), "{text}");
    std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
}

fn task_with_key<'a>(tasks: &'a [serde_json::Value], key: &str) -> &'a serde_json::Value {
    tasks
        .iter()
        .find(|t| t["key"] == key)
        .unwrap_or_else(|| panic!("no task {key} in {tasks:?}"))
}

#[test]
fn a_file_over_max_file_bytes_blocks_its_task_and_the_others_still_merge() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("repo");
    limited_repo(&dir, &["a", "b"]);
    std::fs::write(dir.join(".factory/BIG_a"), "10000").unwrap();
    // A file under the limit is fine.
    std::fs::write(dir.join(".factory/BIG_b"), "4000").unwrap();
    assert!(
        factory(&dir, &["epic", "add", "Add a and b"])
            .status
            .success()
    );

    let out = factory(&dir, &["run"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let expected = "`big-a.bin` is 9.8 KiB, over [merge] max_file_bytes (4.0 KiB): remove it from the change or raise the limit";
    assert!(stdout(&out).contains(expected), "{}", stdout(&out));

    let tasks = tasks_of(&status_json(&dir));
    let a = task_with_key(&tasks, "a");
    assert_eq!(a["state"], "blocked");
    assert_eq!(a["blocked_reason"], expected);
    assert_eq!(task_with_key(&tasks, "b")["state"], "completed");
    // Caught before review: the reviewer never looked at a.
    let spec_a = a["spec_id"].as_str().unwrap();
    assert!(
        !agent_runs(&dir)
            .iter()
            .any(|r| r.starts_with(&format!("reviewer {spec_a}"))),
        "{:?}",
        agent_runs(&dir)
    );
    // Nothing of a reached main; b did, with its small file.
    let on_main = git(&dir, &["ls-tree", "-r", "--name-only", "main"]);
    let files: Vec<&str> = on_main.lines().collect();
    assert!(
        files.contains(&"b.txt") && files.contains(&"big-b.bin"),
        "{files:?}"
    );
    assert!(
        !files.contains(&"a.txt") && !files.contains(&"big-a.bin"),
        "{files:?}"
    );
}

/// The merge queue checks the exact commit it merges: a big file committed after the worker's
/// round (here by the reviewer, which can commit only with the sandbox off) is caught there.
#[test]
fn a_big_file_committed_after_the_worker_round_is_not_merged() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("repo");
    limited_repo(&dir, &["a"]);
    edit_config(&dir, "enabled = true", "enabled = false");
    std::fs::write(dir.join(".factory/REVIEWER_BIG_a"), "5000").unwrap();
    let main_before = git(&dir, &["rev-parse", "main"]);
    assert!(factory(&dir, &["epic", "add", "Add a"]).status.success());

    let out = factory(&dir, &["run"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let task = &tasks_of(&status_json(&dir))[0];
    assert_eq!(task["state"], "blocked");
    assert_eq!(
        task["blocked_reason"],
        "`late-a.bin` is 4.9 KiB, over [merge] max_file_bytes (4.0 KiB): remove it from the change or raise the limit"
    );
    assert_eq!(git(&dir, &["rev-parse", "main"]), main_before);
}
