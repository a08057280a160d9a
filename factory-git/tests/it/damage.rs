//! Task worktrees an agent damaged: every git call on a worktree is pinned to it, and a
//! worktree that is no longer the task's worktree on the task's branch is reported as damage
//! instead of being committed from (or, worse, letting git find the user's repository above it).

use std::path::Path;

use factory_core::ports::{Vcs, VcsError, WorktreeDamage};

use crate::fixture::{Fixture, git_in};

/// Everything that would show a stray commit or a touched checkout: every ref, the user's HEAD,
/// index and working-tree status, and the content of their dirty file.
#[derive(Debug, PartialEq, Eq)]
struct RepoState {
    refs: String,
    head: String,
    status: String,
    staged: String,
    dirty_file: Vec<u8>,
}

fn repo_state(fx: &Fixture) -> RepoState {
    RepoState {
        refs: fx.git(&["for-each-ref", "--format=%(refname) %(objectname)"]),
        head: fx.git(&["symbolic-ref", "HEAD"]),
        status: fx.git(&["status", "--porcelain"]),
        staged: fx.git(&["diff", "--cached"]),
        dirty_file: fx.read("a.txt"),
    }
}

/// A user with uncommitted work in their checkout and a task worktree the agent has edited.
async fn user_and_task(fx: &Fixture, name: &str) -> std::path::PathBuf {
    let repo = fx.repo();
    let path = fx.task_dir(name);
    repo.create_worktree(&path, &format!("factory/{name}"), "main")
        .await
        .unwrap();
    std::fs::write(path.join("agent.txt"), "agent work\n").unwrap();
    fx.write("a.txt", "the user's uncommitted edit\n");
    fx.write("notes.txt", "the user's untracked notes\n");
    path
}

fn damage(err: VcsError, path: &Path) -> WorktreeDamage {
    match err {
        VcsError::WorktreeDamaged { path: at, damage } => {
            assert_eq!(at, path);
            damage
        }
        other => panic!("expected WorktreeDamaged, got {other:?}"),
    }
}

/// Issue item 1: the agent ran `rm -f .git` in its worktree. Before the fix, `git add --all` and
/// `git commit` found the user's repository above the worktree and committed the user's
/// uncommitted work onto main.
#[tokio::test]
async fn a_worktree_without_its_git_file_is_damaged_and_nothing_is_committed_anywhere() {
    let fx = Fixture::new();
    let repo = fx.repo();
    let path = user_and_task(&fx, "040-rmgit").await;
    std::fs::remove_file(path.join(".git")).unwrap();
    let before = repo_state(&fx);

    let err = repo
        .commit_all(&path, "factory/040-rmgit", "round 1")
        .await
        .unwrap_err();
    assert!(
        matches!(damage(err, &path), WorktreeDamage::NotAWorktree { detail } if detail.contains(".git file is gone"))
    );
    assert_eq!(repo_state(&fx), before, "no commit, no touched checkout");
    assert_eq!(fx.rev("factory/040-rmgit"), fx.rev("main"));

    let err = repo
        .update_branch(&path, "factory/040-rmgit", "main")
        .await
        .unwrap_err();
    assert!(matches!(
        damage(err, &path),
        WorktreeDamage::NotAWorktree { .. }
    ));
    assert_eq!(repo_state(&fx), before);
}

#[tokio::test]
async fn a_repository_created_in_place_of_the_git_file_is_damage() {
    let fx = Fixture::new();
    let repo = fx.repo();
    let path = user_and_task(&fx, "041-init").await;
    std::fs::remove_file(path.join(".git")).unwrap();
    git_in(&path, &["init", "-q"]);
    let before = repo_state(&fx);

    let err = repo
        .commit_all(&path, "factory/041-init", "round 1")
        .await
        .unwrap_err();
    assert!(
        matches!(damage(err, &path), WorktreeDamage::NotAWorktree { detail } if detail.contains("is a directory"))
    );
    assert_eq!(repo_state(&fx), before);
    assert!(
        crate::fixture::git_output(&path, &["rev-parse", "-q", "--verify", "HEAD"])
            .status
            .success()
            .eq(&false),
        "nothing was committed in the agent's repository either"
    );
}

/// Issue item 3: an agent that checked out another branch, or detached HEAD, must not have the
/// base commit (or anything else) committed and merged for it.
#[tokio::test]
async fn a_worktree_whose_head_left_the_task_branch_is_damage_naming_where_it_went() {
    let fx = Fixture::new();
    let repo = fx.repo();
    let path = user_and_task(&fx, "042-away").await;
    git_in(&path, &["checkout", "-q", "-b", "elsewhere"]);
    let before = repo_state(&fx);
    let err = repo
        .commit_all(&path, "factory/042-away", "round 1")
        .await
        .unwrap_err();
    assert_eq!(
        damage(err, &path),
        WorktreeDamage::WrongBranch {
            head: "refs/heads/elsewhere".into()
        }
    );
    assert_eq!(repo_state(&fx), before);

    git_in(&path, &["checkout", "-q", "--detach"]);
    let err = repo
        .update_branch(&path, "factory/042-away", "main")
        .await
        .unwrap_err();
    assert_eq!(damage(err, &path), WorktreeDamage::DetachedHead);
    assert_eq!(
        repo.worktree_damage(&path, "factory/042-away")
            .await
            .unwrap(),
        Some(WorktreeDamage::DetachedHead)
    );
    git_in(&path, &["checkout", "-q", "factory/042-away"]);
    assert_eq!(
        repo.worktree_damage(&path, "factory/042-away")
            .await
            .unwrap(),
        None
    );
}

