//! Runs driven through a workspace while other handles on the repository change it, as other
//! `factory` commands would from another terminal.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use factory_core::agent::AgentRole;
use factory_core::orchestrate::RoleBackends;
use factory_core::ports::{AgentBackend, AgentError, AgentRequest, AgentResponse};
use factory_core::task::TaskState;
use factory_workspace::Workspace;

use crate::open::{options, repo};

/// Plans `a`, then `b` and `c` after it. `a`'s worker cancels `c` through a handle of its own
/// while `c` waits for `a`.
struct CancelsAWaitingTask {
    dir: PathBuf,
}

#[async_trait]
impl AgentBackend for CancelsAWaitingTask {
    fn name(&self) -> &str {
        "cancels-a-waiting-task"
    }

    async fn run(&self, request: AgentRequest) -> Result<AgentResponse, AgentError> {
        let output = match request.role {
            AgentRole::Planner => r#"{"tasks": [
                {"key": "a", "title": "First"},
                {"key": "b", "title": "Second", "depends_on": ["a"]},
                {"key": "c", "title": "Third", "depends_on": ["a"]}
            ]}"#
            .to_owned(),
            AgentRole::Worker => {
                let key = request.task_key.clone().unwrap_or_default();
                std::fs::write(request.workdir.join(format!("{key}.txt")), "x\n").unwrap();
                if key == "a" {
                    let other = Workspace::open_with_agents(&self.dir, idle_agents())
                        .await
                        .unwrap();
                    let c = other.factory().cancel_task("3").await.unwrap();
                    assert_eq!(c.state, TaskState::Cancelled);
                }
                String::new()
            }
            AgentRole::Reviewer => r#"{"verdict": "approve"}"#.to_owned(),
        };
        Ok(AgentResponse {
            output,
            transcript: Vec::new(),
        })
    }
}

fn idle_agents() -> RoleBackends {
    RoleBackends::same(Arc::new(CancelsAWaitingTask {
        dir: PathBuf::new(),
    }))
}

/// The run looks at waiting tasks as it last read them; a task cancelled meanwhile by another
/// command is seen as cancelled, not taken for an error that ends the run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_task_cancelled_by_another_command_does_not_end_the_run() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("repo");
    repo(&dir);
    Workspace::init(&dir, options()).await.unwrap();
    let agents = RoleBackends::same(Arc::new(CancelsAWaitingTask { dir: dir.clone() }));
    let ws = Workspace::open_with_agents(&dir, agents).await.unwrap();
    ws.factory().add_epic("three tasks").await.unwrap();

    let report = ws
        .start_run(ws.run_options("test"))
        .await
        .unwrap()
        .wait()
        .await
        .unwrap();
    let merged: Vec<String> = report.merged.iter().map(|(s, _)| s.to_string()).collect();
    assert_eq!(merged.len(), 2, "{report:?}");
    assert!(report.all_merged(), "{report:?}");
    let states: Vec<TaskState> = ws
        .factory()
        .tasks()
        .await
        .unwrap()
        .iter()
        .map(|t| t.state)
        .collect();
    assert_eq!(
        states,
        [
            TaskState::Completed,
            TaskState::Completed,
            TaskState::Cancelled
        ]
    );
}
