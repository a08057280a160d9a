//! Where a merge lands: main moves only by compare-and-swap, exactly the verified commit is
//! merged, and the user's checkout follows only when it has main checked out at that instant.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use factory_core::ports::{CommitId, MergeOutcome, Vcs};

use crate::fixture::{Fixture, MergeTip, git_output};

/// Issue item 2: the user has another branch checked out. Main moves (by compare-and-swap),
/// their branch and checkout stay exactly as they were.
#[tokio::test]
async fn a_user_on_another_branch_keeps_it_and_main_moves_alone() {
    let fx = Fixture::new();
    let repo = fx.repo();
    fx.branch_with("050-cas", &[("new.txt", "new\n"), ("a.txt", "alpha v2\n")]);
    let old = fx.rev("main");
    fx.git(&["checkout", "-q", "-b", "feature"]);
    fx.write("b.txt", "user edit on feature\n");
    let feature = fx.rev("feature");
    let status = fx.git(&["status", "--porcelain"]);
    // Refs only in packed-refs (as after `git gc`) are swapped just the same.
    fx.git(&["pack-refs", "--all"]);

    let outcome = repo
        .merge_no_ff("factory/050-cas", "main", "Merge 050")
        .await
        .unwrap();
    let MergeOutcome::Merged(merge) = outcome else {
        panic!("expected Merged, got {outcome:?}");
    };
    assert_eq!(fx.rev("main"), merge.0);
    assert_eq!(fx.rev("main^1"), old);
    assert_eq!(fx.rev("feature"), feature, "the user's branch did not move");
    assert_eq!(
        fx.git(&["symbolic-ref", "HEAD"]).trim(),
        "refs/heads/feature"
    );
    assert_eq!(fx.git(&["status", "--porcelain"]), status);
    assert_eq!(fx.read("a.txt"), b"alpha\n");
    assert!(!fx.root.join("new.txt").exists());
    assert!(!fx.root.join(".git/HEAD.lock").exists());
}

/// Issue item 2, the race itself: the user switches between `main` and `feature` as fast as git
/// lets them while merges land. Before the fix, `git merge --ff-only` in the user's checkout
/// sometimes ran just after a switch and fast-forwarded `feature`. Whatever the interleaving,
/// `feature` must never move and main must be exactly the chain of merges.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switching_branches_during_merges_never_moves_another_branch() {
    let fx = Fixture::new();
    let repo = fx.repo();
    fx.git(&["branch", "feature"]);
    let feature = fx.rev("feature");
    let names: Vec<String> = (0..12).map(|i| format!("051-{i:02}")).collect();
    for (i, name) in names.iter().enumerate() {
        fx.branch_with(name, &[(&format!("f{i}.txt"), "x\n")]);
    }

    let switching = Arc::new(AtomicBool::new(true));
    let switcher = {
        let (root, switching) = (fx.root.clone(), switching.clone());
        std::thread::spawn(move || {
            let mut switches = 0;
            while switching.load(Ordering::SeqCst) {
                for branch in ["feature", "main"] {
                    // Fails while Factory holds HEAD.lock; that is the point.
                    if git_output(&root, &["checkout", "-q", branch])
                        .status
                        .success()
                    {
                        switches += 1;
                    }
                }
            }
            switches
        })
    };
    let mut merges = Vec::new();
    for name in &names {
        let branch = format!("factory/{name}");
        loop {
            match repo.merge_no_ff(&branch, "main", "m").await.unwrap() {
                MergeOutcome::Merged(commit) => {
                    merges.push(commit);
                    break;
                }
                MergeOutcome::Waiting { .. } => tokio::task::yield_now().await,
                other => panic!("{other:?}"),
            }
        }
    }
    switching.store(false, Ordering::SeqCst);
    let switches = switcher.join().unwrap();
    assert!(switches > 0, "the user really switched branches");

    assert_eq!(fx.rev("feature"), feature, "feature never moved");
    let first_parents = fx.git(&["rev-list", "--first-parent", "main"]);
    let chain: Vec<&str> = first_parents.lines().collect();
    let mut expected: Vec<&str> = merges.iter().rev().map(|c| c.0.as_str()).collect();
    expected.push(feature.as_str());
    assert_eq!(chain, expected, "main is exactly the chain of merges");
    // A user checkout that lost the race for HEAD.lock can be left half-switched by git itself
    // (files and index switched, HEAD not); that is git's behaviour with any concurrent command.
    fx.git(&["checkout", "-q", "-f", "main"]);
    assert!(fx.git(&["status", "--porcelain"]).is_empty());
    for i in 0..names.len() {
        assert!(fx.root.join(format!("f{i}.txt")).exists());
    }
}

