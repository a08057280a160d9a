//! Cleaning up after tasks on real git: listing Factory's branches, deleting one only by
//! compare-and-swap, counting the commits a deletion would strand, the worktree registry,
//! forgetting one stale registration, and read-only merge previews.

use factory_core::ports::{BranchDeletion, CommitId, Vcs, VcsError, WorktreeDamage};

use crate::fixture::{Fixture, MergeTip, commit_files, git_in, git_output};

/// Every object file in the repository, for "nothing was written" checks.
fn object_files(fx: &Fixture) -> Vec<String> {
    let mut files = Vec::new();
    let mut dirs = vec![fx.root.join(".git/objects")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                files.push(path.display().to_string());
            }
        }
    }
    files.sort();
    files
}

#[tokio::test]
async fn branches_lists_the_branches_under_a_prefix_with_their_tips() {
    let fx = Fixture::new();
    fx.branch_with("002-b", &[("b2.txt", "b\n")]);
    fx.branch_with("001-a", &[("a1.txt", "a\n")]);
    fx.git(&["branch", "factoryish"]);
    fx.git(&["branch", "feature/x"]);
    let repo = fx.repo();

    let listed = repo.branches("refs/heads/factory/").await.unwrap();
    let names: Vec<&str> = listed.iter().map(|b| b.name.as_str()).collect();
    assert_eq!(names, ["factory/001-a", "factory/002-b"]);
    assert_eq!(listed[0].tip, CommitId(fx.rev("factory/001-a")));
    // A short prefix means the same, and packed refs are listed too.
    fx.git(&["pack-refs", "--all"]);
    assert_eq!(repo.branches("factory/").await.unwrap(), listed);
    assert!(repo.branches("nothing/").await.unwrap().is_empty());
}

#[tokio::test]
async fn delete_branch_is_a_compare_and_swap_that_spares_checked_out_branches() {
    let fx = Fixture::new();
    let worktree = fx.branch_with("001-a", &[("a1.txt", "a\n")]);
    let repo = fx.repo();
    let tip = CommitId(fx.rev("factory/001-a"));
    let main = CommitId(fx.rev("main"));

    // Checked out in its worktree: left alone.
    let outcome = repo.delete_branch("factory/001-a", &tip).await.unwrap();
    assert_eq!(
        outcome,
        BranchDeletion::CheckedOut {
            worktree: worktree.clone()
        }
    );
    repo.remove_worktree(&worktree).await.unwrap();

    // Not at the expected commit: left alone, the actual tip reported.
    let outcome = repo.delete_branch("factory/001-a", &main).await.unwrap();
    assert_eq!(
        outcome,
        BranchDeletion::Moved {
            actual: tip.clone()
        }
    );
    assert_eq!(fx.rev("factory/001-a"), tip.0);

    // At the expected commit, even when only in packed-refs: deleted, nothing else touched.
    fx.git(&["pack-refs", "--all"]);
    let before_main = fx.rev("main");
    assert_eq!(
        repo.delete_branch("factory/001-a", &tip).await.unwrap(),
        BranchDeletion::Deleted
    );
    let gone = git_output(
        &fx.root,
        &["rev-parse", "--verify", "-q", "refs/heads/factory/001-a"],
    );
    assert!(!gone.status.success());
    assert_eq!(fx.rev("main"), before_main);
    assert_eq!(
        repo.delete_branch("factory/001-a", &tip).await.unwrap(),
        BranchDeletion::Missing
    );

    // The user's own checkout on a factory branch keeps it too.
    fx.git(&["branch", "factory/002-b"]);
    fx.git(&["checkout", "-q", "factory/002-b"]);
    let outcome = repo.delete_branch("factory/002-b", &main).await.unwrap();
    assert_eq!(
        outcome,
        BranchDeletion::CheckedOut {
            worktree: fx.root.clone()
        }
    );
    assert!(matches!(
        repo.delete_branch("-x", &main).await,
        Err(VcsError::Git { .. })
    ));
}

