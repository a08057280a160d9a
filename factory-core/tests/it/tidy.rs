//! Repository-wide rules checked as ordinary tests (after rust-analyzer's `tidy`).

use std::fs;
use std::path::{Path, PathBuf};

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn manifest(crate_dir: &str) -> toml::Table {
    let path = workspace_root().join(crate_dir).join("Cargo.toml");
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.parse()
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn dependency_names(table: &toml::Table) -> Vec<String> {
    ["dependencies", "build-dependencies"]
        .iter()
        .filter_map(|k| table.get(*k).and_then(|v| v.as_table()))
        .flat_map(|t| t.keys().cloned())
        .collect()
}

fn members() -> Vec<String> {
    let root = manifest(".");
    root["workspace"]["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn core_knows_no_database_git_or_http_crate() {
    let forbidden = [
        "sqlx",
        "gix",
        "git2",
        "axum",
        "reqwest",
        "tokio-postgres",
        "hyper",
        "rusqlite",
        "tower",
    ];
    let deps = dependency_names(&manifest("factory-core"));
    for f in forbidden {
        assert!(
            !deps.iter().any(|d| d == f),
            "factory-core must not depend on {f}"
        );
    }
    assert!(
        deps.iter().all(|d| !d.starts_with("factory-")),
        "factory-core must not depend on other factory crates: {deps:?}"
    );
}

#[test]
fn nothing_depends_on_the_frontends() {
    for member in members() {
        let all: Vec<String> = ["dependencies", "dev-dependencies", "build-dependencies"]
            .iter()
            .filter_map(|k| {
                manifest(&member)
                    .get(*k)
                    .and_then(|v| v.as_table())
                    .cloned()
            })
            .flat_map(|t| t.keys().cloned().collect::<Vec<_>>())
            .collect();
        for frontend in ["factory-cli", "factory-server"] {
            assert!(
                !all.iter().any(|d| d == frontend),
                "{member} depends on {frontend}; frontends are leaves"
            );
        }
    }
}

/// Frontends open a repository with factory-workspace and talk to `Factory`; they never reach
/// the store, git or agent implementations (or their libraries) directly.
#[test]
fn frontends_reach_the_backends_only_through_the_workspace() {
    for frontend in ["factory-cli", "factory-server"] {
        if !members().iter().any(|m| m == frontend) {
            continue;
        }
        let deps = dependency_names(&manifest(frontend));
        for backend in [
            "factory-store",
            "factory-git",
            "factory-agents",
            "sqlx",
            "gix",
        ] {
            assert!(
                !deps.iter().any(|d| d == backend),
                "{frontend} depends on {backend}; open repositories with factory-workspace and call Factory"
            );
        }
    }
}

#[test]
fn no_grab_bag_modules_or_crates() {
    for member in members() {
        assert!(
            !["utils", "common", "helpers"]
                .iter()
                .any(|b| member.contains(b)),
            "crate {member} is a grab bag"
        );
        let src = workspace_root().join(&member).join("src");
        let mut stack = vec![src];
        while let Some(dir) = stack.pop() {
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
                assert!(
                    !matches!(stem, "utils" | "util" | "common" | "helpers" | "helper"),
                    "{} is a grab-bag module; name it for what it does",
                    path.display()
                );
                if path.is_dir() {
                    stack.push(path);
                }
            }
        }
    }
}

#[test]
fn one_integration_test_binary_per_crate() {
    for member in members() {
        let tests = workspace_root().join(&member).join("tests");
        let Ok(entries) = fs::read_dir(&tests) else {
            continue;
        };
        let top_level_rs: Vec<_> = entries
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "rs"))
            .map(|e| e.path())
            .collect();
        assert!(
            top_level_rs.is_empty(),
            "{member}: put tests in tests/it/ modules, not {top_level_rs:?} (one binary per crate keeps link time down)"
        );
    }
}
