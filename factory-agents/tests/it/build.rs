//! build_backend: config to backend, and the errors that tell the user what to set.

use std::path::PathBuf;
use std::sync::Arc;

use factory_agents::{BuildError, ScriptError, build_backend};
use factory_core::agent::AgentRole;
use factory_core::config::{AgentConfig, AgentKind, AgentOverride, RoleAgent};
use factory_core::protocol::PlanOutput;

use crate::fixture::{FixedClock, planner_request, process_sandbox};

fn role(kind: AgentKind, command: Option<&str>, script: Option<&str>) -> RoleAgent {
    RoleAgent {
        role: AgentRole::Worker,
        kind,
        command: command.map(str::to_owned),
        script: script.map(PathBuf::from),
        timeout_secs: 10,
    }
}

#[test]
fn command_kind_without_command_says_what_to_set() {
    let dir = tempfile::tempdir().unwrap();
    for command in [None, Some("  ")] {
        let err = build_backend(
            &role(AgentKind::Command, command, None),
            dir.path(),
            Arc::new(FixedClock::new()),
            &process_sandbox(),
        )
        .err()
        .unwrap();
        assert!(matches!(err, BuildError::MissingCommand(AgentRole::Worker)));
        assert_eq!(
            err.to_string(),
            "no agent command configured for the worker role: set [agent] command (or [agent.worker] command) in .factory/config.toml"
        );
    }
}

#[test]
fn scripted_kind_needs_a_readable_valid_script() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(FixedClock::new());

    let err = build_backend(
        &role(AgentKind::Scripted, None, None),
        dir.path(),
        clock.clone(),
        &process_sandbox(),
    )
    .err()
    .unwrap();
    assert!(matches!(err, BuildError::MissingScript(AgentRole::Worker)));
    assert!(err.to_string().contains("[agent.worker] script"), "{err}");

    let err = build_backend(
        &role(AgentKind::Scripted, None, Some("absent.toml")),
        dir.path(),
        clock.clone(),
        &process_sandbox(),
    )
    .err()
    .unwrap();
    assert!(
        matches!(err, BuildError::Script(ScriptError::Read { .. })),
        "{err:?}"
    );
    let expected = dir.path().join("absent.toml");
    assert!(
        err.to_string().contains(&expected.display().to_string()),
        "{err}"
    );

    std::fs::write(dir.path().join("broken.toml"), "[plan\n").unwrap();
    let err = build_backend(
        &role(AgentKind::Scripted, None, Some("broken.toml")),
        dir.path(),
        clock,
        &process_sandbox(),
    )
    .err()
    .unwrap();
    assert!(
        matches!(err, BuildError::Script(ScriptError::Invalid { .. })),
        "{err:?}"
    );
    assert!(err.to_string().contains("broken.toml"), "{err}");
}

#[tokio::test]
async fn configured_backends_are_built_and_run() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("script.toml"),
        "[plan]\n[[plan.tasks]]\nkey = \"a\"\ntitle = \"A\"\n",
    )
    .unwrap();
    let clock = Arc::new(FixedClock::new());
    // The per-role override picks the kind and script; the relative path is under factory_dir.
    let config = AgentConfig {
        command: Some("printf '{\"tasks\":[{\"key\":\"c\",\"title\":\"C\"}]}'".into()),
        planner: Some(AgentOverride {
            kind: Some(AgentKind::Scripted),
            script: Some("script.toml".into()),
            ..AgentOverride::default()
        }),
        ..AgentConfig::default()
    };

    let planner = build_backend(
        &config.for_role(AgentRole::Planner),
        dir.path(),
        clock.clone(),
        &process_sandbox(),
    )
    .unwrap();
    assert_eq!(planner.name(), "scripted");
    let plan = PlanOutput::parse(
        &planner
            .run(planner_request(dir.path()))
            .await
            .unwrap()
            .output,
    )
    .unwrap();
    assert_eq!(plan.tasks[0].key, "a");

    let worker = build_backend(
        &config.for_role(AgentRole::Worker),
        dir.path(),
        clock,
        &process_sandbox(),
    )
    .unwrap();
    assert_eq!(worker.name(), "command");
    let plan = PlanOutput::parse(
        &worker
            .run(planner_request(dir.path()))
            .await
            .unwrap()
            .output,
    )
    .unwrap();
    assert_eq!(plan.tasks[0].key, "c");
}