#[tokio::test]
async fn commits_only_on_counts_what_no_other_branch_holds() {
    let fx = Fixture::new();
    let a = fx.branch_with("001-a", &[("a1.txt", "a\n")]);
    commit_files(&a, &[("a2.txt", "a\n")], "second");
    let repo = fx.repo();
    // Ignoring nothing, the branch itself holds its commits.
    assert_eq!(repo.commits_only_on("factory/001-a", &[]).await.unwrap(), 0);
    assert_eq!(
        repo.commits_only_on("factory/001-a", &["factory/001-a".to_owned()])
            .await
            .unwrap(),
        2
    );

    // Another branch holding the same commits protects them, unless it is ignored as well.
    fx.git(&["branch", "factory/002-copy", "factory/001-a"]);
    let ignoring_a = ["factory/001-a".to_owned()];
    assert_eq!(
        repo.commits_only_on("factory/001-a", &ignoring_a)
            .await
            .unwrap(),
        0
    );
    let both = ["factory/001-a".to_owned(), "factory/002-copy".to_owned()];
    assert_eq!(
        repo.commits_only_on("factory/001-a", &both).await.unwrap(),
        2
    );

    // Merged into main: nothing is stranded.
    repo.merge_no_ff("factory/001-a", "main", "merge a")
        .await
        .unwrap();
    assert_eq!(
        repo.commits_only_on("factory/001-a", &both).await.unwrap(),
        0
    );
    // A raw commit id works as well.
    let tip = fx.rev("factory/001-a");
    assert_eq!(repo.commits_only_on(&tip, &both).await.unwrap(), 0);
}

#[tokio::test]
async fn worktrees_reports_branch_head_locks_and_stale_entries() {
    let fx = Fixture::new();
    let a = fx.branch_with("001-a", &[("a1.txt", "a\n")]);
    let b = fx.branch_with("002-b", &[("b1.txt", "b\n")]);
    let detached = fx.root.join(".factory/worktrees/detached");
    git_in(
        &fx.root,
        &[
            "worktree",
            "add",
            "-q",
            "--detach",
            detached.to_str().unwrap(),
        ],
    );
    git_in(&fx.root, &["worktree", "lock", b.to_str().unwrap()]);
    std::fs::remove_dir_all(&a).unwrap();
    let repo = fx.repo();

    let infos = repo.worktrees().await.unwrap();
    assert_eq!(infos.len(), 4);
    assert_eq!(infos[0].path, fx.root);
    assert_eq!(infos[0].branch.as_deref(), Some("main"));
    assert_eq!(infos[0].head, Some(CommitId(fx.rev("main"))));
    let find = |p: &std::path::Path| infos.iter().find(|i| i.path == p).unwrap();
    assert!(find(&a).prunable && !find(&a).locked);
    assert_eq!(find(&a).branch.as_deref(), Some("factory/001-a"));
    assert!(find(&b).locked && !find(&b).prunable);
    assert_eq!(find(&b).head, Some(CommitId(fx.rev("factory/002-b"))));
    assert_eq!(find(&detached).branch, None);
    assert_eq!(find(&detached).head, Some(CommitId(fx.rev("main"))));
}

