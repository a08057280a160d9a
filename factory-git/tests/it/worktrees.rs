//! Opening, creating, reusing and removing worktrees.

use factory_core::ports::{Vcs, VcsError};
use factory_git::GitRepo;

use crate::fixture::{Fixture, MergeTip, git_in, identity, worktree_paths};

#[tokio::test]
async fn open_finds_the_top_level_from_a_subdirectory_and_refuses_a_plain_directory() {
    let fx = Fixture::new();
    std::fs::create_dir_all(fx.root.join("src/deep")).unwrap();
    let repo = GitRepo::open(&fx.root.join("src/deep"), identity(), "merge".into()).unwrap();
    assert_eq!(repo.root(), fx.root.as_path());
    assert_eq!(repo.merge_worktree(), fx.root.join("merge").as_path());

    let plain = tempfile::tempdir().unwrap();
    let err = GitRepo::open(plain.path(), identity(), "merge".into()).unwrap_err();
    assert!(matches!(err, VcsError::NotARepository(p) if p == plain.path()));
}

#[tokio::test]
async fn open_from_inside_a_task_worktree_names_the_main_checkout() {
    let fx = Fixture::new();
    let task = fx.branch_with("001-x", &[("x.txt", "x\n")]);
    let repo = GitRepo::open(&task, identity(), "merge".into()).unwrap();
    assert_eq!(repo.root(), fx.root.as_path());
}

#[tokio::test]
async fn create_worktree_makes_a_new_branch_from_base_and_is_idempotent() {
    let fx = Fixture::new();
    let repo = fx.repo();
    let path = fx.task_dir("001-add-thing");
    let main = fx.rev("main");

    repo.create_worktree(&path, "factory/001-add-thing", "main")
        .await
        .unwrap();
    assert_eq!(fx.rev("factory/001-add-thing"), main);
    assert_eq!(git_in(&path, &["rev-parse", "HEAD"]).trim(), main);
    assert_eq!(
        git_in(&path, &["symbolic-ref", "HEAD"]).trim(),
        "refs/heads/factory/001-add-thing"
    );
    assert_eq!(std::fs::read(path.join("a.txt")).unwrap(), b"alpha\n");

    // A file the agent wrote survives the re-create: the worktree is reused, not rebuilt.
    std::fs::write(path.join("wip.txt"), "in progress\n").unwrap();
    repo.create_worktree(&path, "factory/001-add-thing", "main")
        .await
        .unwrap();
    assert_eq!(
        std::fs::read(path.join("wip.txt")).unwrap(),
        b"in progress\n"
    );
    let listed = repo.list_worktrees().await.unwrap();
    assert_eq!(listed, vec![fx.root.clone(), path.clone()]);
    assert_eq!(worktree_paths(&fx.root), listed);
}

#[tokio::test]
async fn create_worktree_checks_out_an_existing_branch_not_the_base() {
    let fx = Fixture::new();
    let repo = fx.repo();
    // The branch exists (an earlier run) and is ahead of main; its worktree was removed.
    let old = fx.branch_with("002-existing", &[("e.txt", "earlier work\n")]);
    let tip = fx.rev("factory/002-existing");
    repo.remove_worktree(&old).await.unwrap();
    assert!(!old.exists());

    let path = fx.task_dir("002-existing");
    repo.create_worktree(&path, "factory/002-existing", "main")
        .await
        .unwrap();
    assert_eq!(git_in(&path, &["rev-parse", "HEAD"]).trim(), tip);
    assert_eq!(
        std::fs::read(path.join("e.txt")).unwrap(),
        b"earlier work\n"
    );
    assert_eq!(fx.rev("factory/002-existing"), tip);
}

#[tokio::test]
async fn create_worktree_refuses_a_path_used_by_another_branch() {
    let fx = Fixture::new();
    let repo = fx.repo();
    let path = fx.task_dir("003-a");
    repo.create_worktree(&path, "factory/003-a", "main")
        .await
        .unwrap();
    let err = repo
        .create_worktree(&path, "factory/003-b", "main")
        .await
        .unwrap_err();
    assert!(matches!(err, VcsError::Refused { .. }), "{err:?}");
    assert_eq!(
        git_in(&path, &["symbolic-ref", "HEAD"]).trim(),
        "refs/heads/factory/003-a"
    );
}

