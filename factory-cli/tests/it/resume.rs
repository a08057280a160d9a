use std::time::Duration;

use crate::fixture::{
    agent_runs, factory, factory_cmd, factory_repo, git, interrupt, status_json, stderr, tasks_of,
    wait_for,
};

/// Ctrl-C during a run stops it cleanly; the next run finishes without redoing merged work.
#[test]
fn ctrl_c_then_run_resumes_without_redoing_merged_work() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("repo");
    factory_repo(&dir, &["first", "second:first"], "true");
    std::fs::write(dir.join(".factory/SLOW_second"), "").unwrap();
    assert!(
        factory(&dir, &["epic", "add", "Add two files"])
            .status
            .success()
    );

    let child = factory_cmd(&dir, &["run"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for(
        Duration::from_secs(60),
        "the second worker to start",
        || agent_runs(&dir).iter().any(|l| l.starts_with("worker 002")),
    );
    let first = tasks_of(&status_json(&dir))[0].clone();
    assert_eq!(first["state"], "completed", "{first}");

    let started = std::time::Instant::now();
    let out = interrupt(child);
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the slow worker must be stopped, not awaited"
    );
    assert!(stderr(&out).contains("factory run"), "{}", stderr(&out));
    assert_eq!(git(&dir, &["rev-list", "--merges", "--count", "main"]), "1");

    std::fs::remove_file(dir.join(".factory/SLOW_second")).unwrap();
    let out = factory(&dir, &["run"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(git(&dir, &["rev-list", "--merges", "--count", "main"]), "2");
    let first_worker_runs = agent_runs(&dir)
        .iter()
        .filter(|l| l.starts_with("worker 001"))
        .count();
    assert_eq!(
        first_worker_runs,
        1,
        "the merged task's worker ran again: {:?}",
        agent_runs(&dir)
    );
    let tasks = tasks_of(&status_json(&dir));
    assert!(tasks.iter().all(|t| t["state"] == "completed"), "{tasks:?}");
    assert_eq!(tasks[0]["merge_commit"], first["merge_commit"]);
}
