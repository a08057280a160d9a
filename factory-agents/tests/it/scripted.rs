//! ScriptedAgent and AgentScript: plan, worker rounds and edits, reviews, TOML, errors.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use factory_agents::{
    AgentScript, EditAction, FileEdit, SAW_FIX_REQUEST, ScriptError, ScriptedAgent, ScriptedReview,
    ScriptedRound, ScriptedTask,
};
use factory_core::agent::AgentRole;
use factory_core::event::Verdict;
use factory_core::ports::{AgentBackend, AgentError, TranscriptKind};
use factory_core::protocol::{PlanOutput, ReviewOutput, WorkerNotes};
use factory_core::spec::artifact::QA_FIX_REQUEST_MD;

use crate::fixture::{FixedClock, planner_request, task_dirs, task_request};

const SCRIPT: &str = r#"
[plan]
reasoning = "Greeting first; the CLI uses it."

[[plan.tasks]]
key = "greeting"
title = "Add greeting module"
description = "greet(name)"
acceptance = ["greet('Ada') == 'Hello, Ada!'"]

[[plan.tasks]]
key = "cli"
title = "Add CLI"
depends_on = ["greeting"]

[[tasks.greeting.rounds]]
notes = ["DECISION: own module -- keeps main small", "MAIL: round one done"]

[[tasks.greeting.rounds.edits]]
path = "src/greeting.py"
write = "def greet(n):\n    return n\n"

[[tasks.greeting.rounds.edits]]
path = "NOTES.md"
append = "round\n"

[[tasks.greeting.rounds.edits]]
path = "old.txt"
write = "old\n"

[[tasks.greeting.rounds]]
notes = ["DECISION: f-string -- clearer"]

[[tasks.greeting.rounds.edits]]
path = "./src/greeting.py"
write = "def greet(n):\n    return f'Hello, {n}!'\n"

[[tasks.greeting.rounds.edits]]
path = "NOTES.md"
append = "round\n"

[[tasks.greeting.rounds.edits]]
path = "old.txt"
delete = true

[[tasks.greeting.reviews]]
verdict = "changes_requested"
summary = "greet returns the bare name."
issues = ["Return 'Hello, <name>!'"]

[[tasks.greeting.reviews]]
verdict = "approve"
summary = "Looks right."

[[tasks.cli.rounds]]
fail = "the model gave up"

[[tasks.cli.rounds.edits]]
path = "cli.py"
write = "print('half')\n"

[[tasks.cli.reviews]]
raw_output = "LGTM!"
"#;

fn agent(clock: Arc<FixedClock>) -> ScriptedAgent {
    ScriptedAgent::new(
        AgentScript::from_toml_str(SCRIPT, Path::new("test-script.toml")).unwrap(),
        clock,
    )
}

fn read(dir: &Path, file: &str) -> String {
    std::fs::read_to_string(dir.join(file)).unwrap()
}

#[tokio::test]
async fn planner_prints_a_plan_that_parses() {
    let repo = tempfile::tempdir().unwrap();
    let clock = Arc::new(FixedClock::new());
    let agent = agent(clock.clone());
    assert_eq!(agent.name(), "scripted");
    let response = agent.run(planner_request(repo.path())).await.unwrap();
    let plan = PlanOutput::parse(&response.output).unwrap();
    assert_eq!(plan.reasoning, "Greeting first; the CLI uses it.");
    let keys: Vec<&str> = plan.tasks.iter().map(|t| t.key.as_str()).collect();
    assert_eq!(keys, ["greeting", "cli"]);
    assert_eq!(plan.tasks[1].depends_on, ["greeting"]);
    assert_eq!(plan.tasks[0].acceptance, ["greet('Ada') == 'Hello, Ada!'"]);

    let t = &response.transcript;
    assert_eq!(t[0].kind, TranscriptKind::Prompt);
    assert_eq!(t[1].kind, TranscriptKind::Stdout);
    assert_eq!(t[1].text, response.output.trim());
    assert_eq!(t[2].kind, TranscriptKind::Exit);
    // Zero time, by the clock.
    assert_eq!(t[2].text, "exit 0 in 0 ms");
    assert!(t.iter().all(|e| e.at == clock.0));
}

