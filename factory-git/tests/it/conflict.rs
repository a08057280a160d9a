//! Conflict rounds: main merged into the task worktree for the worker to resolve, and the
//! resolution committed as one commit on top of main.

use factory_core::ports::{UpdateOutcome, Vcs};

use crate::fixture::{Fixture, git_in, git_output, write};

fn merge_head_exists(dir: &std::path::Path) -> bool {
    git_output(dir, &["rev-parse", "-q", "--verify", "MERGE_HEAD"])
        .status
        .success()
}

#[tokio::test]
async fn a_conflict_round_leaves_markers_and_both_sides_and_does_not_move_the_branch() {
    let fx = Fixture::new();
    let repo = fx.repo();
    let dir = fx.branch_with(
        "040-clash",
        &[("a.txt", "alpha from the branch\n"), ("b.txt", "b\n")],
    );
    let tip = fx.rev("factory/040-clash");
    let main = fx.advance_main(&[("a.txt", "alpha from main\n"), ("m.txt", "m\n")]);
    // What verify left behind is discarded first.
    write(&dir, "scratch.log", "left by verify\n");

    let round = repo
        .start_conflict_round(&dir, "factory/040-clash", "main")
        .await
        .unwrap();
    assert_eq!(
        (round.onto.0.as_str(), round.task_tip.0.as_str()),
        (main.as_str(), tip.as_str())
    );
    assert_eq!(round.files.len(), 1);
    let file = &round.files[0];
    assert_eq!(file.path, "a.txt");
    assert!(
        file.task_change.contains("+alpha from the branch"),
        "{}",
        file.task_change
    );
    assert!(
        file.main_change.contains("+alpha from main"),
        "{}",
        file.main_change
    );

    assert_eq!(fx.rev("factory/040-clash"), tip, "the branch does not move");
    assert!(merge_head_exists(&dir));
    let text = std::fs::read_to_string(dir.join("a.txt")).unwrap();
    assert!(
        text.contains("<<<<<<<") && text.contains(">>>>>>>"),
        "{text}"
    );
    assert_eq!(
        std::fs::read(dir.join("m.txt")).unwrap(),
        b"m\n",
        "main's clean changes are in"
    );
    assert!(!dir.join("scratch.log").exists());
}

#[tokio::test]
async fn the_resolution_is_one_commit_on_main_and_rebases_like_any_other() {
    let fx = Fixture::new();
    let repo = fx.repo();
    let dir = fx.branch_with("041-clash", &[("a.txt", "alpha from the branch\n")]);
    let main = fx.advance_main(&[("a.txt", "alpha from main\n")]);
    repo.start_conflict_round(&dir, "factory/041-clash", "main")
        .await
        .unwrap();
    write(&dir, "a.txt", "alpha from main and the branch\n");

    let commit = repo
        .commit_all(&dir, "factory/041-clash", "041: resolve")
        .await
        .unwrap()
        .expect("the resolution is committed");
    assert_eq!(fx.rev("factory/041-clash"), commit.0);
    assert_eq!(
        fx.rev("factory/041-clash^"),
        main,
        "its only parent is main"
    );
    assert!(
        !git_output(
            &dir,
            &["rev-parse", "-q", "--verify", "factory/041-clash^2"]
        )
        .status
        .success(),
        "not a merge commit"
    );
    assert!(!merge_head_exists(&dir));
    assert!(git_in(&dir, &["status", "--porcelain"]).is_empty());
    assert_eq!(
        git_in(&dir, &["log", "-1", "--format=%an/%cn %s"]).trim(),
        "Factory Bot/Factory Bot 041: resolve"
    );

    // Main moves on elsewhere: the resolved branch rebases without meeting the old conflict.
    let newer = fx.advance_main(&[("z.txt", "z\n")]);
    let outcome = repo
        .update_branch(&dir, "factory/041-clash", "main")
        .await
        .unwrap()
        .outcome;
    let UpdateOutcome::Rebased(tip) = outcome else {
        panic!("expected Rebased, got {outcome:?}");
    };
    assert_eq!(fx.rev("factory/041-clash^"), newer);
    assert_eq!(
        git_in(&dir, &["show", &format!("{}:a.txt", tip.0)]),
        "alpha from main and the branch\n"
    );
}

#[tokio::test]
async fn an_unresolved_round_is_discarded_by_the_next_update() {
    let fx = Fixture::new();
    let repo = fx.repo();
    let dir = fx.branch_with("042-clash", &[("a.txt", "alpha from the branch\n")]);
    let tip = fx.rev("factory/042-clash");
    fx.advance_main(&[("a.txt", "alpha from main\n")]);
    repo.start_conflict_round(&dir, "factory/042-clash", "main")
        .await
        .unwrap();

    let update = repo
        .update_branch(&dir, "factory/042-clash", "main")
        .await
        .unwrap();
    assert_eq!(
        update.outcome,
        UpdateOutcome::Conflict {
            files: vec!["a.txt".into()]
        }
    );
    assert!(!merge_head_exists(&dir));
    assert_eq!(fx.rev("factory/042-clash"), tip);
    assert_eq!(
        std::fs::read(dir.join("a.txt")).unwrap(),
        b"alpha from the branch\n"
    );
}

#[tokio::test]
async fn a_resolution_that_drops_the_change_commits_nothing() {
    let fx = Fixture::new();
    let repo = fx.repo();
    let dir = fx.branch_with("043-clash", &[("a.txt", "alpha from the branch\n")]);
    let tip = fx.rev("factory/043-clash");
    fx.advance_main(&[("a.txt", "alpha from main\n")]);
    repo.start_conflict_round(&dir, "factory/043-clash", "main")
        .await
        .unwrap();
    write(&dir, "a.txt", "alpha from main\n");

    assert_eq!(
        repo.commit_all(&dir, "factory/043-clash", "043: resolve")
            .await
            .unwrap(),
        None
    );
    assert_eq!(fx.rev("factory/043-clash"), tip);
}
