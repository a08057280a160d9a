use crate::fixture::{agent_runs, factory, factory_repo, git, repo, status_json, stderr, tasks_of};

fn assert_one_line_error(out: &std::process::Output, needle: &str) {
    assert!(
        !out.status.success(),
        "expected failure, got success: {}",
        crate::fixture::stdout(out)
    );
    let err = stderr(out);
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(lines.len(), 1, "one error line expected: {err}");
    assert!(lines[0].contains(needle), "{err}");
}

#[test]
fn empty_epic_text_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("repo");
    factory_repo(&dir, &["a"], "true");
    assert_one_line_error(
        &factory(&dir, &["epic", "add", "   "]),
        "epic text is empty",
    );
    assert!(crate::fixture::stdout(&factory(&dir, &["epic", "list"])).contains("No epics"));
}

#[test]
fn outside_a_git_repository_says_git_init() {
    let tmp = tempfile::tempdir().unwrap();
    assert_one_line_error(&factory(tmp.path(), &["init"]), "git init");
    assert_one_line_error(
        &factory(tmp.path(), &["status"]),
        "not inside a git repository",
    );
}

#[test]
fn without_dot_factory_says_factory_init() {
    let tmp = tempfile::tempdir().unwrap();
    repo(tmp.path());
    for args in [&["status"][..], &["run"], &["epic", "add", "x"], &["tasks"]] {
        assert_one_line_error(&factory(tmp.path(), args), "factory init");
    }
    assert!(!tmp.path().join(".factory").exists());
}

#[test]
fn unknown_task_id_lists_how_to_find_ids() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("repo");
    factory_repo(&dir, &["a"], "true");
    for args in [
        &["spec", "show", "042"][..],
        &["log", "nope"],
        &["task", "retry", "9"],
    ] {
        assert_one_line_error(&factory(&dir, args), "factory tasks");
    }
}

#[test]
fn missing_verify_command_stops_before_any_agent_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("repo");
    factory_repo(&dir, &["a"], "no-such-test-runner --all");
    let main_before = git(&dir, &["rev-parse", "main"]);
    assert!(factory(&dir, &["epic", "add", "Add a"]).status.success());
    assert_one_line_error(&factory(&dir, &["run"]), "verify command not found");
    assert!(
        agent_runs(&dir).is_empty(),
        "no agent may run: {:?}",
        agent_runs(&dir)
    );
    assert_eq!(git(&dir, &["rev-parse", "main"]), main_before);
}

#[test]
fn failing_worker_blocks_the_task_with_the_reason_stored() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("repo");
    factory_repo(&dir, &["a"], "true");
    std::fs::write(dir.join(".factory/FAIL_worker"), "").unwrap();
    let main_before = git(&dir, &["rev-parse", "main"]);
    assert!(factory(&dir, &["epic", "add", "Add a"]).status.success());
    let out = factory(&dir, &["run"]);
    assert_one_line_error(&out, "not everything merged");
    assert!(
        stderr(&out).contains("crashed on purpose"),
        "{}",
        stderr(&out)
    );
    let status = status_json(&dir);
    let task = &tasks_of(&status)[0];
    assert_eq!(task["state"], "blocked");
    assert!(
        task["blocked_reason"]
            .as_str()
            .unwrap()
            .contains("exited with code 3"),
        "{task}"
    );
    assert_eq!(status["epics"][0]["epic"]["state"], "blocked");
    assert_eq!(git(&dir, &["rev-parse", "main"]), main_before);
    // The human is told, and a retry after the fix merges it.
    assert!(crate::fixture::stdout(&factory(&dir, &["mail"])).contains("is blocked"));
    std::fs::remove_file(dir.join(".factory/FAIL_worker")).unwrap();
    assert!(factory(&dir, &["task", "retry", "001"]).status.success());
    let out = factory(&dir, &["run"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(tasks_of(&status_json(&dir))[0]["state"], "completed");
}

#[test]
fn reviewer_garbage_blocks_the_task() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("repo");
    factory_repo(&dir, &["a"], "true");
    std::fs::write(dir.join(".factory/GARBAGE_reviewer"), "").unwrap();
    let main_before = git(&dir, &["rev-parse", "main"]);
    assert!(factory(&dir, &["epic", "add", "Add a"]).status.success());
    assert!(!factory(&dir, &["run"]).status.success());
    let task = &tasks_of(&status_json(&dir))[0];
    assert_eq!(task["state"], "blocked");
    let reason = task["blocked_reason"].as_str().unwrap();
    assert!(
        reason.contains("reviewer output is not valid") && reason.contains("Agent formats"),
        "{reason}"
    );
    assert_eq!(git(&dir, &["rev-parse", "main"]), main_before);
}

#[test]
fn planner_garbage_fails_the_run_and_keeps_the_epic_for_a_retry() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("repo");
    factory_repo(&dir, &["a"], "true");
    std::fs::write(dir.join(".factory/GARBAGE_planner"), "").unwrap();
    let main_before = git(&dir, &["rev-parse", "main"]);
    assert!(factory(&dir, &["epic", "add", "Add a"]).status.success());
    let out = factory(&dir, &["run"]);
    assert_one_line_error(&out, "planning failed for 1 epic");
    assert!(
        stderr(&out).contains("planner output is not valid"),
        "{}",
        stderr(&out)
    );
    let status = status_json(&dir);
    assert_eq!(status["epics"][0]["epic"]["state"], "planning");
    assert!(
        status["epics"][0]["epic"]["blocked_reason"]
            .as_str()
            .unwrap()
            .contains("not valid")
    );
    assert_eq!(git(&dir, &["rev-parse", "main"]), main_before);
    std::fs::remove_file(dir.join(".factory/GARBAGE_planner")).unwrap();
    assert!(factory(&dir, &["run"]).status.success());
}

#[test]
fn bad_config_names_the_file_and_the_key() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("repo");
    factory_repo(&dir, &["a"], "true");
    let cfg = dir.join(".factory/config.toml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, text.replace("max_parallel = 2", "max_paralel = 2")).unwrap();
    assert_one_line_error(&factory(&dir, &["status"]), "max_paralel");
}

#[test]
fn a_missing_main_branch_stops_before_any_agent_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("repo");
    factory_repo(&dir, &["a"], "true");
    let cfg = dir.join(".factory/config.toml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &cfg,
        text.replace("main_branch = \"main\"", "main_branch = \"trunk\""),
    )
    .unwrap();
    assert!(factory(&dir, &["epic", "add", "Add a"]).status.success());
    assert_one_line_error(&factory(&dir, &["run"]), "branch `trunk` does not exist");
    assert!(agent_runs(&dir).is_empty());
}

#[test]
fn run_with_nothing_to_do_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("repo");
    factory_repo(&dir, &["a"], "true");
    let out = factory(&dir, &["run"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        crate::fixture::stdout(&out).contains("Nothing to do"),
        "{}",
        crate::fixture::stdout(&out)
    );
}
