//! `oversized_files`: which files a change adds or grows past a size limit, on real git.

use factory_core::ports::{OversizedFile, Vcs};

use crate::fixture::{Fixture, commit_files, git_in};

const MIB: u64 = 1024 * 1024;
const LIMIT: u64 = 10 * MIB;

fn bytes(n: u64) -> String {
    "x".repeat(usize::try_from(n).unwrap())
}

#[tokio::test]
async fn a_file_over_the_limit_is_flagged_and_a_small_one_is_not() {
    let fx = Fixture::new();
    let repo = fx.repo();
    let big = bytes(12 * MIB);
    let small = bytes(1024);
    fx.branch_with(
        "001-big",
        &[
            ("data/big.bin", big.as_str()),
            ("small.txt", small.as_str()),
        ],
    );

    let found = repo
        .oversized_files("main", "factory/001-big", LIMIT)
        .await
        .unwrap();
    assert_eq!(
        found,
        vec![OversizedFile {
            path: "data/big.bin".into(),
            bytes: 12 * MIB,
        }]
    );
    // The same commit named by its id; and a limit above the file lets it through.
    let tip = fx.rev("factory/001-big");
    assert_eq!(
        repo.oversized_files("main", &tip, LIMIT).await.unwrap(),
        found
    );
    assert!(
        repo.oversized_files("main", &tip, 13 * MIB)
            .await
            .unwrap()
            .is_empty()
    );
    // Exactly at the limit is not over it.
    assert!(
        repo.oversized_files("main", &tip, 12 * MIB)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn deleting_or_shrinking_a_big_file_is_not_flagged_but_growing_one_is() {
    let fx = Fixture::new();
    let repo = fx.repo();
    let (big, bigger, smaller) = (bytes(12 * MIB), bytes(13 * MIB), bytes(11 * MIB));
    fx.advance_main(&[
        ("old-big.bin", big.as_str()),
        ("other-big.bin", big.as_str()),
    ]);

    let wt = fx.branch_with("002-shrink", &[("other-big.bin", smaller.as_str())]);
    git_in(&wt, &["rm", "-q", "old-big.bin"]);
    git_in(&wt, &["commit", "-q", "-m", "delete the big file"]);
    assert!(
        repo.oversized_files("main", "factory/002-shrink", LIMIT)
            .await
            .unwrap()
            .is_empty()
    );

    fx.branch_with("003-grow", &[("other-big.bin", bigger.as_str())]);
    assert_eq!(
        repo.oversized_files("main", "factory/003-grow", LIMIT)
            .await
            .unwrap(),
        vec![OversizedFile {
            path: "other-big.bin".into(),
            bytes: 13 * MIB,
        }]
    );
}

#[tokio::test]
async fn only_the_change_since_the_fork_counts_not_what_main_added_since() {
    let fx = Fixture::new();
    let repo = fx.repo();
    let wt = fx.branch_with("004-small", &[("small.txt", "small\n")]);
    let big = bytes(12 * MIB);
    fx.advance_main(&[("main-big.bin", big.as_str())]);
    assert!(
        repo.oversized_files("main", "factory/004-small", LIMIT)
            .await
            .unwrap()
            .is_empty()
    );
    // A big file in a later commit of the branch counts, even below the first commit's tip.
    commit_files(&wt, &[("later/big.bin", big.as_str())], "later");
    commit_files(&wt, &[("small.txt", "smaller\n")], "and then");
    let found = repo
        .oversized_files("main", "factory/004-small", LIMIT)
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].path, "later/big.bin");
}
