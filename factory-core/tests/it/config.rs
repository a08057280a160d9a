use std::path::Path;

use factory_core::agent::AgentRole;
use factory_core::config::{AgentKind, AgentTemplate, FactoryConfig, LimitsConfig, SandboxConfig};
use proptest::prelude::*;

#[test]
fn template_parses_to_the_defaults() {
    let text = FactoryConfig::template("main", Some("cargo test"), &AgentTemplate::Unset);
    let cfg = FactoryConfig::from_toml(&text, Path::new("config.toml")).unwrap();
    assert_eq!(cfg.max_parallel, 2);
    assert_eq!(cfg.qa.max_rounds, 3);
    assert_eq!(cfg.verify.command, "cargo test");
    assert_eq!(cfg.git.main_branch, "main");
    assert_eq!(cfg.agent.kind, AgentKind::Command);
    assert_eq!(cfg.sandbox, SandboxConfig::default());
    assert_eq!(cfg.limits, LimitsConfig::default());
}

#[test]
fn template_quotes_a_verify_command_with_backslashes_and_quotes() {
    let verify = r#"printf '%s\n' "a b" | tr '\0' x"#;
    let text = FactoryConfig::template("feature/x", Some(verify), &AgentTemplate::Unset);
    let cfg = FactoryConfig::from_toml(&text, Path::new("config.toml")).unwrap();
    assert_eq!(cfg.verify.command, verify);
    assert_eq!(cfg.git.main_branch, "feature/x");
}

#[test]
fn sandbox_writable_paths_expand_home_and_refuse_relative_ones() {
    let cfg = FactoryConfig::from_toml(
        "[sandbox]\nrequired = true\nwritable = [\"~/.m2\", \"/opt/cache\"]\n[limits]\ncaptured_output_bytes = 4096",
        Path::new("c.toml"),
    )
    .unwrap();
    assert!(cfg.sandbox.enabled && cfg.sandbox.required);
    assert_eq!(cfg.limits.captured_output_bytes, 4096);
    assert_eq!(
        cfg.sandbox.writable_paths(Some(Path::new("/home/u"))),
        [Path::new("/home/u/.m2"), Path::new("/opt/cache")]
    );
    assert_eq!(cfg.sandbox.writable_paths(None), [Path::new("/opt/cache")]);
    for (text, needle) in [
        ("[sandbox]\nwritable = [\"cache\"]", "must be absolute"),
        ("[sandbox]\nallow_all = true", "allow_all"),
        ("[limits]\ncaptured_output_bytes = 10", "at least 1024"),
    ] {
        let err = FactoryConfig::from_toml(text, Path::new("c.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains(needle), "{text}: {err}");
    }
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

proptest! {
    /// `factory init --verify 'pytest -k "not slow"'` once wrote broken TOML and a backslash
    /// changed silently: every string must read back exactly as given.
    #[test]
    fn any_verify_and_agent_command_round_trips(verify in any::<String>(), agent in any::<String>()) {
        let text = FactoryConfig::template("main", Some(&verify), &AgentTemplate::Command(agent.clone()));
        let cfg = FactoryConfig::from_toml(&text, Path::new("config.toml")).unwrap();
        prop_assert_eq!(&cfg.verify.command, &verify);
        prop_assert_eq!(cfg.agent.command.as_deref(), Some(agent.as_str()));
    }
}

#[test]
fn quotes_backslashes_and_newlines_survive_init() {
    for s in [
        r#"pytest -k "not slow""#,
        r"echo a\b \n",
        "line1\nline2",
        "tab\there",
        "'single'",
        "\"\"\"",
    ] {
        let text =
            FactoryConfig::template("main", Some(s), &AgentTemplate::Scripted("s.toml".into()));
        let cfg = FactoryConfig::from_toml(&text, Path::new("config.toml")).unwrap();
        assert_eq!(cfg.verify.command, s);
        assert_eq!(cfg.agent.kind, AgentKind::Scripted);
    }
}

#[test]
fn an_invalid_main_branch_is_refused_with_the_reason() {
    for (branch, needle) in [
        ("", "empty"),
        ("my branch", "spaces"),
        ("a..b", ".."),
        ("-x", "start with"),
        ("x.lock", ".lock"),
        ("feat/.hidden", "start with `.`"),
        ("a~1", "~"),
    ] {
        let text = format!("[git]\nmain_branch = {:?}\n", branch);
        let err = FactoryConfig::from_toml(&text, Path::new("config.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("main_branch") && err.contains(needle),
            "{branch:?}: {err}"
        );
    }
    for ok in ["main", "trunk", "release/2.x", "feature-1_b"] {
        let text = format!("[git]\nmain_branch = {ok:?}\n");
        assert!(
            FactoryConfig::from_toml(&text, Path::new("config.toml")).is_ok(),
            "{ok}"
        );
    }
}