#[tokio::test]
async fn remove_worktree_and_remove_merge_worktree_leave_only_the_main_checkout() {
    let fx = Fixture::new();
    let repo = fx.repo();
    let path = fx.task_dir("004-done");
    repo.create_worktree(&path, "factory/004-done", "main")
        .await
        .unwrap();
    std::fs::write(path.join("new.txt"), "new\n").unwrap();
    repo.commit_all(&path, "factory/004-done", "add new")
        .await
        .unwrap()
        .unwrap();
    // A merge made by git creates the merge worktree (main moved on, so the branch is not on
    // top of it and git makes the merge).
    fx.advance_main(&[("moved.txt", "moved\n")]);
    let outcome = repo
        .merge_no_ff("factory/004-done", "main", "Merge 004")
        .await
        .unwrap();
    assert!(matches!(
        outcome,
        factory_core::ports::MergeOutcome::Merged(_)
    ));
    assert_eq!(worktree_paths(&fx.root).len(), 3);

    // Uncommitted files in the task worktree do not stop its removal.
    std::fs::write(path.join("scratch.txt"), "scratch\n").unwrap();
    repo.remove_worktree(&path).await.unwrap();
    repo.remove_merge_worktree().await.unwrap();
    assert_eq!(worktree_paths(&fx.root), vec![fx.root.clone()]);
    assert!(!path.exists());
    assert!(!fx.layout().merge_worktree().exists());
    // The branch stays.
    assert!(!fx.rev("factory/004-done").is_empty());

    // Idempotent.
    repo.remove_worktree(&path).await.unwrap();
    repo.remove_merge_worktree().await.unwrap();
    assert_eq!(repo.list_worktrees().await.unwrap(), vec![fx.root.clone()]);
}

#[tokio::test]
async fn a_worktree_whose_directory_vanished_is_pruned_and_recreated() {
    let fx = Fixture::new();
    let repo = fx.repo();
    let path = fx.task_dir("005-gone");
    repo.create_worktree(&path, "factory/005-gone", "main")
        .await
        .unwrap();
    std::fs::remove_dir_all(&path).unwrap();
    repo.create_worktree(&path, "factory/005-gone", "main")
        .await
        .unwrap();
    assert!(path.join("a.txt").exists());
    assert_eq!(worktree_paths(&fx.root).len(), 2);
}

#[tokio::test]
async fn a_repository_without_commits_reports_missing_branches() {
    let fx = Fixture::empty();
    let repo = fx.repo();
    assert_eq!(repo.branch_head("main").await.unwrap(), None);
    let err = repo
        .create_worktree(&fx.task_dir("006-x"), "factory/006-x", "main")
        .await
        .unwrap_err();
    assert!(
        matches!(&err, VcsError::MissingBranch(b) if b == "main"),
        "{err:?}"
    );
    let err = repo
        .merge_no_ff("factory/006-x", "main", "m")
        .await
        .unwrap_err();
    assert!(matches!(err, VcsError::MissingBranch(_)), "{err:?}");
    assert_eq!(repo.current_branch().await.unwrap(), None);
}

#[tokio::test]
async fn branch_head_reads_existing_and_missing_branches() {
    let fx = Fixture::new();
    let repo = fx.repo();
    assert_eq!(
        repo.branch_head("main").await.unwrap().unwrap().0,
        fx.rev("main")
    );
    assert_eq!(repo.branch_head("factory/nope").await.unwrap(), None);
}

/// Parallel task pipelines create worktrees while the merge queue lists them; `git worktree
/// list` fails on an entry another `git worktree add` is still writing, so GitRepo serialises
/// worktree administration.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_worktree_creation_and_listing_do_not_race() {
    let fx = Fixture::new();
    let repo = std::sync::Arc::new(fx.repo());
    let mut jobs = tokio::task::JoinSet::new();
    for i in 0..24 {
        let creator = repo.clone();
        let path = fx.task_dir(&format!("{i:03}-t"));
        jobs.spawn(async move {
            creator
                .create_worktree(&path, &format!("factory/{i:03}-t"), "main")
                .await
        });
        let lister = repo.clone();
        jobs.spawn(async move {
            for _ in 0..10 {
                lister.list_worktrees().await?;
            }
            Ok(())
        });
    }
    while let Some(joined) = jobs.join_next().await {
        joined.unwrap().unwrap();
    }
    assert_eq!(worktree_paths(&fx.root).len(), 25);
}