#[tokio::test]
async fn worker_rounds_apply_their_edits_and_the_last_repeats() {
    let dirs = task_dirs();
    let agent = agent(Arc::new(FixedClock::new()));
    let w = &dirs.workdir;

    let r1 = agent
        .run(task_request(
            AgentRole::Worker,
            "greeting",
            1,
            w,
            &dirs.spec_dir,
        ))
        .await
        .unwrap();
    assert_eq!(read(w, "src/greeting.py"), "def greet(n):\n    return n\n");
    assert_eq!(read(w, "NOTES.md"), "round\n");
    assert_eq!(read(w, "old.txt"), "old\n");
    let notes = WorkerNotes::parse(&r1.output);
    assert_eq!(
        notes.decisions,
        [("own module".to_owned(), "keeps main small".to_owned())]
    );
    assert_eq!(notes.mail, ["round one done"]);
    let edits: Vec<&str> = r1
        .transcript
        .iter()
        .filter(|e| e.kind == TranscriptKind::Edit)
        .map(|e| e.text.as_str())
        .collect();
    assert_eq!(
        edits,
        [
            "write src/greeting.py (27 bytes)",
            "append NOTES.md (6 bytes)",
            "write old.txt (4 bytes)"
        ]
    );

    let r2 = agent
        .run(task_request(
            AgentRole::Worker,
            "greeting",
            2,
            w,
            &dirs.spec_dir,
        ))
        .await
        .unwrap();
    assert_eq!(
        read(w, "src/greeting.py"),
        "def greet(n):\n    return f'Hello, {n}!'\n"
    );
    assert_eq!(read(w, "NOTES.md"), "round\nround\n");
    assert!(!w.join("old.txt").exists());
    assert_eq!(
        WorkerNotes::parse(&r2.output).decisions[0].0,
        "f-string".to_owned()
    );

    // Round 3 has no entry: round 2 repeats (append again; the delete is still fine).
    let r3 = agent
        .run(task_request(
            AgentRole::Worker,
            "greeting",
            3,
            w,
            &dirs.spec_dir,
        ))
        .await
        .unwrap();
    assert_eq!(read(w, "NOTES.md"), "round\nround\nround\n");
    assert!(r3.output.contains("DECISION: f-string -- clearer"));
    assert!(
        r3.transcript
            .iter()
            .any(|e| e.kind == TranscriptKind::Edit && e.text == "delete old.txt (already absent)")
    );
}

#[tokio::test]
async fn worker_reports_whether_the_fix_request_existed_at_round_start() {
    let dirs = task_dirs();
    let agent = agent(Arc::new(FixedClock::new()));
    let saw = |r: &factory_core::ports::AgentResponse| {
        r.transcript
            .iter()
            .any(|e| e.kind == TranscriptKind::Stdout && e.text == SAW_FIX_REQUEST)
    };

    let r1 = agent
        .run(task_request(
            AgentRole::Worker,
            "greeting",
            1,
            &dirs.workdir,
            &dirs.spec_dir,
        ))
        .await
        .unwrap();
    assert!(
        !r1.output.contains("saw QA_FIX_REQUEST.md"),
        "{}",
        r1.output
    );
    assert!(
        r1.output.contains("NOTE: no QA_FIX_REQUEST.md"),
        "{}",
        r1.output
    );
    assert!(!saw(&r1));

    std::fs::write(dirs.spec_dir.join(QA_FIX_REQUEST_MD), "fix it\n").unwrap();
    let r2 = agent
        .run(task_request(
            AgentRole::Worker,
            "greeting",
            2,
            &dirs.workdir,
            &dirs.spec_dir,
        ))
        .await
        .unwrap();
    assert!(
        r2.output
            .lines()
            .any(|l| l == "NOTE: saw QA_FIX_REQUEST.md"),
        "{}",
        r2.output
    );
    assert!(saw(&r2));
    // The note is not mistaken for a decision or mail.
    assert_eq!(WorkerNotes::parse(&r2.output).decisions.len(), 1);
}