/// The user is in the middle of a merge into main: Factory waits and moves nothing.
#[tokio::test]
async fn a_checkout_with_an_operation_in_progress_makes_the_merge_wait() {
    let fx = Fixture::new();
    let repo = fx.repo();
    fx.branch_with("052-busy", &[("new.txt", "new\n")]);
    fx.git(&["checkout", "-q", "-b", "side"]);
    fx.write("a.txt", "alpha on side\n");
    fx.git(&["commit", "-q", "-am", "side"]);
    fx.git(&["checkout", "-q", "main"]);
    fx.write("a.txt", "alpha on main\n");
    fx.git(&["commit", "-q", "-am", "main"]);
    let main = fx.rev("main");
    assert!(
        !git_output(&fx.root, &["merge", "-q", "side"])
            .status
            .success()
    );
    assert!(fx.root.join(".git/MERGE_HEAD").exists());

    let outcome = repo
        .merge_no_ff("factory/052-busy", "main", "Merge 052")
        .await
        .unwrap();
    let MergeOutcome::Waiting { reason, files } = outcome else {
        panic!("expected Waiting, got {outcome:?}");
    };
    assert!(
        reason.contains("a merge into `main` is in progress"),
        "{reason}"
    );
    assert!(files.is_empty());
    assert_eq!(fx.rev("main"), main);
    assert!(fx.root.join(".git/MERGE_HEAD").exists());
    assert!(!fx.root.join("new.txt").exists());

    fx.git(&["merge", "--abort"]);
    let outcome = repo
        .merge_no_ff("factory/052-busy", "main", "Merge 052")
        .await
        .unwrap();
    assert!(matches!(outcome, MergeOutcome::Merged(_)), "{outcome:?}");
    assert_eq!(fx.read("new.txt"), b"new\n");
}

/// A git command holding the user's HEAD.lock (or one left by a crash) makes the merge wait.
#[tokio::test]
async fn a_held_head_lock_makes_the_merge_wait_and_is_left_alone() {
    let fx = Fixture::new();
    let repo = fx.repo();
    fx.branch_with("053-locked", &[("new.txt", "new\n")]);
    let main = fx.rev("main");
    std::fs::write(fx.root.join(".git/HEAD.lock"), "").unwrap();
    let outcome = repo
        .merge_no_ff("factory/053-locked", "main", "Merge 053")
        .await
        .unwrap();
    assert!(
        matches!(&outcome, MergeOutcome::Waiting { reason, .. } if reason.contains("HEAD.lock")),
        "{outcome:?}"
    );
    assert_eq!(fx.rev("main"), main);
    assert!(
        fx.root.join(".git/HEAD.lock").exists(),
        "not ours to remove"
    );
}

/// Issue item 3: only the verified commit is merged. A branch that moved after verify is refused.
#[tokio::test]
async fn a_branch_whose_tip_is_not_the_verified_commit_is_refused() {
    let fx = Fixture::new();
    let repo = fx.repo();
    let dir = fx.branch_with("054-moved", &[("v.txt", "verified\n")]);
    let verified = CommitId(fx.rev("factory/054-moved"));
    crate::fixture::commit_files(&dir, &[("late.txt", "unverified\n")], "after verify");
    let tip = fx.rev("factory/054-moved");
    let main = fx.rev("main");

    let outcome = repo
        .merge_verified("factory/054-moved", &verified, "main", "Merge 054")
        .await
        .unwrap();
    assert_eq!(
        outcome,
        MergeOutcome::TipMoved {
            expected: verified.clone(),
            actual: Some(CommitId(tip.clone())),
        }
    );
    assert_eq!(fx.rev("main"), main);
    assert_eq!(fx.rev("factory/054-moved"), tip);

    // A branch that no longer exists is refused the same way.
    fx.git(&["worktree", "remove", "--force", dir.to_str().unwrap()]);
    fx.git(&["branch", "-D", "factory/054-moved"]);
    let outcome = repo
        .merge_verified("factory/054-moved", &verified, "main", "Merge 054")
        .await
        .unwrap();
    assert_eq!(
        outcome,
        MergeOutcome::TipMoved {
            expected: verified,
            actual: None,
        }
    );
}

/// Issue item 3: a user who merged the task branch by hand (and kept committing) gets the merge
/// commit that brought it in recorded, not main's tip; a fast-forward records the commit itself.
#[tokio::test]
async fn a_branch_the_user_merged_by_hand_is_recognised_with_the_commit_that_brought_it_in() {
    let fx = Fixture::new();
    let repo = fx.repo();
    fx.branch_with("055-hand", &[("h.txt", "by hand\n")]);
    let verified = CommitId(fx.rev("factory/055-hand"));
    fx.advance_main(&[("m.txt", "main moves\n")]);
    fx.git(&[
        "merge",
        "-q",
        "--no-ff",
        "-m",
        "user merge",
        "factory/055-hand",
    ]);
    let user_merge = fx.rev("main");
    fx.advance_main(&[("later.txt", "later\n")]);
    fx.advance_main(&[("later2.txt", "later still\n")]);
    let main = fx.rev("main");

    let outcome = repo
        .merge_verified("factory/055-hand", &verified, "main", "Merge 055")
        .await
        .unwrap();
    assert_eq!(outcome, MergeOutcome::AlreadyMerged(CommitId(user_merge)));
    assert_eq!(fx.rev("main"), main, "nothing merged twice");

    fx.branch_with("056-ff", &[("ff.txt", "fast-forwarded\n")]);
    let verified = CommitId(fx.rev("factory/056-ff"));
    fx.git(&["merge", "-q", "--ff-only", "factory/056-ff"]);
    fx.advance_main(&[("after-ff.txt", "x\n")]);
    let outcome = repo
        .merge_verified("factory/056-ff", &verified, "main", "Merge 056")
        .await
        .unwrap();
    assert_eq!(outcome, MergeOutcome::AlreadyMerged(verified));
}

