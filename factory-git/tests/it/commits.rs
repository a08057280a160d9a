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

    assert_eq!(
        repo.commit_all(&path, "factory/010-commit", "nothing")
            .await
            .unwrap(),
        None
    );
    let main = fx.rev("main");
    assert_eq!(fx.rev("factory/010-commit"), main);

    std::fs::write(path.join("a.txt"), "alpha changed\n").unwrap();
    std::fs::write(path.join("new.txt"), "new\n").unwrap();
    std::fs::remove_file(path.join("c.txt")).unwrap();
    std::fs::write(path.join(".gitignore"), "*.log\n").unwrap();
    std::fs::write(path.join("debug.log"), "ignored\n").unwrap();
    let commit = repo
        .commit_all(
            &path,
            "factory/010-commit",
            "Task 010: change things\n\nBody.",
        )
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

    assert_eq!(
        repo.commit_all(&path, "factory/010-commit", "again")
            .await
            .unwrap(),
        None
    );
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

#[tokio::test]
async fn changed_paths_matches_git_diff_three_dot_for_every_kind_of_change() {
    let fx = Fixture::new();
    let repo = fx.repo();
    fx.advance_main(&[
        ("d/x.txt", "x\n"),
        ("d/sub/y.txt", "y\n"),
        ("gone/z.txt", "z\n"),
        ("tofile/inner.txt", "inner\n"),
        ("script.sh", "echo hi\n"),
    ]);
    let dir = fx.branch_with(
        "012-kinds",
        &[
            ("a-b", "dash\n"),
            ("a.txt", "dot\n"),
            ("a/c", "slash\n"),
            ("d/sub/y.txt", "y changed\n"),
            ("d/sub/new/deep.txt", "deep\n"),
            ("ünïcode name.txt", "u\n"),
        ],
    );
    std::fs::remove_dir_all(dir.join("gone")).unwrap();
    std::fs::remove_file(dir.join("b.txt")).unwrap();
    std::fs::create_dir_all(dir.join("b.txt")).unwrap();
    std::fs::write(dir.join("b.txt/now-a-dir.txt"), "dir\n").unwrap();
    std::fs::remove_dir_all(dir.join("tofile")).unwrap();
    std::fs::write(dir.join("tofile"), "now a file\n").unwrap();
    std::os::unix::fs::symlink("a.txt", dir.join("link")).unwrap();
    git_in(&dir, &["add", "-A"]);
    git_in(&dir, &["update-index", "--chmod=+x", "script.sh"]);
    git_in(&dir, &["commit", "-q", "-m", "every kind"]);
    // Main moves on after the fork; its changes are not the branch's.
    fx.advance_main(&[("main-only.txt", "main\n"), ("c.txt", "charlie 2\n")]);

    let git = git_in(
        &fx.root,
        &[
            "diff",
            "--name-only",
            "--no-renames",
            "-z",
            "main...factory/012-kinds",
        ],
    );
    let expected: Vec<&str> = git.split('\0').filter(|p| !p.is_empty()).collect();
    let changed = repo
        .changed_paths("main", "factory/012-kinds")
        .await
        .unwrap();
    assert_eq!(changed, expected);
    assert!(changed.contains(&"b.txt/now-a-dir.txt".to_owned()));
    assert!(!changed.contains(&"main-only.txt".to_owned()));
}

#[tokio::test]
async fn changed_paths_between_unrelated_histories_is_an_error() {
    let fx = Fixture::new();
    let repo = fx.repo();
    fx.git(&["checkout", "-q", "--orphan", "island"]);
    fx.git(&["commit", "-q", "-m", "unrelated"]);
    fx.git(&["checkout", "-q", "main"]);
    let err = repo.changed_paths("main", "island").await.unwrap_err();
    assert!(
        matches!(err, factory_core::ports::VcsError::Refused { .. }),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "`git diff main...island` not done: main and island have no common ancestor"
    );
}

#[tokio::test]
async fn commit_all_with_only_ignored_files_commits_nothing() {
    let fx = Fixture::new();
    let repo = fx.repo();
    fx.write(".gitignore", "*.log\n");
    fx.advance_main(&[]);
    let path = fx.task_dir("013-ignored");
    repo.create_worktree(&path, "factory/013-ignored", "main")
        .await
        .unwrap();
    std::fs::write(path.join("build.log"), "ignored\n").unwrap();
    assert_eq!(
        repo.commit_all(&path, "factory/013-ignored", "nothing")
            .await
            .unwrap(),
        None
    );
    assert_eq!(fx.rev("factory/013-ignored"), fx.rev("main"));

    // Failing to stage or commit is an error, not "nothing to commit".
    std::fs::write(path.join("new.txt"), "new\n").unwrap();
    let git_dir = git_in(&path, &["rev-parse", "--absolute-git-dir"]);
    std::fs::write(std::path::Path::new(git_dir.trim()).join("index.lock"), "").unwrap();
    let err = repo
        .commit_all(&path, "factory/013-ignored", "locked")
        .await
        .unwrap_err();
    assert!(
        matches!(err, factory_core::ports::VcsError::Git { .. }),
        "{err:?}"
    );
    // Said for people: how git ended, never `Some(128)`.
    let text = err.to_string();
    assert!(
        text.starts_with("`git add --all` exited with code 128: "),
        "{text}"
    );
}
