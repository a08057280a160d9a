//! Reading the user's checkout.

use crate::fixture::Fixture;

#[tokio::test]
async fn dirty_paths_reports_modified_staged_and_untracked_but_not_ignored_or_factory() {
    let fx = Fixture::new();
    let repo = fx.repo();
    assert!(repo.dirty_paths().await.unwrap().is_empty());

    fx.write(".gitignore", "*.log\n");
    fx.git(&["add", ".gitignore"]);
    fx.git(&["commit", "-q", "-m", "ignore logs"]);
    assert!(repo.dirty_paths().await.unwrap().is_empty());

    fx.write("a.txt", "alpha modified\n");
    fx.write("b.txt", "bravo staged\n");
    fx.git(&["add", "b.txt"]);
    fx.write("notes/todo.txt", "untracked\n");
    fx.write("build.log", "ignored\n");
    fx.write(".factory/config.toml", "# factory's own\n");
    std::fs::remove_file(fx.root.join("c.txt")).unwrap();

    assert_eq!(
        repo.dirty_paths().await.unwrap(),
        ["a.txt", "b.txt", "c.txt", "notes/todo.txt"]
    );
}

#[tokio::test]
async fn dirty_paths_sees_a_staged_only_change_that_matches_the_worktree() {
    let fx = Fixture::new();
    let repo = fx.repo();
    fx.write("new.txt", "staged new file\n");
    fx.git(&["add", "new.txt"]);
    fx.git(&["rm", "-q", "--cached", "c.txt"]);
    assert_eq!(repo.dirty_paths().await.unwrap(), ["c.txt", "new.txt"]);
}

#[tokio::test]
async fn current_branch_is_the_checked_out_branch_or_none_when_detached() {
    let fx = Fixture::new();
    let repo = fx.repo();
    assert_eq!(
        repo.current_branch().await.unwrap().as_deref(),
        Some("main")
    );
    fx.git(&["checkout", "-q", "-b", "feature/x"]);
    assert_eq!(
        repo.current_branch().await.unwrap().as_deref(),
        Some("feature/x")
    );
    fx.git(&["checkout", "-q", "--detach"]);
    assert_eq!(repo.current_branch().await.unwrap(), None);
}

/// The handle kept open for reads sees every change to refs at once, packed or loose, however
/// quickly they follow each other: `packed-refs` rewritten within the same instant, a ref that
/// moves from packed to loose and back, a branch deleted.
#[tokio::test]
async fn branch_reads_see_each_change_to_packed_and_loose_refs() {
    use factory_core::ports::Vcs;

    let fx = Fixture::new();
    let repo = fx.repo();
    let tip = |name: &'static str| {
        let repo = &repo;
        async move { repo.branch_head(name).await.unwrap().map(|commit| commit.0) }
    };
    fx.git(&["branch", "side"]);
    fx.git(&["pack-refs", "--all"]);
    assert_eq!(tip("main").await, Some(fx.rev("main")));
    for round in 0..5 {
        // Main moves (a loose ref again), then is packed, right after the last read.
        fx.advance_main(&[("round.txt", &format!("{round}\n"))]);
        assert_eq!(tip("main").await, Some(fx.rev("main")), "round {round}");
        fx.git(&["pack-refs", "--all"]);
        fx.git(&["update-ref", "refs/heads/side", &fx.rev("main")]);
        fx.git(&["pack-refs", "--all"]);
        assert_eq!(tip("side").await, Some(fx.rev("main")), "round {round}");
        assert_eq!(tip("main").await, Some(fx.rev("main")), "round {round}");
    }
    fx.git(&["branch", "-D", "side"]);
    assert_eq!(tip("side").await, None);
}
