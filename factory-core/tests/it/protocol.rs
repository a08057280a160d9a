use factory_core::event::Verdict;
use factory_core::protocol::{PlanOutput, ReviewOutput, WorkerNotes};

#[test]
fn plan_parses_whole_output_or_last_json_line() {
    let json = r#"{"reasoning":"r","tasks":[{"key":"a","title":"A"},{"key":"b","title":"B","depends_on":["a"]}]}"#;
    let plan = PlanOutput::parse(json).unwrap();
    assert_eq!(plan.tasks.len(), 2);
    assert_eq!(plan.tasks[1].depends_on, vec!["a".to_string()]);
    let chatty = format!("thinking...\nok here it is\n{json}\n");
    assert_eq!(PlanOutput::parse(&chatty).unwrap(), plan);
}

#[test]
fn bad_plans_are_refused_with_a_pointer_to_the_docs() {
    let cases = [
        ("", "empty"),
        ("hello world", "expected one JSON object"),
        (r#"{"tasks":[]}"#, "no tasks"),
        (
            r#"{"tasks":[{"key":"a","title":""}]}"#,
            "non-empty key and title",
        ),
        (
            r#"{"tasks":[{"key":"a","title":"A"},{"key":"a","title":"B"}]}"#,
            "appears twice",
        ),
        (
            r#"{"tasks":[{"key":"a","title":"A","depends_on":["zz"]}]}"#,
            "unknown key `zz`",
        ),
        (
            r#"{"tasks":[{"key":"a","title":"A","colour":"red"}]}"#,
            "unknown field",
        ),
    ];
    for (output, needle) in cases {
        let err = PlanOutput::parse(output).unwrap_err().to_string();
        assert!(err.contains(needle), "{output:?}: {err}");
        assert!(err.contains("Agent formats"), "{err}");
    }
}

#[test]
fn review_parses_verdicts() {
    let r = ReviewOutput::parse(r#"{"verdict":"changes_requested","summary":"s","issues":["x"]}"#)
        .unwrap();
    assert_eq!(r.verdict, Verdict::ChangesRequested);
    assert_eq!(r.issues, vec!["x".to_string()]);
    assert_eq!(
        ReviewOutput::parse(r#"{"verdict":"approve"}"#)
            .unwrap()
            .verdict,
        Verdict::Approve
    );
    assert!(ReviewOutput::parse(r#"{"verdict":"maybe"}"#).is_err());
    assert!(ReviewOutput::parse("LGTM").is_err());
}

#[test]
fn worker_notes_collect_marked_lines_only() {
    let notes = WorkerNotes::parse(
        "editing\nDECISION: use a dict -- O(1) lookups\nMAIL: please check the API name\nDECISION: no reason\n",
    );
    assert_eq!(
        notes.decisions,
        vec![
            ("use a dict".into(), "O(1) lookups".into()),
            ("no reason".into(), String::new())
        ]
    );
    assert_eq!(notes.mail, vec!["please check the API name".to_string()]);
}
