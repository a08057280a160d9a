//! What agents cannot do to the machine: outlive `factory run` (killed by SIGKILL or SIGTERM,
//! even after `setsid`), or write the user's checkout and `.git`.

use std::process::Stdio;
use std::time::Duration;

use crate::fixture::{
    descendants, factory, factory_cmd, factory_repo, is_dead, stderr, stdout, wait_for,
};

#[test]
fn killing_factory_run_leaves_no_agent_process_behind() {
    for sig in ["KILL", "TERM"] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("repo");
        factory_repo(&dir, &["a"], "true");
        let f = dir.join(".factory");
        std::fs::write(f.join("ESCAPE"), "").unwrap();
        std::fs::write(f.join("SLOW_a"), "").unwrap();
        assert!(factory(&dir, &["epic", "add", "Add a"]).status.success());

        let mut run = factory_cmd(&dir, &["run"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // The worker writes `escaped.pid` (from its setsid child) after "start a".
        wait_for(
            Duration::from_secs(60),
            "the worker to start and escape",
            || {
                std::fs::read_to_string(f.join("times.log")).is_ok_and(|t| t.contains("start a"))
                    && std::fs::read_to_string(f.join("escaped.pid"))
                        .is_ok_and(|p| p.ends_with('\n'))
            },
        );
        let escaped: u32 = std::fs::read_to_string(f.join("escaped.pid"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let mut pids = descendants(run.id());
        // The supervisor, the agent's shell and its sleep; the escapee is in another session.
        assert!(pids.len() >= 3, "{pids:?}");
        pids.push(escaped);

        let killed = std::process::Command::new("kill")
            .args([format!("-{sig}"), run.id().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        run.wait().unwrap();
        wait_for(
            Duration::from_secs(5),
            &format!("every agent process to end after SIG{sig} to factory run"),
            || pids.iter().all(|&pid| is_dead(pid)),
        );
    }
}

#[test]
fn an_agent_cannot_write_the_checkout_or_the_git_dir() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("repo");
    factory_repo(&dir, &["a"], "test -f a.txt");
    let doctor = factory(&dir, &["doctor", "--json"]);
    assert!(doctor.status.success(), "{}", stderr(&doctor));
    let report: serde_json::Value = serde_json::from_slice(&doctor.stdout).unwrap();
    if report["landlock"]["state"] != "enforced" {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run the sandbox tests: {report}"
        );
        eprintln!("skipped: the filesystem sandbox is not enforced here: {report}");
        return;
    }
    let text = factory(&dir, &["doctor"]);
    assert!(
        stdout(&text).starts_with("sandbox: Landlock ABI "),
        "{}",
        stdout(&text)
    );

    std::fs::write(dir.join(".factory/WRITE_OUTSIDE"), "").unwrap();
    assert!(factory(&dir, &["epic", "add", "Add a"]).status.success());
    let out = factory(&dir, &["run"]);
    assert!(out.status.success(), "{}", stderr(&out));
    // The worker's own work merged; its writes outside the worktree were refused.
    assert!(dir.join("a.txt").exists());
    assert_eq!(
        std::fs::read_to_string(dir.join("README.md")).unwrap(),
        "# sample\n"
    );
    assert!(!dir.join(".git/hooks/post-checkout").exists());
}

#[test]
fn verify_output_past_the_cap_goes_to_an_overflow_log() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("repo");
    factory_repo(&dir, &["a"], "head -c 5000 /dev/zero | tr '\\0' v");
    let config_path = dir.join(".factory/config.toml");
    let config = std::fs::read_to_string(&config_path).unwrap().replace(
        "captured_output_bytes = 8388608",
        "captured_output_bytes = 1024",
    );
    std::fs::write(&config_path, config).unwrap();
    assert!(factory(&dir, &["epic", "add", "Add a"]).status.success());
    let out = factory(&dir, &["run"]);
    assert!(out.status.success(), "{}", stderr(&out));

    let logs = dir.join(".factory/logs/001-add-a-file");
    let overflow = logs.join("verify-qa-round-1.overflow.log");
    let log = std::fs::read_to_string(logs.join("verify-qa-round-1.log")).unwrap();
    assert!(
        log.contains(&format!(
            "{}\n[… 3976 bytes more of stdout, see {}]\n",
            "v".repeat(1024),
            overflow.display()
        )),
        "{log}"
    );
    assert_eq!(
        std::fs::read_to_string(&overflow).unwrap(),
        format!(
            "\n--- stdout past the first 1024 bytes (kept in memory) ---\n{}",
            "v".repeat(3976)
        )
    );
}
