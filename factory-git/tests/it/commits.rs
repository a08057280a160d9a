//! Committing in a task worktree and listing changed paths.

use factory_core::ports::Vcs;

use crate::fixture::{Fixture, git_in};

#[tokio::test]
async fn commit_all_commits_everything_as_factory_and_nothing_when_clean() {
    let fx = Fixture::new();
    let repo = fx.repo();
    let path = fx.task_dir("010-commit");
    repo.create_worktree(&path, "factory/010-commit", "main")
        .await
        .unwrap();

    assert_eq!(repo.commit_all(&path, "nothing").await.unwrap(), None);
    let main = fx.rev("main");
    assert_eq!(fx.rev("factory/010-commit"), main);

    std::fs::write(path.join("a.txt"), "alpha changed\n").unwrap();
    std::fs::write(path.join("new.txt"), "new\n").unwrap();
    std::fs::remove_file(path.join("c.txt")).unwrap();
    std::fs::write(path.join(".gitignore"), "*.log\n").unwrap();
    std::fs::write(path.join("debug.log"), "ignored\n").unwrap();
    let commit = repo
        .commit_all(&path, "Task 010: change things\n\nBody.")
        .await
        .unwrap()
        .unwrap();

    assert_eq!(commit.0, fx.rev("factory/010-commit"));
    assert_eq!(fx.rev("main"), main, "main is not touched");
    assert_eq!(fx.rev(&format!("{}^", commit.0)), main);
    // Factory's identity, not the repository's local `Local User` nor any global one.
    let who = git_in(&path, &["log", "-1", "--format=%an/%ae/%cn/%ce"]);
    assert_eq!(
        who.trim(),
        "Factory Bot/factory@example.invalid/Factory Bot/factory@example.invalid"
    );
    let message = git_in(&path, &["log", "-1", "--format=%B"]);
    assert_eq!(message.trim(), "Task 010: change things\n\nBody.");
    let files = git_in(&path, &["show", "--name-status", "--format=", "HEAD"]);
    assert_eq!(files, "A\t.gitignore\nM\ta.txt\nD\tc.txt\nA\tnew.txt\n");
    assert!(git_in(&path, &["status", "--porcelain"]).is_empty());

    assert_eq!(repo.commit_all(&path, "again").await.unwrap(), None);
    assert_eq!(fx.rev("factory/010-commit"), commit.0);
}

#[tokio::test]
async fn changed_paths_lists_both_sides_of_a_rename() {
    let fx = Fixture::new();
    let repo = fx.repo();
    fx.branch_with(
        "011-diff",
        &[("z/new.txt", "new\n"), ("a.txt", "alpha 2\n")],
    );
    let dir = fx.task_dir("011-diff");
    git_in(&dir, &["mv", "b.txt", "bravo.txt"]);
    git_in(&dir, &["commit", "-q", "-m", "rename"]);

    let changed = repo
        .changed_paths("main", "factory/011-diff")
        .await
        .unwrap();
    assert_eq!(changed, ["a.txt", "b.txt", "bravo.txt", "z/new.txt"]);
    assert!(repo.changed_paths("main", "main").await.unwrap().is_empty());
    let err = repo
        .changed_paths("main", "no-such-branch")
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        factory_core::ports::VcsError::MissingBranch(_)
    ));
}
