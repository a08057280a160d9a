use factory_core::spec::artifact;

use crate::fixture::{factory, git, stderr, stdout};

#[test]
fn demo_merges_every_task_no_ff_and_leaves_a_clean_repository() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo-out");
    let out = factory(tmp.path(), &["demo", "--dir", dir.to_str().unwrap()]);
    let (so, se) = (stdout(&out), stderr(&out));
    assert!(
        out.status.success(),
        "demo failed\nstdout:\n{so}\nstderr:\n{se}"
    );

    // One --no-ff merge per task, each with two parents, first parent on main.
    let merges = git(&dir, &["rev-list", "--merges", "main"]);
    let merges: Vec<&str> = merges.lines().collect();
    assert_eq!(merges.len(), 3, "{so}");
    for m in &merges {
        let parents = git(&dir, &["rev-list", "--parents", "-n", "1", m]);
        assert_eq!(
            parents.split_whitespace().count(),
            3,
            "{m} is not a two-parent merge"
        );
    }
    let first_parent_chain = git(&dir, &["rev-list", "--first-parent", "main"]);
    assert_eq!(
        first_parent_chain.lines().count(),
        4,
        "initial commit + 3 merges on main's first-parent line"
    );

    // The sample's own tests pass on main, and every task's file is there.
    let tests = std::process::Command::new("sh")
        .args(["-c", "python3 -m unittest discover -s tests -t ."])
        .current_dir(&dir)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .unwrap();
    assert!(
        tests.status.success(),
        "{}",
        String::from_utf8_lossy(&tests.stderr)
    );
    let ran = String::from_utf8_lossy(&tests.stderr);
    assert!(ran.contains("Ran 12 tests"), "{ran}");
    for f in [
        "textkit/slug.py",
        "textkit/title.py",
        "textkit/__main__.py",
        "tests/test_cli.py",
    ] {
        assert!(dir.join(f).exists(), "{f} missing on main");
    }

    // Every spec dir holds the artifacts; the fix request is gone after QA passed.
    let specs: Vec<_> = std::fs::read_dir(dir.join(".factory/specs"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(specs.len(), 3);
    for spec in &specs {
        let name = spec.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            name.parse::<factory_core::spec::SpecId>().is_ok(),
            "{name} is not NNN-slug"
        );
        for a in artifact::ALWAYS {
            assert!(spec.join(a).exists(), "{name} lacks {a}");
        }
        assert!(
            !spec.join(artifact::QA_FIX_REQUEST_MD).exists(),
            "{name} still has QA_FIX_REQUEST.md"
        );
    }

    // The title-case task went through a fix round and its worker saw the fix request then.
    let title = specs
        .iter()
        .find(|p| p.to_string_lossy().contains("title-case"))
        .unwrap();
    let qa = std::fs::read_to_string(title.join(artifact::QA_REPORT_MD)).unwrap();
    assert!(
        qa.contains("Round 1: CHANGES REQUESTED") && qa.contains("Round 2: PASSED"),
        "{qa}"
    );
    let spec_name = title.file_name().unwrap().to_string_lossy().into_owned();
    let round2 = std::fs::read_to_string(
        dir.join(".factory/logs")
            .join(&spec_name)
            .join("worker-round-2.jsonl"),
    )
    .unwrap();
    assert!(round2.contains("saw QA_FIX_REQUEST.md"), "{round2}");
    let round1 = std::fs::read_to_string(
        dir.join(".factory/logs")
            .join(&spec_name)
            .join("worker-round-1.jsonl"),
    )
    .unwrap();
    assert!(!round1.contains("saw QA_FIX_REQUEST.md"), "{round1}");

    // Only the main checkout remains; .factory is invisible to git; the user's checkout is clean.
    let worktrees = git(&dir, &["worktree", "list"]);
    assert_eq!(worktrees.lines().count(), 1, "{worktrees}");
    assert_eq!(git(&dir, &["status", "--porcelain"]), "");

    // The summary tells the story.
    assert!(so.contains("3 --no-ff merge commit(s) on main"), "{so}");
    assert!(so.contains("QA rounds   4"), "{so}");

    // Read-only commands work on the result.
    let status = factory(&dir, &["status"]);
    assert!(
        stdout(&status).contains("3/3 merged"),
        "{}",
        stdout(&status)
    );
    let status_json: serde_json::Value =
        serde_json::from_slice(&factory(&dir, &["status", "--json"]).stdout).unwrap();
    let agents = status_json["agents"].as_array().unwrap();
    assert_eq!(
        agents.len(),
        7,
        "planner + worker and reviewer per task: {agents:?}"
    );
    assert!(agents.iter().all(|a| a["state"] == "idle"), "{agents:?}");
    let decisions = stdout(&factory(&dir, &["decisions"]));
    assert!(
        decisions.contains("request changes") && decisions.contains("small words"),
        "{decisions}"
    );
    let mail = stdout(&factory(&dir, &["mail"]));
    assert!(mail.contains("keeps small words lowercase"), "{mail}");
    let log = stdout(&factory(&dir, &["log", "002"]));
    assert!(
        log.contains("worker-round-2.jsonl") && log.contains("verify-qa-round-1.log"),
        "{log}"
    );
    let spec = stdout(&factory(
        &dir,
        &["spec", "show", "002", "--file", "qa_report.md"],
    ));
    assert!(spec.contains("Round 2: PASSED"), "{spec}");
}
