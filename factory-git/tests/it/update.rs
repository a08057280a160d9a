//! `update_branch`: rebasing a task branch onto main.

use factory_core::ports::{CommitId, UpdateOutcome, Vcs};

use crate::fixture::{Fixture, git_in, git_output};

#[tokio::test]
async fn a_branch_that_contains_main_is_up_to_date() {
    let fx = Fixture::new();
    let repo = fx.repo();
    let dir = fx.branch_with("030-fresh", &[("x.txt", "x\n")]);
    let tip = fx.rev("factory/030-fresh");
    assert_eq!(
        repo.update_branch(&dir, "factory/030-fresh", "main")
            .await
            .unwrap()
            .outcome,
        UpdateOutcome::UpToDate(CommitId(tip.clone()))
    );
    assert_eq!(fx.rev("factory/030-fresh"), tip);
}

#[tokio::test]
async fn a_branch_behind_main_is_rebased_onto_it() {
    let fx = Fixture::new();
    let repo = fx.repo();
    let dir = fx.branch_with("031-behind", &[("x.txt", "x\n")]);
    let main = fx.advance_main(&[("m.txt", "main moved\n")]);

    let outcome = repo
        .update_branch(&dir, "factory/031-behind", "main")
        .await
        .unwrap()
        .outcome;
    let UpdateOutcome::Rebased(tip) = outcome else {
        panic!("expected Rebased, got {outcome:?}");
    };
    assert_eq!(fx.rev("factory/031-behind"), tip.0);
    assert_eq!(fx.rev("factory/031-behind^"), main);
    assert_eq!(std::fs::read(dir.join("x.txt")).unwrap(), b"x\n");
    assert_eq!(std::fs::read(dir.join("m.txt")).unwrap(), b"main moved\n");
    assert_eq!(
        git_in(&dir, &["log", "-1", "--format=%an/%cn"]).trim(),
        "Local User/Factory Bot",
        "a rebase keeps the author and records Factory as committer"
    );
    assert!(repo.is_merged("main", "factory/031-behind").await.unwrap());
    assert_eq!(
        repo.update_branch(&dir, "factory/031-behind", "main")
            .await
            .unwrap()
            .outcome,
        UpdateOutcome::UpToDate(tip)
    );
}

#[tokio::test]
async fn a_conflicting_rebase_is_aborted_and_the_branch_left_as_it_was() {
    let fx = Fixture::new();
    let repo = fx.repo();
    let dir = fx.branch_with("032-clash", &[("a.txt", "alpha from the branch\n")]);
    let tip = fx.rev("factory/032-clash");
    fx.advance_main(&[("a.txt", "alpha from main\n")]);

    let outcome = repo
        .update_branch(&dir, "factory/032-clash", "main")
        .await
        .unwrap()
        .outcome;
    assert_eq!(
        outcome,
        UpdateOutcome::Conflict {
            files: vec!["a.txt".into()]
        }
    );
    assert_eq!(fx.rev("factory/032-clash"), tip);
    assert_eq!(git_in(&dir, &["rev-parse", "HEAD"]).trim(), tip);
    assert_eq!(
        git_in(&dir, &["symbolic-ref", "HEAD"]).trim(),
        "refs/heads/factory/032-clash"
    );
    assert!(git_in(&dir, &["status", "--porcelain"]).is_empty());
    assert_eq!(
        std::fs::read(dir.join("a.txt")).unwrap(),
        b"alpha from the branch\n"
    );
    let git_dir = git_in(&dir, &["rev-parse", "--git-dir"]);
    let git_dir = std::path::PathBuf::from(git_dir.trim());
    assert!(!git_dir.join("rebase-merge").exists() && !git_dir.join("rebase-apply").exists());
    assert!(
        !git_output(&dir, &["rev-parse", "-q", "--verify", "REBASE_HEAD"])
            .status
            .success()
    );
}

/// Issue item 12: the verify command rewrote a tracked lock file (and left a report behind);
/// the rebase used to fail on the dirty worktree. The worktree is brought back to the branch's
/// committed state first, what was discarded is reported, and ignored build output stays.
#[tokio::test]
async fn what_verify_left_in_the_worktree_is_discarded_and_listed_before_rebasing() {
    let fx = Fixture::new();
    let repo = fx.repo();
    let dir = fx.branch_with(
        "033-lock",
        &[
            ("Cargo.lock", "locked v1\n"),
            (".gitignore", "target/\n"),
            ("x.txt", "x\n"),
        ],
    );
    let main = fx.advance_main(&[("m.txt", "main moved\n")]);
    // What a verify run leaves: a rewritten lock file, a new report, ignored build output.
    std::fs::write(dir.join("Cargo.lock"), "locked v2, rewritten by verify\n").unwrap();
    std::fs::write(dir.join("report.xml"), "<testsuite/>\n").unwrap();
    std::fs::create_dir_all(dir.join("target")).unwrap();
    std::fs::write(dir.join("target/cache"), "build output\n").unwrap();

    let update = repo
        .update_branch(&dir, "factory/033-lock", "main")
        .await
        .unwrap();
    assert_eq!(update.discarded, ["Cargo.lock", "report.xml"]);
    let UpdateOutcome::Rebased(tip) = update.outcome else {
        panic!("expected Rebased, got {:?}", update.outcome);
    };
    assert_eq!(fx.rev("factory/033-lock^"), main);
    assert_eq!(fx.rev("factory/033-lock"), tip.0);
    assert_eq!(
        std::fs::read(dir.join("Cargo.lock")).unwrap(),
        b"locked v1\n"
    );
    assert!(!dir.join("report.xml").exists());
    assert_eq!(
        std::fs::read(dir.join("target/cache")).unwrap(),
        b"build output\n"
    );
    assert!(git_in(&dir, &["status", "--porcelain"]).is_empty());

    // A clean worktree has nothing to discard.
    let update = repo
        .update_branch(&dir, "factory/033-lock", "main")
        .await
        .unwrap();
    assert!(update.discarded.is_empty());
    assert_eq!(update.outcome, UpdateOutcome::UpToDate(tip));
}

/// A rebase left half-done (Factory interrupted mid-rebase, or the agent's own) is aborted, so the
/// worktree is back on its branch and the update goes ahead instead of reading as damage.
#[tokio::test]
async fn an_interrupted_rebase_is_aborted_before_updating() {
    let fx = Fixture::new();
    let repo = fx.repo();
    let dir = fx.branch_with("034-stuck", &[("a.txt", "alpha from the branch\n")]);
    let tip = fx.rev("factory/034-stuck");
    fx.advance_main(&[("a.txt", "alpha from main\n")]);
    assert!(!git_output(&dir, &["rebase", "main"]).status.success());
    assert!(
        git_output(&dir, &["symbolic-ref", "-q", "HEAD"])
            .stdout
            .is_empty(),
        "HEAD is detached mid-rebase"
    );

    let update = repo
        .update_branch(&dir, "factory/034-stuck", "main")
        .await
        .unwrap();
    assert_eq!(
        update.outcome,
        UpdateOutcome::Conflict {
            files: vec!["a.txt".into()]
        }
    );
    assert_eq!(fx.rev("factory/034-stuck"), tip);
    assert_eq!(
        git_in(&dir, &["symbolic-ref", "HEAD"]).trim(),
        "refs/heads/factory/034-stuck"
    );
}