/// Issue item 6: a nested repository would be committed as a gitlink to a commit nobody has.
#[tokio::test]
async fn a_nested_repository_in_a_worktree_is_damage_naming_its_path() {
    let fx = Fixture::new();
    let repo = fx.repo();
    let path = user_and_task(&fx, "043-nested").await;
    std::fs::create_dir_all(path.join("vendor/lib")).unwrap();
    git_in(&path.join("vendor/lib"), &["init", "-q"]);
    std::fs::write(path.join("vendor/lib/x.txt"), "x\n").unwrap();
    let before = repo_state(&fx);

    let err = repo
        .commit_all(&path, "factory/043-nested", "round 1")
        .await
        .unwrap_err();
    let found = damage(err, &path);
    assert!(
        matches!(&found, WorktreeDamage::NestedRepository { path } if path.trim_end_matches('/') == "vendor/lib"),
        "{found:?}"
    );
    assert!(found.to_string().contains("vendor/lib"));
    assert_eq!(repo_state(&fx), before);
    assert_eq!(fx.rev("factory/043-nested"), fx.rev("main"));

    // Once it is gone, the worktree commits normally.
    std::fs::remove_dir_all(path.join("vendor")).unwrap();
    let commit = repo
        .commit_all(&path, "factory/043-nested", "round 2")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(commit.0, fx.rev("factory/043-nested"));
}

/// Issue item 6: an agent deleting its worktree is that task's problem, not an error that ends
/// the run.
#[tokio::test]
async fn a_deleted_worktree_is_damage() {
    let fx = Fixture::new();
    let repo = fx.repo();
    let path = user_and_task(&fx, "044-gone").await;
    std::fs::remove_dir_all(&path).unwrap();
    let before = repo_state(&fx);
    let err = repo
        .commit_all(&path, "factory/044-gone", "round 1")
        .await
        .unwrap_err();
    assert_eq!(damage(err, &path), WorktreeDamage::Missing);
    let err = repo
        .update_branch(&path, "factory/044-gone", "main")
        .await
        .unwrap_err();
    assert_eq!(damage(err, &path), WorktreeDamage::Missing);
    assert_eq!(repo_state(&fx), before);
}

/// A `.git` file pointing at another worktree's registration is not this task's worktree.
#[tokio::test]
async fn a_git_file_pointing_elsewhere_is_damage() {
    let fx = Fixture::new();
    let repo = fx.repo();
    let path = user_and_task(&fx, "045-a").await;
    let other = fx.task_dir("045-b");
    repo.create_worktree(&other, "factory/045-b", "main")
        .await
        .unwrap();
    std::fs::copy(other.join(".git"), path.join(".git")).unwrap();
    let err = repo
        .commit_all(&path, "factory/045-a", "round 1")
        .await
        .unwrap_err();
    assert!(matches!(
        damage(err, &path),
        WorktreeDamage::NotAWorktree { detail } if detail.contains("points to")
    ));
    assert_eq!(fx.rev("factory/045-b"), fx.rev("main"));
}

/// Issue item 4 (the git side): an agent that commits its own work leaves nothing for
/// `commit_all`, but the branch's tip moved; that is what counts as a change.
#[tokio::test]
async fn work_the_agent_committed_itself_shows_as_a_moved_tip() {
    let fx = Fixture::new();
    let repo = fx.repo();
    let path = fx.task_dir("046-self");
    repo.create_worktree(&path, "factory/046-self", "main")
        .await
        .unwrap();
    let before = repo.branch_head("factory/046-self").await.unwrap();
    std::fs::write(path.join("mine.txt"), "committed by the agent\n").unwrap();
    git_in(&path, &["add", "mine.txt"]);
    git_in(&path, &["commit", "-q", "-m", "agent's own commit"]);

    assert_eq!(
        repo.commit_all(&path, "factory/046-self", "round 1")
            .await
            .unwrap(),
        None
    );
    let after = repo.branch_head("factory/046-self").await.unwrap();
    assert_ne!(after, before);
    assert_eq!(
        repo.changed_paths("main", "factory/046-self")
            .await
            .unwrap(),
        ["mine.txt"]
    );
}

/// Issue item 6: repositories with submodules get them checked out in every task worktree, and
/// a submodule is not mistaken for a nested repository.
#[tokio::test]
async fn submodules_are_checked_out_in_a_new_worktree_and_are_not_damage() {
    let lib = Fixture::new();
    lib.write("lib.txt", "library\n");
    lib.git(&["add", "-A"]);
    lib.git(&["commit", "-q", "-m", "lib"]);
    let fx = Fixture::new();
    // Local file URLs for submodules are off by default since git 2.38.1; this repository
    // allows them in its own configuration, which Factory passes on to the submodule clones.
    fx.git(&["config", "protocol.file.allow", "always"]);
    fx.git(&[
        "-c",
        "protocol.file.allow=always",
        "submodule",
        "add",
        "-q",
        lib.root.to_str().unwrap(),
        "deps/lib",
    ]);
    fx.git(&["commit", "-q", "-m", "add submodule"]);
    let repo = fx.repo();
    let path = fx.task_dir("047-sub");
    repo.create_worktree(&path, "factory/047-sub", "main")
        .await
        .unwrap();

    assert_eq!(
        std::fs::read(path.join("deps/lib/lib.txt")).unwrap(),
        b"library\n"
    );
    assert_eq!(
        repo.worktree_damage(&path, "factory/047-sub")
            .await
            .unwrap(),
        None
    );
    std::fs::write(path.join("uses_lib.txt"), "x\n").unwrap();
    let commit = repo
        .commit_all(&path, "factory/047-sub", "round 1")
        .await
        .unwrap()
        .unwrap();
    let files = git_in(&path, &["show", "--name-only", "--format=", &commit.0]);
    assert_eq!(files, "uses_lib.txt\n");
}