#[tokio::test]
async fn edit_paths_that_leave_the_worktree_are_refused() {
    for bad in [
        "../outside.txt",
        "src/../../outside.txt",
        "/tmp/factory-escape.txt",
        "",
    ] {
        let dirs = task_dirs();
        let script = AgentScript {
            plan: None,
            tasks: [(
                "t".to_owned(),
                ScriptedTask {
                    rounds: vec![ScriptedRound {
                        edits: vec![
                            FileEdit {
                                path: PathBuf::from("fine.txt"),
                                action: EditAction::Write("ok".into()),
                            },
                            FileEdit {
                                path: PathBuf::from(bad),
                                action: EditAction::Write("escaped".into()),
                            },
                        ],
                        ..ScriptedRound::default()
                    }],
                    reviews: Vec::new(),
                },
            )]
            .into(),
        };
        // Refused when loading from TOML…
        let toml = script.to_toml_string().unwrap();
        let err = AgentScript::from_toml_str(&toml, Path::new("bad.toml")).unwrap_err();
        assert!(matches!(err, ScriptError::Invalid { .. }), "{bad}: {err:?}");
        assert!(err.to_string().contains("bad.toml"), "{err}");

        // …and when a script built in code runs, before any edit is made.
        let agent = ScriptedAgent::new(script, Arc::new(FixedClock::new()));
        let err = agent
            .run(task_request(
                AgentRole::Worker,
                "t",
                1,
                &dirs.workdir,
                &dirs.spec_dir,
            ))
            .await
            .unwrap_err();
        match err {
            AgentError::Script(msg) => assert!(msg.contains("edit path"), "{bad}: {msg}"),
            other => panic!("{bad}: expected Script, got {other:?}"),
        }
        assert!(
            !dirs.workdir.join("fine.txt").exists(),
            "{bad}: partial edits"
        );
        assert!(!dirs.workdir.parent().unwrap().join("outside.txt").exists());
    }
    assert!(!Path::new("/tmp/factory-escape.txt").exists());
}

#[tokio::test]
async fn reviewer_prints_a_review_that_parses_and_the_last_repeats() {
    let dirs = task_dirs();
    let agent = agent(Arc::new(FixedClock::new()));
    let review = |round| {
        let agent = &agent;
        let request = task_request(
            AgentRole::Reviewer,
            "greeting",
            round,
            &dirs.workdir,
            &dirs.spec_dir,
        );
        async move { ReviewOutput::parse(&agent.run(request).await.unwrap().output).unwrap() }
    };
    let r1 = review(1).await;
    assert_eq!(r1.verdict, Verdict::ChangesRequested);
    assert_eq!(r1.summary, "greet returns the bare name.");
    assert_eq!(r1.issues, ["Return 'Hello, <name>!'"]);
    let r2 = review(2).await;
    assert_eq!(r2.verdict, Verdict::Approve);
    assert!(r2.issues.is_empty());
    assert_eq!(review(5).await, r2);
}

#[tokio::test]
async fn raw_output_is_printed_verbatim() {
    let dirs = task_dirs();
    let agent = agent(Arc::new(FixedClock::new()));
    let response = agent
        .run(task_request(
            AgentRole::Reviewer,
            "cli",
            1,
            &dirs.workdir,
            &dirs.spec_dir,
        ))
        .await
        .unwrap();
    assert_eq!(response.output, "LGTM!");
    assert!(ReviewOutput::parse(&response.output).is_err());
}

#[tokio::test]
async fn fail_applies_the_edits_then_exits_non_zero() {
    let dirs = task_dirs();
    let agent = agent(Arc::new(FixedClock::new()));
    let err = agent
        .run(task_request(
            AgentRole::Worker,
            "cli",
            1,
            &dirs.workdir,
            &dirs.spec_dir,
        ))
        .await
        .unwrap_err();
    match err {
        AgentError::Exited {
            code,
            stderr,
            stdout,
        } => {
            assert_eq!(code, Some(1));
            assert_eq!(stderr, "the model gave up");
            assert_eq!(stdout, "NOTE: no QA_FIX_REQUEST.md\n");
        }
        other => panic!("expected Exited, got {other:?}"),
    }
    assert_eq!(read(&dirs.workdir, "cli.py"), "print('half')\n");
}