#[tokio::test]
async fn uncommitted_paths_lists_work_and_refuses_a_directory_that_is_no_worktree() {
    let fx = Fixture::new();
    let a = fx.branch_with("001-a", &[("a1.txt", "a\n")]);
    std::fs::write(a.join(".gitignore"), "target/\n").unwrap();
    git_in(&a, &["add", ".gitignore"]);
    git_in(&a, &["commit", "-q", "-m", "ignore"]);
    let repo = fx.repo();
    assert!(repo.uncommitted_paths(&a).await.unwrap().is_empty());

    std::fs::write(a.join("a.txt"), "changed\n").unwrap();
    std::fs::write(a.join("new.txt"), "new\n").unwrap();
    std::fs::create_dir_all(a.join("target")).unwrap();
    std::fs::write(a.join("target/out.bin"), "build output\n").unwrap();
    assert_eq!(
        repo.uncommitted_paths(&a).await.unwrap(),
        ["a.txt", "new.txt"],
        "ignored build output is not uncommitted work"
    );

    std::fs::remove_file(a.join(".git")).unwrap();
    let err = repo.uncommitted_paths(&a).await.unwrap_err();
    assert!(
        matches!(
            err,
            VcsError::WorktreeDamaged {
                damage: WorktreeDamage::NotAWorktree { .. },
                ..
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn forget_worktree_drops_one_stale_registration_and_no_other() {
    let fx = Fixture::new();
    let ours = fx.branch_with("001-a", &[("a1.txt", "a\n")]);
    let theirs = fx.root.parent().unwrap().join("user-worktree");
    git_in(
        &fx.root,
        &[
            "worktree",
            "add",
            "-q",
            "-b",
            "mine",
            theirs.to_str().unwrap(),
        ],
    );
    let live = fx.branch_with("002-b", &[("b1.txt", "b\n")]);
    std::fs::remove_dir_all(&ours).unwrap();
    std::fs::remove_dir_all(&theirs).unwrap();
    let repo = fx.repo();

    // A directory that still exists is not forgotten.
    assert!(matches!(
        repo.forget_worktree(&live).await,
        Err(VcsError::Git { .. })
    ));
    repo.forget_worktree(&ours).await.unwrap();
    let infos = repo.worktrees().await.unwrap();
    let paths: Vec<_> = infos.iter().map(|i| i.path.clone()).collect();
    assert!(!paths.contains(&ours), "{paths:?}");
    assert!(
        paths.iter().any(|p| p.ends_with("user-worktree")),
        "the user's stale entry is left for them: {paths:?}"
    );
    assert!(paths.contains(&live));
    // The branch stays; forgetting twice is fine.
    assert!(!fx.rev("factory/001-a").is_empty());
    repo.forget_worktree(&ours).await.unwrap();

    // A locked stale registration is not forgotten.
    let locked = fx.root.parent().unwrap().join("user-worktree");
    git_in(&fx.root, &["worktree", "lock", locked.to_str().unwrap()]);
    assert!(repo.forget_worktree(&locked).await.is_err());
}

#[tokio::test]
async fn merge_conflicts_previews_a_merge_without_writing_anything() {
    let fx = Fixture::new();
    fx.branch_with("001-clean", &[("new.txt", "new\n")]);
    fx.branch_with("002-clash", &[("a.txt", "theirs\n")]);
    fx.advance_main(&[("a.txt", "ours\n")]);
    let repo = fx.repo();
    let refs_before = fx.git(&["for-each-ref"]);
    let objects_before = object_files(&fx);

    assert!(
        repo.merge_conflicts("factory/001-clean", "main")
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        repo.merge_conflicts("factory/002-clash", "main")
            .await
            .unwrap(),
        ["a.txt"]
    );
    assert_eq!(fx.git(&["for-each-ref"]), refs_before);
    assert_eq!(object_files(&fx), objects_before, "no object was written");
    assert!(matches!(
        repo.merge_conflicts("factory/nope", "main").await,
        Err(VcsError::MissingBranch(_))
    ));
}

#[tokio::test]
async fn checkout_status_names_the_branch_and_the_uncommitted_files() {
    let fx = Fixture::new();
    let repo = fx.repo();
    let status = repo.checkout_status().await.unwrap();
    assert_eq!(status.branch.as_deref(), Some("main"));
    assert!(status.dirty.is_empty());
    fx.write("b.txt", "mine\n");
    fx.write("notes/todo.txt", "todo\n");
    let status = repo.checkout_status().await.unwrap();
    assert_eq!(status.dirty, ["b.txt", "notes/todo.txt"]);
    let head = fx.rev("HEAD");
    fx.git(&["checkout", "-q", "--detach", &head]);
    assert_eq!(repo.checkout_status().await.unwrap().branch, None);
}
