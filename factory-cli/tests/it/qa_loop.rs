use crate::fixture::{
    agent_runs, factory, factory_repo, git, status_json, stderr, stdout, tasks_of,
};

fn touch(dir: &std::path::Path, name: &str) {
    std::fs::write(dir.join(".factory").join(name), "").unwrap();
}

fn read(dir: &std::path::Path, rel: &str) -> String {
    std::fs::read_to_string(dir.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

#[test]
fn failing_verify_sends_the_worker_back_with_the_output() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("repo");
    // Passes only once the worker has done a second round.
    factory_repo(
        &dir,
        &["a"],
        "grep -q 'round 2' a.txt || { echo 'expected round 2 in a.txt'; exit 1; }",
    );
    assert!(factory(&dir, &["epic", "add", "Add a"]).status.success());
    let out = factory(&dir, &["run"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("verify round 1: FAILED"),
        "{}",
        stdout(&out)
    );
    let task = &tasks_of(&status_json(&dir))[0];
    assert_eq!(task["state"], "completed");
    assert_eq!(task["qa_rounds"], 2);
    let spec = task["spec_id"].as_str().unwrap();
    let qa = read(&dir, &format!(".factory/specs/{spec}/qa_report.md"));
    assert!(
        qa.contains("Round 1: FAILED (verify)") && qa.contains("Round 2: PASSED"),
        "{qa}"
    );
    let prompt2 = read(&dir, &format!(".factory/prompt-{spec}-2.txt"));
    assert!(
        prompt2.contains("QA asked for changes") && prompt2.contains("expected round 2 in a.txt"),
        "{prompt2}"
    );
    let prompt1 = read(&dir, &format!(".factory/prompt-{spec}-1.txt"));
    assert!(!prompt1.contains("QA asked for changes"), "{prompt1}");
    assert!(
        !dir.join(format!(".factory/specs/{spec}/QA_FIX_REQUEST.md"))
            .exists()
    );
}

#[test]
fn qa_that_never_passes_blocks_after_max_rounds() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("repo");
    factory_repo(&dir, &["a"], "true");
    touch(&dir, "REVIEW_CHANGES_a");
    let main_before = git(&dir, &["rev-parse", "main"]);
    assert!(factory(&dir, &["epic", "add", "Add a"]).status.success());
    assert!(!factory(&dir, &["run"]).status.success());
    let task = &tasks_of(&status_json(&dir))[0];
    assert_eq!(task["state"], "blocked");
    assert_eq!(task["attempts"], 3);
    assert!(
        task["blocked_reason"]
            .as_str()
            .unwrap()
            .contains("did not pass in 3 round(s)"),
        "{task}"
    );
    let workers = agent_runs(&dir)
        .iter()
        .filter(|l| l.starts_with("worker"))
        .count();
    assert_eq!(workers, 3);
    // The fix request stays for whoever picks the task up.
    let spec = task["spec_id"].as_str().unwrap();
    assert!(
        read(&dir, &format!(".factory/specs/{spec}/QA_FIX_REQUEST.md")).contains("say it louder")
    );
    assert_eq!(git(&dir, &["rev-parse", "main"]), main_before);
}

#[test]
fn a_fix_round_that_changes_nothing_blocks_early() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("repo");
    factory_repo(&dir, &["a"], "true");
    touch(&dir, "REVIEW_CHANGES_a");
    touch(&dir, "SAME_a");
    assert!(factory(&dir, &["epic", "add", "Add a"]).status.success());
    assert!(!factory(&dir, &["run"]).status.success());
    let task = &tasks_of(&status_json(&dir))[0];
    assert_eq!(task["state"], "blocked");
    assert_eq!(task["attempts"], 2, "{task}");
    assert!(
        task["blocked_reason"]
            .as_str()
            .unwrap()
            .contains("round 2 changed nothing"),
        "{task}"
    );
    let workers = agent_runs(&dir)
        .iter()
        .filter(|l| l.starts_with("worker"))
        .count();
    assert_eq!(workers, 2);
}

#[test]
fn independent_tasks_run_in_parallel_and_dependents_wait() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("repo");
    factory_repo(&dir, &["a", "b", "c:a,b"], "true");
    touch(&dir, "SLEEPY");
    assert!(
        factory(&dir, &["epic", "add", "Add a, b, then c"])
            .status
            .success()
    );
    let out = factory(&dir, &["run"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let times = read(&dir, ".factory/times.log");
    let at = |what: &str| -> u128 {
        times
            .lines()
            .find(|l| l.starts_with(what))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{what} missing in {times}"))
    };
    // a and b overlap; c starts after both ended (and were merged).
    assert!(
        at("start a") < at("end b") && at("start b") < at("end a"),
        "{times}"
    );
    assert!(
        at("start c") > at("end a") && at("start c") > at("end b"),
        "{times}"
    );
    assert_eq!(git(&dir, &["rev-list", "--merges", "--count", "main"]), "3");
}

#[test]
fn mail_to_an_agent_reaches_its_next_prompt() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("repo");
    factory_repo(&dir, &["a"], "true");
    touch(&dir, "FAIL_worker");
    assert!(factory(&dir, &["epic", "add", "Add a"]).status.success());
    assert!(!factory(&dir, &["run"]).status.success());
    let spec = tasks_of(&status_json(&dir))[0]["spec_id"]
        .as_str()
        .unwrap()
        .to_owned();

    let bad = factory(&dir, &["mail", "send", "--to", "worker/999-nope", "hello"]);
    assert!(
        !bad.status.success() && stderr(&bad).contains("factory tasks"),
        "{}",
        stderr(&bad)
    );
    let to = format!("worker/{spec}");
    let sent = factory(
        &dir,
        &[
            "mail",
            "send",
            "--to",
            &to,
            "--subject",
            "style",
            "please use capitals",
        ],
    );
    assert!(sent.status.success(), "{}", stderr(&sent));

    std::fs::remove_file(dir.join(".factory/FAIL_worker")).unwrap();
    assert!(factory(&dir, &["task", "retry", &spec]).status.success());
    assert!(factory(&dir, &["run"]).status.success());
    let prompt = read(&dir, &format!(".factory/prompt-{spec}-1.txt"));
    assert!(
        prompt.contains("please use capitals") && prompt.contains("From human: style"),
        "{prompt}"
    );
    let all = stdout(&factory(&dir, &["mail", "--all"]));
    assert!(all.contains(&format!("human → {to}: style")), "{all}");
}

#[test]
fn many_independent_tasks_each_merge_exactly_once() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("repo");
    let keys: Vec<String> = (1..=10).map(|i| format!("k{i}")).collect();
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    factory_repo(&dir, &keys, "true");
    assert!(
        factory(&dir, &["epic", "add", "Ten files"])
            .status
            .success()
    );
    let out = factory(&dir, &["run"]);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert_eq!(
        git(&dir, &["rev-list", "--merges", "--count", "main"]),
        "10"
    );
    let tasks = tasks_of(&status_json(&dir));
    assert!(
        tasks
            .iter()
            .all(|t| t["state"] == "completed" && t["attempts"] == 1),
        "{tasks:?}"
    );
    assert_eq!(git(&dir, &["worktree", "list"]).lines().count(), 1);
}