#[tokio::test]
async fn unknown_or_missing_task_key_is_a_script_error() {
    let dirs = task_dirs();
    let agent = agent(Arc::new(FixedClock::new()));
    let err = agent
        .run(task_request(
            AgentRole::Worker,
            "nope",
            1,
            &dirs.workdir,
            &dirs.spec_dir,
        ))
        .await
        .unwrap_err();
    match &err {
        AgentError::Script(msg) => {
            assert!(msg.contains("[tasks.nope]"), "{msg}");
            assert!(msg.contains("cli, greeting"), "{msg}");
        }
        other => panic!("expected Script, got {other:?}"),
    }

    let mut request = task_request(AgentRole::Reviewer, "x", 1, &dirs.workdir, &dirs.spec_dir);
    request.task_key = None;
    let err = agent.run(request).await.unwrap_err();
    assert!(
        matches!(&err, AgentError::Script(m) if m.contains("task key")),
        "{err:?}"
    );

    // A script without [plan] cannot plan.
    let empty = ScriptedAgent::new(AgentScript::default(), Arc::new(FixedClock::new()));
    let err = empty.run(planner_request(&dirs.workdir)).await.unwrap_err();
    assert!(
        matches!(&err, AgentError::Script(m) if m.contains("[plan]")),
        "{err:?}"
    );
}

#[test]
fn toml_round_trip_keeps_everything() {
    let script = AgentScript::from_toml_str(SCRIPT, Path::new("s.toml")).unwrap();
    let text = script.to_toml_string().unwrap();
    let again = AgentScript::from_toml_str(&text, Path::new("s2.toml")).unwrap();
    assert_eq!(again, script);

    // Built in code, with every kind of entry.
    let built = AgentScript {
        plan: Some(factory_agents::ScriptedPlan {
            reasoning: "r".into(),
            tasks: script.plan.as_ref().unwrap().tasks.clone(),
            fail: None,
            raw_output: Some("not json".into()),
        }),
        tasks: [(
            "k".to_owned(),
            ScriptedTask {
                rounds: vec![ScriptedRound {
                    notes: vec!["MAIL: hi".into()],
                    edits: vec![
                        FileEdit {
                            path: "a/b.txt".into(),
                            action: EditAction::Append("x\ny\n".into()),
                        },
                        FileEdit {
                            path: "c".into(),
                            action: EditAction::Delete,
                        },
                    ],
                    fail: Some("boom".into()),
                    raw_output: None,
                }],
                reviews: vec![ScriptedReview {
                    verdict: Some(Verdict::Approve),
                    summary: "fine".into(),
                    issues: vec!["none really".into()],
                    ..ScriptedReview::default()
                }],
            },
        )]
        .into(),
    };
    let text = built.to_toml_string().unwrap();
    assert!(text.contains("delete = true"), "{text}");
    assert_eq!(
        AgentScript::from_toml_str(&text, Path::new("b.toml")).unwrap(),
        built
    );
}

#[test]
fn invalid_scripts_are_refused_with_the_file_named() {
    let cases = [
        (
            "[[tasks.t.rounds]]\n[[tasks.t.rounds.edits]]\npath = \"a\"\nwrite = \"x\"\ndelete = true\n",
            "exactly one of",
        ),
        (
            "[[tasks.t.rounds]]\n[[tasks.t.rounds.edits]]\npath = \"a\"\n",
            "exactly one of",
        ),
        ("[[tasks.t.rounds]]\nnotez = [\"typo\"]\n", "notez"),
        ("[[tasks.t.reviews]]\nsummary = \"no verdict\"\n", "verdict"),
        ("[[tasks.t.reviews]]\nverdict = \"maybe\"\n", "maybe"),
        ("[plan]\nreasoning = 1\n", "reasoning"),
    ];
    for (text, expected) in cases {
        let err = AgentScript::from_toml_str(text, Path::new("my-script.toml")).unwrap_err();
        let msg = err.to_string();
        assert!(
            matches!(err, ScriptError::Invalid { .. }),
            "{text}: {err:?}"
        );
        assert!(msg.contains("my-script.toml"), "{msg}");
        assert!(msg.contains(expected), "{text}: {msg}");
    }
}

#[test]
fn load_reads_a_file_and_names_it_when_missing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("script.toml");
    std::fs::write(&path, SCRIPT).unwrap();
    let loaded = AgentScript::load(&path).unwrap();
    assert_eq!(loaded.tasks.len(), 2);

    let missing = dir.path().join("missing.toml");
    let err = AgentScript::load(&missing).unwrap_err();
    assert!(matches!(err, ScriptError::Read { .. }), "{err:?}");
    assert!(err.to_string().contains("missing.toml"), "{err}");
}
