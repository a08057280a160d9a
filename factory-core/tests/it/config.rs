use std::path::Path;

use factory_core::agent::AgentRole;
use factory_core::config::{AgentKind, FactoryConfig};

#[test]
fn template_parses_to_the_defaults() {
    let text = FactoryConfig::template("main", Some("cargo test"));
    let cfg = FactoryConfig::from_toml(&text, Path::new("config.toml")).unwrap();
    assert_eq!(cfg.max_parallel, 2);
    assert_eq!(cfg.qa.max_rounds, 3);
    assert_eq!(cfg.verify.command, "cargo test");
    assert_eq!(cfg.git.main_branch, "main");
    assert_eq!(cfg.agent.kind, AgentKind::Command);
}

#[test]
fn role_overrides_fall_back_to_the_default_agent() {
    let text = r#"
[agent]
kind = "command"
command = "default-agent"
[agent.reviewer]
command = "strict-reviewer"
timeout_secs = 5
"#;
    let cfg = FactoryConfig::from_toml(text, Path::new("c.toml")).unwrap();
    let reviewer = cfg.agent.for_role(AgentRole::Reviewer);
    assert_eq!(reviewer.command.as_deref(), Some("strict-reviewer"));
    assert_eq!(reviewer.timeout_secs, 5);
    let worker = cfg.agent.for_role(AgentRole::Worker);
    assert_eq!(worker.command.as_deref(), Some("default-agent"));
    assert_eq!(worker.timeout_secs, 1800);
}

#[test]
fn typos_and_bad_values_are_refused_with_the_file_name() {
    for (text, needle) in [
        ("max_paralel = 3", "max_paralel"),
        ("max_parallel = 0", "at least 1"),
        ("[qa]\nmax_rounds = 0", "max_rounds"),
        ("[agent]\nkind = \"robot\"", "robot"),
        ("[git]\nmain_branch = \"\"", "main_branch"),
    ] {
        let err = FactoryConfig::from_toml(text, Path::new("/x/.factory/config.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains(needle), "{text}: {err}");
        assert!(err.contains("/x/.factory/config.toml"), "{err}");
    }
}