#[tokio::test]
async fn create_worktree_for_a_branch_whose_old_worktree_was_deleted_by_hand_elsewhere() {
    let fx = Fixture::new();
    let repo = fx.repo();
    let old = fx.task_dir("007-moved");
    repo.create_worktree(&old, "factory/007-moved", "main")
        .await
        .unwrap();
    std::fs::write(old.join("x.txt"), "x\n").unwrap();
    let commit = repo
        .commit_all(&old, "factory/007-moved", "x")
        .await
        .unwrap()
        .unwrap();
    // Deleted by hand: git still has the branch checked out at `old`.
    std::fs::remove_dir_all(&old).unwrap();
    assert_eq!(worktree_paths(&fx.root).len(), 2);

    let new = fx.task_dir("007-moved-again");
    repo.create_worktree(&new, "factory/007-moved", "main")
        .await
        .unwrap();
    assert_eq!(git_in(&new, &["rev-parse", "HEAD"]).trim(), commit.0);
    assert_eq!(std::fs::read(new.join("x.txt")).unwrap(), b"x\n");
    assert_eq!(worktree_paths(&fx.root), vec![fx.root.clone(), new.clone()]);
}

#[tokio::test]
async fn create_worktree_fails_cleanly_when_the_branch_is_checked_out_by_the_user() {
    let fx = Fixture::new();
    let repo = fx.repo();
    let err = repo
        .create_worktree(&fx.task_dir("008-main"), "main", "main")
        .await
        .unwrap_err();
    assert!(matches!(err, VcsError::Git { .. }), "{err:?}");
    assert!(!fx.task_dir("008-main").exists());
    assert_eq!(worktree_paths(&fx.root), vec![fx.root.clone()]);
}

#[tokio::test]
async fn remove_worktree_of_a_registered_but_missing_directory_forgets_it() {
    let fx = Fixture::new();
    let repo = fx.repo();
    let path = fx.task_dir("009-gone");
    repo.create_worktree(&path, "factory/009-gone", "main")
        .await
        .unwrap();
    std::fs::remove_dir_all(&path).unwrap();
    assert_eq!(worktree_paths(&fx.root).len(), 2);

    repo.remove_worktree(&path).await.unwrap();
    assert_eq!(worktree_paths(&fx.root), vec![fx.root.clone()]);
    // The branch stays, and the worktree can be made again.
    repo.create_worktree(&path, "factory/009-gone", "main")
        .await
        .unwrap();
    assert!(path.join("a.txt").exists());
}

#[tokio::test]
async fn remove_worktree_leaves_a_directory_that_is_not_a_worktree_and_refuses_the_checkout() {
    let fx = Fixture::new();
    let repo = fx.repo();
    let plain = fx.root.join(".factory/not-a-worktree");
    std::fs::create_dir_all(&plain).unwrap();
    std::fs::write(plain.join("keep.txt"), "keep\n").unwrap();
    repo.remove_worktree(&plain).await.unwrap();
    assert_eq!(std::fs::read(plain.join("keep.txt")).unwrap(), b"keep\n");

    // A directory inside a task worktree is not that worktree.
    let task = fx.task_dir("010-inner");
    repo.create_worktree(&task, "factory/010-inner", "main")
        .await
        .unwrap();
    std::fs::create_dir_all(task.join("sub")).unwrap();
    repo.remove_worktree(&task.join("sub")).await.unwrap();
    assert!(task.join("a.txt").exists());
    assert_eq!(worktree_paths(&fx.root).len(), 2);

    let err = repo.remove_worktree(&fx.root).await.unwrap_err();
    assert!(matches!(err, VcsError::Refused { .. }), "{err:?}");
    assert!(fx.root.join("a.txt").exists());
}

#[tokio::test]
async fn remove_worktree_reports_a_locked_worktree_it_cannot_remove() {
    let fx = Fixture::new();
    let repo = fx.repo();
    let path = fx.task_dir("011-locked");
    repo.create_worktree(&path, "factory/011-locked", "main")
        .await
        .unwrap();
    git_in(&fx.root, &["worktree", "lock", path.to_str().unwrap()]);
    let err = repo.remove_worktree(&path).await.unwrap_err();
    assert!(matches!(err, VcsError::Git { .. }), "{err:?}");
    assert!(path.join("a.txt").exists());
    assert_eq!(worktree_paths(&fx.root).len(), 2);
}