/// A file the merge changes that the user only touched (same content, new inode and times) is
/// not in the way: its stale stat information is refreshed and the checkout follows main.
#[tokio::test]
async fn a_touched_but_unchanged_file_does_not_hold_up_the_checkout() {
    let fx = Fixture::new();
    let repo = fx.repo();
    fx.branch_with("057-touch", &[("a.txt", "alpha from the branch\n")]);
    fx.write("a.txt.tmp", "alpha\n");
    std::fs::rename(fx.root.join("a.txt.tmp"), fx.root.join("a.txt")).unwrap();

    let outcome = repo
        .merge_no_ff("factory/057-touch", "main", "Merge 057")
        .await
        .unwrap();
    let MergeOutcome::Merged(merge) = outcome else {
        panic!("expected Merged, got {outcome:?}");
    };
    assert_eq!(fx.rev("HEAD"), merge.0);
    assert_eq!(fx.read("a.txt"), b"alpha from the branch\n");
    assert!(fx.git(&["status", "--porcelain"]).is_empty());
}

/// The user is in the middle of rebasing `main` itself: the merge waits (the rebase, finishing
/// later, would find main moved). Rebasing another branch does not hold main up, and the
/// checkout, mid-rebase, is not touched.
#[tokio::test]
async fn a_rebase_of_main_makes_the_merge_wait_and_a_rebase_of_another_branch_does_not() {
    let fx = Fixture::new();
    let repo = fx.repo();
    fx.branch_with("058-rebase", &[("new.txt", "new\n")]);
    fx.git(&["checkout", "-q", "-b", "side"]);
    fx.write("a.txt", "alpha on side\n");
    fx.git(&["commit", "-q", "-am", "side"]);
    fx.git(&["checkout", "-q", "main"]);
    fx.write("a.txt", "alpha on main\n");
    fx.git(&["commit", "-q", "-am", "main"]);
    let main = fx.rev("main");

    // Rebasing main onto side conflicts and stops.
    assert!(!git_output(&fx.root, &["rebase", "side"]).status.success());
    let outcome = repo
        .merge_no_ff("factory/058-rebase", "main", "Merge 058")
        .await
        .unwrap();
    assert!(
        matches!(&outcome, MergeOutcome::Waiting { reason, .. } if reason.contains("a rebase of `main`")),
        "{outcome:?}"
    );
    assert_eq!(fx.rev("main"), main);
    fx.git(&["rebase", "--abort"]);

    // Rebasing side onto main conflicts and stops: main still moves.
    fx.git(&["checkout", "-q", "side"]);
    assert!(!git_output(&fx.root, &["rebase", "main"]).status.success());
    let status = fx.git(&["status", "--porcelain"]);
    let outcome = repo
        .merge_no_ff("factory/058-rebase", "main", "Merge 058")
        .await
        .unwrap();
    let MergeOutcome::Merged(merge) = outcome else {
        panic!("expected Merged, got {outcome:?}");
    };
    assert_eq!(fx.rev("main"), merge.0);
    assert_eq!(fx.rev("main^1"), main);
    assert_eq!(fx.git(&["status", "--porcelain"]), status);
    assert!(!fx.root.join("new.txt").exists());
    fx.git(&["rebase", "--abort"]);
    assert_eq!(fx.git(&["symbolic-ref", "HEAD"]).trim(), "refs/heads/side");
}

/// Another git command holding `refs/heads/main.lock` (a commit on main being written): main is
/// unchanged and the merge waits instead of ending the run.
#[tokio::test]
async fn a_locked_main_makes_the_merge_wait() {
    let fx = Fixture::new();
    let repo = fx.repo();
    fx.branch_with("059-reflock", &[("new.txt", "new\n")]);
    fx.git(&["checkout", "-q", "-b", "feature"]);
    let main = fx.rev("main");
    std::fs::write(fx.root.join(".git/refs/heads/main.lock"), "").unwrap();
    let outcome = repo
        .merge_no_ff("factory/059-reflock", "main", "Merge 059")
        .await
        .unwrap();
    assert!(
        matches!(&outcome, MergeOutcome::Waiting { reason, .. } if reason.contains("could not lock `main`")),
        "{outcome:?}"
    );
    assert_eq!(fx.rev("main"), main);
    std::fs::remove_file(fx.root.join(".git/refs/heads/main.lock")).unwrap();
    let outcome = repo
        .merge_no_ff("factory/059-reflock", "main", "Merge 059")
        .await
        .unwrap();
    assert!(matches!(outcome, MergeOutcome::Merged(_)), "{outcome:?}");
}
