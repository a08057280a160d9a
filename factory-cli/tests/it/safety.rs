use std::time::Duration;

use crate::fixture::{
    factory, factory_cmd, factory_repo, git, status_json, stderr, tasks_of, wait_for,
};

/// The user's modified tracked file, staged change and untracked file survive a full run byte for
/// byte, and their checkout of main moves to the new main.
#[test]
fn uncommitted_work_is_untouched_by_a_full_run() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("repo");
    factory_repo(&dir, &["alpha", "beta:alpha"], "test -f alpha.txt");
    std::fs::write(dir.join("notes.txt"), "my unsaved edit\n").unwrap();
    std::fs::write(dir.join("staged.txt"), "staged but not committed\n").unwrap();
    git(&dir, &["add", "staged.txt"]);
    std::fs::write(dir.join("scratch.txt"), "untracked scratch\n").unwrap();
    let diff_before = git(&dir, &["diff"]);
    let cached_before = git(&dir, &["diff", "--cached"]);

    let out = factory(&dir, &["epic", "add", "Add alpha and beta files"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = factory(&dir, &["run"]);
    assert!(out.status.success(), "run: {}", stderr(&out));

    assert_eq!(
        std::fs::read_to_string(dir.join("notes.txt")).unwrap(),
        "my unsaved edit\n"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("staged.txt")).unwrap(),
        "staged but not committed\n"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("scratch.txt")).unwrap(),
        "untracked scratch\n"
    );
    assert_eq!(git(&dir, &["diff"]), diff_before);
    assert_eq!(git(&dir, &["diff", "--cached"]), cached_before);
    // The checkout is on the new main, which has both merges.
    assert_eq!(
        git(&dir, &["rev-parse", "HEAD"]),
        git(&dir, &["rev-parse", "main"])
    );
    assert_eq!(git(&dir, &["rev-list", "--merges", "--count", "main"]), "2");
    assert!(dir.join("alpha.txt").exists() && dir.join("beta.txt").exists());
    assert_eq!(git(&dir, &["worktree", "list"]).lines().count(), 1);
}

/// A merge that would overwrite the user's uncommitted change waits, says why, and changes
/// nothing; Ctrl-C then stops the run cleanly.
#[test]
fn merge_waits_for_a_dirty_checkout_and_status_says_why() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("repo");
    factory_repo(&dir, &["alpha"], "true");
    // The task writes alpha.txt; the user has an untracked alpha.txt of their own.
    std::fs::write(dir.join("alpha.txt"), "mine\n").unwrap();
    let main_before = git(&dir, &["rev-parse", "main"]);
    assert!(
        factory(&dir, &["epic", "add", "Add alpha"])
            .status
            .success()
    );

    let child = factory_cmd(&dir, &["run", "--wait"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for(Duration::from_secs(60), "the merge to wait", || {
        tasks_of(&status_json(&dir)).iter().any(|t| {
            t["waiting_reason"]
                .as_str()
                .is_some_and(|r| r.contains("alpha.txt"))
        })
    });
    let human = crate::fixture::stdout(&factory(&dir, &["status"]));
    assert!(
        human.contains("waiting:") && human.contains("alpha.txt"),
        "{human}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("alpha.txt")).unwrap(),
        "mine\n"
    );
    assert_eq!(git(&dir, &["rev-parse", "main"]), main_before);

    let out = crate::fixture::interrupt(child);
    assert_eq!(out.status.code(), Some(130));
    assert_eq!(
        std::fs::read_to_string(dir.join("alpha.txt")).unwrap(),
        "mine\n"
    );
}

/// Issue "trustworthy runs", item 1: a worker deleted its worktree's `.git` file. Git run there
/// used to find the user's repository above the worktree and commit the user's uncommitted work
/// onto main. Now that task is blocked as "worktree damaged", nothing of the user's is committed,
/// and the other task still merges.
#[test]
fn a_worker_that_deletes_its_git_file_blocks_only_its_task_and_commits_nothing_of_yours() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("repo");
    factory_repo(&dir, &["alpha", "beta"], "true");
    std::fs::write(dir.join(".factory/RM_GIT_alpha"), "").unwrap();
    std::fs::write(dir.join("notes.txt"), "my unsaved edit\n").unwrap();
    std::fs::write(dir.join("scratch.txt"), "untracked scratch\n").unwrap();
    let diff_before = git(&dir, &["diff"]);
    assert!(
        factory(&dir, &["epic", "add", "Add alpha and beta"])
            .status
            .success()
    );

    let out = factory(&dir, &["run"]);
    assert_eq!(out.status.code(), Some(1), "run: {}", stderr(&out));

    let tasks = tasks_of(&status_json(&dir));
    let alpha = tasks.iter().find(|t| t["key"] == "alpha").unwrap();
    let beta = tasks.iter().find(|t| t["key"] == "beta").unwrap();
    assert_eq!(alpha["state"], "blocked");
    let reason = alpha["blocked_reason"].as_str().unwrap();
    assert!(
        reason.contains("damaged") && reason.contains(".git file is gone"),
        "{reason}"
    );
    assert_eq!(beta["state"], "completed");
    // Main holds the initial commit and beta's merge, nothing else.
    assert_eq!(git(&dir, &["rev-list", "--count", "main"]), "3");
    assert_eq!(git(&dir, &["show", "main:notes.txt"]), "original notes");
    assert_eq!(git(&dir, &["diff"]), diff_before);
    assert_eq!(
        std::fs::read_to_string(dir.join("notes.txt")).unwrap(),
        "my unsaved edit\n"
    );
    assert!(
        git(&dir, &["ls-tree", "-r", "--name-only", "main"])
            .lines()
            .all(|path| path != "scratch.txt" && path != "alpha.txt")
    );
}

/// Issue "trustworthy runs", item 4: a worker that commits its own work has changed something;
/// it used to be blocked as "made no changes". Agents can commit only with the sandbox off (the
/// sandbox keeps the repository's git dir read-only to them), so this runs with it off.
#[test]
fn a_worker_that_commits_its_own_work_is_merged() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("repo");
    factory_repo(&dir, &["alpha"], "test -f alpha.txt");
    let cfg = dir.join(".factory/config.toml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, text.replacen("enabled = true", "enabled = false", 1)).unwrap();
    std::fs::write(dir.join(".factory/SELF_COMMIT_alpha"), "").unwrap();
    assert!(
        factory(&dir, &["epic", "add", "Add alpha"])
            .status
            .success()
    );
    let out = factory(&dir, &["run"]);
    assert!(out.status.success(), "run: {}", stderr(&out));
    let task = tasks_of(&status_json(&dir)).remove(0);
    assert_eq!(task["state"], "completed", "{task}");
    assert_eq!(git(&dir, &["show", "main:alpha.txt"]), "round 1");
    assert_eq!(
        git(&dir, &["log", "-1", "--format=%an", "main^2"]),
        "Agent",
        "the agent's own commit is what was merged"
    );
}
