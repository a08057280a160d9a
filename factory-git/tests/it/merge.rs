//! `merge_no_ff`: the merge commit's shape, retries, conflicts, and above all the user's
//! uncommitted work.

use factory_core::ports::{MergeOutcome, Vcs};

use crate::fixture::{Fixture, MergeTip, git_in, git_output};

/// What the user's uncommitted work looks like, to compare before and after.
#[derive(Debug, PartialEq, Eq)]
struct UserState {
    files: Vec<(String, Vec<u8>)>,
    diff: String,
    diff_cached: String,
    untracked: String,
}

fn user_state(fx: &Fixture, files: &[&str]) -> UserState {
    UserState {
        files: files
            .iter()
            .map(|f| ((*f).to_owned(), fx.read(f)))
            .collect(),
        diff: fx.git(&["diff", "--no-ext-diff"]),
        diff_cached: fx.git(&["diff", "--cached", "--no-ext-diff"]),
        untracked: fx.git(&["ls-files", "--others", "--exclude-standard"]),
    }
}

fn parents(fx: &Fixture, commit: &str) -> Vec<String> {
    fx.git(&["rev-list", "--parents", "-n", "1", commit])
        .split_whitespace()
        .skip(1)
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn merge_makes_a_two_parent_commit_on_main_then_reports_already_merged() {
    let fx = Fixture::new();
    let repo = fx.repo();
    fx.branch_with(
        "020-feature",
        &[("feature.txt", "feature\n"), ("a.txt", "alpha v2\n")],
    );
    let tip = fx.rev("factory/020-feature");
    let old = fx.advance_main(&[("c.txt", "charlie v2\n")]);
    assert!(!repo.is_merged("factory/020-feature", "main").await.unwrap());

    let outcome = repo
        .merge_no_ff(
            "factory/020-feature",
            "main",
            "Merge factory/020-feature: a feature",
        )
        .await
        .unwrap();
    let MergeOutcome::Merged(merge) = outcome else {
        panic!("expected Merged, got {outcome:?}");
    };
    assert_eq!(fx.rev("main"), merge.0);
    assert_eq!(parents(&fx, &merge.0), [old.clone(), tip.clone()]);
    assert_eq!(fx.rev("main^1"), old, "first parent is the old main");
    assert_eq!(
        fx.git(&["log", "-1", "--format=%s", "main"]).trim(),
        "Merge factory/020-feature: a feature"
    );
    assert_eq!(
        fx.git(&["log", "-1", "--format=%an/%ae/%cn/%ce", "main"])
            .trim(),
        "Factory Bot/factory@example.invalid/Factory Bot/factory@example.invalid"
    );
    // The user's (clean) checkout followed main.
    assert_eq!(fx.rev("HEAD"), merge.0);
    assert_eq!(fx.git(&["symbolic-ref", "HEAD"]).trim(), "refs/heads/main");
    assert_eq!(fx.read("feature.txt"), b"feature\n");
    assert_eq!(fx.read("a.txt"), b"alpha v2\n");
    assert_eq!(fx.read("c.txt"), b"charlie v2\n");
    assert!(fx.git(&["status", "--porcelain"]).is_empty());
    assert!(repo.is_merged("factory/020-feature", "main").await.unwrap());

    // A retried step does nothing.
    let again = repo
        .merge_no_ff("factory/020-feature", "main", "Merge again")
        .await
        .unwrap();
    assert_eq!(again, MergeOutcome::AlreadyMerged(merge.clone()));
    assert_eq!(fx.rev("main"), merge.0);
}

#[tokio::test]
async fn merge_moves_main_by_ref_when_nobody_has_it_checked_out() {
    let fx = Fixture::new();
    let repo = fx.repo();
    fx.git(&["checkout", "-q", "-b", "dev"]);
    fx.write("a.txt", "user edit on dev\n");
    fx.branch_with("021-ref", &[("r.txt", "r\n")]);
    let old = fx.rev("main");

    let outcome = repo
        .merge_no_ff("factory/021-ref", "main", "Merge 021")
        .await
        .unwrap();
    let MergeOutcome::Merged(merge) = outcome else {
        panic!("expected Merged, got {outcome:?}");
    };
    assert_eq!(fx.rev("main"), merge.0);
    assert_eq!(fx.rev("main^1"), old);
    assert_eq!(fx.git(&["symbolic-ref", "HEAD"]).trim(), "refs/heads/dev");
    assert_eq!(fx.rev("HEAD"), old);
    assert!(!fx.root.join("r.txt").exists());
    assert_eq!(fx.read("a.txt"), b"user edit on dev\n");
}

#[tokio::test]
async fn a_conflict_leaves_main_unchanged_and_the_merge_worktree_clean() {
    let fx = Fixture::new();
    let repo = fx.repo();
    fx.branch_with(
        "022-clash",
        &[("a.txt", "alpha from the branch\n"), ("ok.txt", "fine\n")],
    );
    let main = fx.advance_main(&[("a.txt", "alpha from main\n")]);
    let tip = fx.rev("factory/022-clash");

    let outcome = repo
        .merge_no_ff("factory/022-clash", "main", "Merge 022")
        .await
        .unwrap();
    assert_eq!(
        outcome,
        MergeOutcome::Conflict {
            files: vec!["a.txt".into()]
        }
    );
    assert_eq!(fx.rev("main"), main);
    assert_eq!(fx.rev("HEAD"), main);
    assert_eq!(fx.rev("factory/022-clash"), tip);
    assert!(fx.git(&["status", "--porcelain"]).is_empty());
    assert_eq!(fx.read("a.txt"), b"alpha from main\n");

    let merge_dir = fx.layout().merge_worktree();
    assert!(git_in(&merge_dir, &["status", "--porcelain", "--ignored"]).is_empty());
    assert_eq!(git_in(&merge_dir, &["rev-parse", "HEAD"]).trim(), main);
    let merge_head = git_output(&merge_dir, &["rev-parse", "-q", "--verify", "MERGE_HEAD"]);
    assert!(!merge_head.status.success(), "no merge in progress");
    assert!(!repo.is_merged("factory/022-clash", "main").await.unwrap());
}

#[tokio::test]
async fn the_users_unrelated_uncommitted_work_survives_a_merge_byte_for_byte() {
    let fx = Fixture::new();
    let repo = fx.repo();
    fx.branch_with(
        "023-safe",
        &[
            ("c.txt", "charlie from the branch\n"),
            ("src/new.rs", "fn main() {}\n"),
        ],
    );
    let old = fx.rev("main");

    // The user is working: an unstaged edit, a staged edit, an untracked file, and a file that
    // is both staged and further modified.
    fx.write("a.txt", "alpha, being edited\n");
    fx.write("b.txt", "bravo, staged\n");
    fx.git(&["add", "b.txt"]);
    fx.write("notes.txt", "my untracked notes\n");
    fx.write("mixed.txt", "staged version\n");
    fx.git(&["add", "mixed.txt"]);
    fx.write("mixed.txt", "staged version\nplus unstaged line\n");
    let watched = ["a.txt", "b.txt", "notes.txt", "mixed.txt"];
    let before = user_state(&fx, &watched);
    assert!(!before.diff.is_empty() && !before.diff_cached.is_empty());

    let outcome = repo
        .merge_no_ff("factory/023-safe", "main", "Merge 023")
        .await
        .unwrap();
    let MergeOutcome::Merged(merge) = outcome else {
        panic!("expected Merged, got {outcome:?}");
    };

    assert_eq!(user_state(&fx, &watched), before);
    assert_eq!(fx.rev("HEAD"), merge.0);
    assert_eq!(fx.rev("main"), merge.0);
    assert_eq!(fx.rev("main^1"), old);
    assert_eq!(fx.git(&["symbolic-ref", "HEAD"]).trim(), "refs/heads/main");
    // The merge's own changes are in the checkout, and clean.
    assert_eq!(fx.read("c.txt"), b"charlie from the branch\n");
    assert_eq!(fx.read("src/new.rs"), b"fn main() {}\n");
    let status = fx.git(&["status", "--porcelain"]);
    assert_eq!(status, " M a.txt\nM  b.txt\nAM mixed.txt\n?? notes.txt\n");
}

#[tokio::test]
async fn a_merge_touching_the_users_dirty_files_waits_and_moves_nothing() {
    let fx = Fixture::new();
    let repo = fx.repo();
    fx.branch_with(
        "024-wait",
        &[
            ("a.txt", "alpha from the branch\n"),
            ("b.txt", "bravo from the branch\n"),
            ("notes.txt", "the branch adds notes\n"),
            ("c.txt", "charlie from the branch\n"),
        ],
    );
    let old = fx.rev("main");
    fx.write("a.txt", "alpha, being edited\n");
    fx.write("b.txt", "bravo, staged\n");
    fx.git(&["add", "b.txt"]);
    fx.write("notes.txt", "my untracked notes\n");
    let watched = ["a.txt", "b.txt", "c.txt", "notes.txt"];
    let before = user_state(&fx, &watched);

    let outcome = repo
        .merge_no_ff("factory/024-wait", "main", "Merge 024")
        .await
        .unwrap();
    let MergeOutcome::Waiting { reason, files } = outcome else {
        panic!("expected Waiting, got {outcome:?}");
    };
    assert_eq!(files, ["a.txt", "b.txt", "notes.txt"]);
    assert!(
        reason.contains("a.txt") && reason.contains("commit or stash"),
        "{reason}"
    );
    assert_eq!(fx.rev("main"), old);
    assert_eq!(fx.rev("HEAD"), old);
    assert_eq!(user_state(&fx, &watched), before);
    assert!(!repo.is_merged("factory/024-wait", "main").await.unwrap());

    // Once the user commits, the retried merge goes through.
    fx.git(&["add", "-A"]);
    fx.git(&["commit", "-q", "-m", "user work"]);
    let outcome = repo
        .merge_no_ff("factory/024-wait", "main", "Merge 024")
        .await
        .unwrap();
    assert!(
        matches!(outcome, MergeOutcome::Conflict { .. }),
        "the user's commit now conflicts with the branch: {outcome:?}"
    );
}

#[tokio::test]
async fn waiting_clears_once_the_user_commits_an_unrelated_fix() {
    let fx = Fixture::new();
    let repo = fx.repo();
    fx.branch_with("025-retry", &[("a.txt", "alpha from the branch\n")]);
    fx.write("a.txt", "alpha, being edited\n");
    let outcome = repo
        .merge_no_ff("factory/025-retry", "main", "Merge 025")
        .await
        .unwrap();
    assert!(
        matches!(outcome, MergeOutcome::Waiting { .. }),
        "{outcome:?}"
    );

    fx.git(&["checkout", "--", "a.txt"]);
    let outcome = repo
        .merge_no_ff("factory/025-retry", "main", "Merge 025")
        .await
        .unwrap();
    let MergeOutcome::Merged(merge) = outcome else {
        panic!("expected Merged, got {outcome:?}");
    };
    assert_eq!(fx.rev("HEAD"), merge.0);
    assert_eq!(fx.read("a.txt"), b"alpha from the branch\n");
}

#[tokio::test]
async fn an_ignored_file_where_the_merge_adds_one_waits_instead_of_being_overwritten() {
    let fx = Fixture::new();
    let repo = fx.repo();
    fx.write(".gitignore", "*.log\n");
    fx.advance_main(&[]);
    fx.branch_with("026-ignored", &[("other.txt", "other\n")]);
    let dir = fx.task_dir("026-ignored");
    crate::fixture::write(&dir, "keep.log", "tracked by the branch\n");
    git_in(&dir, &["add", "-f", "keep.log"]);
    git_in(&dir, &["commit", "-q", "-m", "track a log"]);
    fx.write("keep.log", "the user's ignored log\n");
    let old = fx.rev("main");

    let outcome = repo
        .merge_no_ff("factory/026-ignored", "main", "Merge 026")
        .await
        .unwrap();
    let MergeOutcome::Waiting { files, .. } = outcome else {
        panic!("expected Waiting, got {outcome:?}");
    };
    assert_eq!(files, ["keep.log"]);
    assert_eq!(fx.rev("main"), old);
    assert_eq!(fx.read("keep.log"), b"the user's ignored log\n");
}

#[tokio::test]
async fn a_stale_merge_worktree_is_reset_before_the_next_merge() {
    let fx = Fixture::new();
    let repo = fx.repo();
    fx.branch_with("027-one", &[("one.txt", "1\n")]);
    fx.branch_with("027-two", &[("two.txt", "2\n")]);
    // Main moves on, so git makes both merges in the merge worktree.
    fx.advance_main(&[("base.txt", "base\n")]);
    let outcome = repo
        .merge_no_ff("factory/027-one", "main", "Merge one")
        .await
        .unwrap();
    assert!(matches!(outcome, MergeOutcome::Merged(_)), "{outcome:?}");

    // Leftovers from an interrupted run in Factory's merge worktree.
    let merge_dir = fx.layout().merge_worktree();
    crate::fixture::write(&merge_dir, "junk.txt", "junk\n");
    crate::fixture::write(&merge_dir, "one.txt", "scribbled\n");

    let outcome = repo
        .merge_no_ff("factory/027-two", "main", "Merge two")
        .await
        .unwrap();
    let MergeOutcome::Merged(merge) = outcome else {
        panic!("expected Merged, got {outcome:?}");
    };
    assert_eq!(fx.git(&["show", &format!("{}:one.txt", merge.0)]), "1\n");
    assert_eq!(fx.git(&["show", &format!("{}:two.txt", merge.0)]), "2\n");
    assert!(fx.git(&["status", "--porcelain"]).is_empty());
    assert!(!merge_dir.join("junk.txt").exists());
}

#[tokio::test]
async fn main_checked_out_in_another_worktree_of_the_user_is_fast_forwarded_there() {
    let fx = Fixture::new();
    let repo = fx.repo();
    fx.git(&["checkout", "-q", "-b", "dev"]);
    let elsewhere = fx.root.parent().unwrap().join("main-checkout");
    fx.git(&["worktree", "add", "-q", elsewhere.to_str().unwrap(), "main"]);
    crate::fixture::write(&elsewhere, "a.txt", "edited in the other checkout\n");
    fx.branch_with("028-other", &[("o.txt", "o\n")]);
    let old = fx.rev("main");

    let outcome = repo
        .merge_no_ff("factory/028-other", "main", "Merge 028")
        .await
        .unwrap();
    let MergeOutcome::Merged(merge) = outcome else {
        panic!("expected Merged, got {outcome:?}");
    };
    assert_eq!(fx.rev("main^1"), old);
    assert_eq!(git_in(&elsewhere, &["rev-parse", "HEAD"]).trim(), merge.0);
    assert_eq!(std::fs::read(elsewhere.join("o.txt")).unwrap(), b"o\n");
    assert_eq!(
        std::fs::read(elsewhere.join("a.txt")).unwrap(),
        b"edited in the other checkout\n"
    );
    assert_eq!(git_in(&elsewhere, &["status", "--porcelain"]), " M a.txt\n");
    assert_eq!(fx.rev("HEAD"), old, "the main checkout stays on dev");
}

/// Merges `name` (a branch adding `file`) and asserts it landed on main and in the checkout.
/// The branch starts one commit behind main (which needs a parent), so git makes the merge in
/// the merge worktree: a branch already on top of main is merged without it.
async fn merge_ok(fx: &Fixture, repo: &factory_git::GitRepo, name: &str, file: &str) -> String {
    fx.branch_from(name, "main~1", &[(file, "content\n")]);
    let old = fx.rev("main");
    let outcome = repo
        .merge_no_ff(&format!("factory/{name}"), "main", &format!("Merge {name}"))
        .await
        .unwrap();
    let MergeOutcome::Merged(merge) = outcome else {
        panic!("expected Merged, got {outcome:?}");
    };
    assert_eq!(fx.rev("main"), merge.0);
    assert_eq!(
        parents(fx, &merge.0),
        [old, fx.rev(&format!("factory/{name}"))]
    );
    assert_eq!(fx.read(file), b"content\n");
    assert!(fx.git(&["status", "--porcelain"]).is_empty());
    merge.0
}

#[tokio::test]
async fn a_merge_worktree_deleted_by_hand_is_recreated() {
    let fx = Fixture::new();
    let repo = fx.repo();
    fx.advance_main(&[("base.txt", "base\n")]);
    merge_ok(&fx, &repo, "030-one", "one.txt").await;
    let merge_dir = fx.layout().merge_worktree();
    std::fs::remove_dir_all(&merge_dir).unwrap();
    // Still registered with git.
    assert_eq!(crate::fixture::worktree_paths(&fx.root).len(), 3);

    let merge = merge_ok(&fx, &repo, "030-two", "two.txt").await;
    assert_eq!(git_in(&merge_dir, &["rev-parse", "HEAD"]).trim(), merge);
    assert!(git_in(&merge_dir, &["status", "--porcelain", "--ignored"]).is_empty());
}

#[tokio::test]
async fn a_merge_worktree_git_forgot_is_replaced() {
    let fx = Fixture::new();
    let repo = fx.repo();
    fx.advance_main(&[("base.txt", "base\n")]);
    merge_ok(&fx, &repo, "031-one", "one.txt").await;
    let merge_dir = fx.layout().merge_worktree();
    crate::fixture::write(&merge_dir, "junk.txt", "junk\n");
    // The registration is gone (pruned by hand), the directory with its `.git` file stays.
    std::fs::remove_dir_all(fx.root.join(".git/worktrees/merge")).unwrap();

    let merge = merge_ok(&fx, &repo, "031-two", "two.txt").await;
    assert_eq!(git_in(&merge_dir, &["rev-parse", "HEAD"]).trim(), merge);
    assert!(!merge_dir.join("junk.txt").exists());
}

#[tokio::test]
async fn a_half_finished_merge_in_the_merge_worktree_is_discarded() {
    let fx = Fixture::new();
    let repo = fx.repo();
    fx.advance_main(&[("base.txt", "base\n")]);
    merge_ok(&fx, &repo, "032-one", "one.txt").await;
    // An interrupted run left a conflicted merge behind.
    fx.branch_with("032-clash-a", &[("a.txt", "alpha a\n")]);
    fx.branch_with("032-clash-b", &[("a.txt", "alpha b\n")]);
    let merge_dir = fx.layout().merge_worktree();
    git_in(
        &merge_dir,
        &["merge", "-q", "--no-ff", "factory/032-clash-a"],
    );
    let out = git_output(&merge_dir, &["merge", "--no-ff", "factory/032-clash-b"]);
    assert!(!out.status.success());
    assert!(
        git_output(&merge_dir, &["rev-parse", "-q", "--verify", "MERGE_HEAD"])
            .status
            .success()
    );

    let merge = merge_ok(&fx, &repo, "032-two", "two.txt").await;
    assert_eq!(git_in(&merge_dir, &["rev-parse", "HEAD"]).trim(), merge);
    let merge_head = git_output(&merge_dir, &["rev-parse", "-q", "--verify", "MERGE_HEAD"]);
    assert!(!merge_head.status.success(), "no merge in progress");
    assert!(git_in(&merge_dir, &["status", "--porcelain", "--ignored"]).is_empty());
    assert_eq!(fx.git(&["show", &format!("{merge}:a.txt")]), "alpha\n");
}

#[tokio::test]
async fn leftovers_in_a_merge_worktree_already_at_main_are_cleaned() {
    let fx = Fixture::new();
    let repo = fx.repo();
    fx.write(".gitignore", "*.log\n");
    fx.advance_main(&[]);
    merge_ok(&fx, &repo, "033-first", "first.txt").await;
    let merge_dir = fx.layout().merge_worktree();
    // Each time the merge worktree is at main's tip, so only the leftover is wrong.
    let leftovers: [(&str, &dyn Fn()); 5] = [
        ("ignored", &|| {
            crate::fixture::write(&merge_dir, "debug.log", "ignored\n")
        }),
        ("untracked", &|| {
            crate::fixture::write(&merge_dir, "scratch/notes.txt", "untracked\n")
        }),
        ("modified", &|| {
            crate::fixture::write(&merge_dir, "b.txt", "modified\n")
        }),
        ("staged", &|| {
            crate::fixture::write(&merge_dir, "b.txt", "staged\n");
            git_in(&merge_dir, &["add", "b.txt"]);
        }),
        ("deleted", &|| {
            std::fs::remove_file(merge_dir.join("c.txt")).unwrap()
        }),
    ];
    for (i, (kind, leave)) in leftovers.iter().enumerate() {
        assert_eq!(
            git_in(&merge_dir, &["rev-parse", "HEAD"]).trim(),
            fx.rev("main")
        );
        leave();
        let merge = merge_ok(&fx, &repo, &format!("033-{i}"), &format!("f{i}.txt")).await;
        assert_eq!(
            fx.git(&["show", &format!("{merge}:b.txt")]),
            "bravo\n",
            "{kind}"
        );
        assert_eq!(
            fx.git(&["show", &format!("{merge}:c.txt")]),
            "charlie\n",
            "{kind}"
        );
        assert!(
            git_in(&merge_dir, &["status", "--porcelain", "--ignored"]).is_empty(),
            "{kind}"
        );
    }
}

#[tokio::test]
async fn a_branch_checked_out_in_the_merge_worktree_is_left_alone() {
    let fx = Fixture::new();
    let repo = fx.repo();
    fx.advance_main(&[("base.txt", "base\n")]);
    merge_ok(&fx, &repo, "034-one", "one.txt").await;
    let merge_dir = fx.layout().merge_worktree();
    git_in(&merge_dir, &["checkout", "-q", "-b", "scratch"]);
    let scratch = fx.rev("scratch");

    let merge = merge_ok(&fx, &repo, "034-two", "two.txt").await;
    assert_eq!(
        fx.rev("scratch"),
        scratch,
        "the branch did not get the merge"
    );
    assert_eq!(git_in(&merge_dir, &["rev-parse", "HEAD"]).trim(), merge);
    let head = git_output(&merge_dir, &["symbolic-ref", "-q", "HEAD"]);
    assert!(
        !head.status.success(),
        "the merge worktree is detached again"
    );
}

#[tokio::test]
async fn consecutive_merges_reuse_the_merge_worktree_and_each_lands() {
    let fx = Fixture::new();
    let repo = fx.repo();
    fx.advance_main(&[("base.txt", "base\n")]);
    let merge_dir = fx.layout().merge_worktree();
    for i in 0..4 {
        let merge = merge_ok(&fx, &repo, &format!("035-{i}"), &format!("f{i}.txt")).await;
        assert_eq!(git_in(&merge_dir, &["rev-parse", "HEAD"]).trim(), merge);
    }
    // The user commits in between: the merge worktree is behind main and must move.
    let user = fx.advance_main(&[("user.txt", "user\n")]);
    let merge = merge_ok(&fx, &repo, "035-last", "last.txt").await;
    assert_eq!(fx.rev("main^1"), user);
    assert_eq!(fx.git(&["show", &format!("{merge}:user.txt")]), "user\n");
    assert_eq!(
        fx.git(&["rev-list", "--merges", "--count", "main"]).trim(),
        "5"
    );
}

#[tokio::test]
async fn main_checked_out_in_a_deleted_worktree_moves_by_ref() {
    let fx = Fixture::new();
    let repo = fx.repo();
    fx.git(&["checkout", "-q", "-b", "dev"]);
    let elsewhere = fx.root.parent().unwrap().join("main-checkout");
    fx.git(&["worktree", "add", "-q", elsewhere.to_str().unwrap(), "main"]);
    std::fs::remove_dir_all(&elsewhere).unwrap();
    fx.branch_with("036-gone", &[("g.txt", "g\n")]);
    let old = fx.rev("main");

    let outcome = repo
        .merge_no_ff("factory/036-gone", "main", "Merge 036")
        .await
        .unwrap();
    let MergeOutcome::Merged(merge) = outcome else {
        panic!("expected Merged, got {outcome:?}");
    };
    assert_eq!(fx.rev("main"), merge.0);
    assert_eq!(fx.rev("main^1"), old);
    assert_eq!(fx.rev("HEAD"), old, "the user's checkout stays on dev");
}

/// The merge queue runs while task pipelines create worktrees: merges read the worktree
/// registry as it is being written.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn merges_while_worktrees_are_being_created_land_in_the_users_checkout() {
    let fx = Fixture::new();
    for i in 0..5 {
        fx.branch_with(&format!("037-{i}"), &[(&format!("m{i}.txt"), "m\n")]);
    }
    let repo = std::sync::Arc::new(fx.repo());
    let mut jobs = tokio::task::JoinSet::new();
    for i in 0..16 {
        let creator = repo.clone();
        let path = fx.task_dir(&format!("037-new-{i}"));
        jobs.spawn(async move {
            creator
                .create_worktree(&path, &format!("factory/037-new-{i}"), "main")
                .await
                .unwrap();
        });
    }
    let merger = repo.clone();
    jobs.spawn(async move {
        for i in 0..5 {
            let outcome = merger
                .merge_no_ff(&format!("factory/037-{i}"), "main", "m")
                .await
                .unwrap();
            assert!(matches!(outcome, MergeOutcome::Merged(_)), "{outcome:?}");
        }
    });
    while let Some(joined) = jobs.join_next().await {
        joined.unwrap();
    }
    assert_eq!(fx.rev("HEAD"), fx.rev("main"));
    assert!(fx.git(&["status", "--porcelain"]).is_empty());
    for i in 0..5 {
        assert_eq!(fx.read(&format!("m{i}.txt")), b"m\n");
    }
}
