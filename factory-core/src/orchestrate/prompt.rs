//! The prompts each role receives. They carry everything the role needs, so any agent that reads
//! stdin and prints the documented format can play the role.

use crate::epic::Epic;
use crate::mail::Mail;
use crate::task::Task;

/// The planner's prompt for an epic.
pub(crate) fn planner(epic: &Epic) -> String {
    format!(
        "You are the planner of a software factory. Split the request below into small tasks that \
each end in a mergeable, tested change. Order them with `depends_on` when one needs another.\n\n\
# Request (epic {id})\n\n{text}\n\n\
# Output\n\nPrint exactly one JSON object and nothing else:\n\
{{\"reasoning\": \"why this split\", \"tasks\": [{{\"key\": \"short-key\", \"title\": \"one line\", \
\"description\": \"what to build\", \"acceptance\": [\"checkable condition\"], \"depends_on\": [\"other-key\"]}}]}}\n",
        id = epic.id,
        text = epic.text.trim()
    )
}

/// `intro`, then the task's title, description and acceptance criteria.
fn task_section(intro: &str, task: &Task) -> String {
    let mut p = format!(
        "{intro}\n\n# Task {spec}: {title}\n\n{desc}\n\n## Acceptance criteria\n",
        spec = task.spec_id,
        title = task.title,
        desc = task.description.trim(),
    );
    for a in &task.acceptance {
        p.push_str(&format!("- {a}\n"));
    }
    p
}

/// The worker's prompt for one round.
pub(crate) fn worker(task: &Task, round: u32, fix_request: Option<&str>, mail: &[Mail]) -> String {
    let intro = format!(
        "You are a worker in a software factory. Implement the task below by editing files in the \
current directory (a git worktree on branch {}). Do not commit; Factory commits for you. \
Add or update tests so the project's test command passes.",
        task.spec_id.branch()
    );
    let mut p = task_section(&intro, task);
    p.push_str(&format!("\n# Round {round}\n"));
    if let Some(fix) = fix_request {
        if fix.starts_with(super::conflict::CONFLICT_HEADING) {
            p.push_str("\nYour change conflicts with the main branch (QA_FIX_REQUEST.md):\n\n");
        } else {
            p.push_str("\nQA asked for changes (QA_FIX_REQUEST.md):\n\n");
        }
        p.push_str(fix.trim());
        p.push('\n');
    }
    if !mail.is_empty() {
        p.push_str("\n# Messages for you\n");
        for m in mail {
            p.push_str(&format!(
                "\nFrom {}: {}\n{}\n",
                m.from,
                m.subject,
                m.body.trim()
            ));
        }
    }
    p.push_str(
        "\n# Output\n\nFree text. Optional lines: `DECISION: <what> -- <why>` (decision log) and \
`MAIL: <text>` (a message to the human).\n",
    );
    p
}

/// The reviewer's prompt for one round.
pub(crate) fn reviewer(task: &Task, round: u32, changed: &[String]) -> String {
    let intro = format!(
        "You are the reviewer in a software factory. Judge whether the change on this worktree \
(branch {}) meets the task. The project's test command runs separately.",
        task.spec_id.branch()
    );
    let mut p = task_section(&intro, task);
    p.push_str(&format!("\n# Round {round}: files changed against main\n"));
    for f in changed {
        p.push_str(&format!("- {f}\n"));
    }
    p.push_str(
        "\n# Output\n\nPrint exactly one JSON object: {\"verdict\": \"approve\" | \
\"changes_requested\", \"summary\": \"one paragraph\", \"issues\": [\"what must change\"]}\n",
    );
    p
}
