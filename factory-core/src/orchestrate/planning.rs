//! Planning an epic: the planner agent, then its plan recorded in one transaction (tasks, the
//! epic's move to `InProgress`, the decision and the events), so a plan is recorded at most once
//! and a crash leaves either no plan or all of it.

use crate::agent::{AgentId, AgentRole, AgentState};
use crate::decision::NewDecision;
use crate::epic::{Epic, EpicChanges};
use crate::plan::Plan;
use crate::ports::{AgentRequest, StoreError};
use crate::protocol::PlanOutput;
use crate::spec::SpecId;

use super::{Factory, OrchestrateError};

impl Factory {
    /// Runs the planner on `epic` and records its plan. A planner that fails or prints no valid
    /// plan leaves the epic in `Planning` with the reason (the next run plans it again) and
    /// returns [`OrchestrateError::Planning`]; other epics are not affected.
    pub(super) async fn plan_epic(&self, epic: &Epic) -> Result<(), OrchestrateError> {
        let agent_id = AgentId::new(AgentRole::Planner, format!("epic-{}", epic.id));
        let outcome = self
            .run_agent(
                AgentRole::Planner,
                &agent_id,
                None,
                AgentRequest {
                    role: AgentRole::Planner,
                    agent_id: agent_id.clone(),
                    prompt: super::prompt::planner(epic),
                    workdir: self.layout().repo_root().to_owned(),
                    spec_id: None,
                    spec_dir: None,
                    task_key: None,
                    round: 1,
                },
                &format!("epic-{}", epic.id),
            )
            .await?;
        let plan = outcome
            .map_err(|e| e.to_string())
            .and_then(|out| PlanOutput::parse(&out).map_err(|e| e.to_string()))
            .and_then(|out| {
                let reasoning = out.reasoning.clone();
                Plan::new(out.tasks.into_iter().map(Into::into).collect())
                    .map(|plan| (plan, reasoning))
                    .map_err(|e| format!("the plan is invalid: {e}"))
            });
        let (plan, reasoning) = match plan {
            Ok(plan) => plan,
            Err(reason) => {
                self.set_agent(&agent_id, AgentRole::Planner, None, AgentState::Failed)
                    .await?;
                self.update_epic(
                    epic,
                    None,
                    EpicChanges {
                        blocked_reason: Some(Some(reason.clone())),
                    },
                )
                .await?;
                return Err(OrchestrateError::Planning {
                    epic: epic.id,
                    reason,
                });
            }
        };
        let keys: Vec<&str> = plan.tasks().iter().map(|t| t.key.as_str()).collect();
        let decision = NewDecision {
            epic_id: epic.id,
            task_id: None,
            actor: agent_id.to_string(),
            decision: format!("split the epic into {} task(s)", plan.tasks().len()),
            reasoning,
            context: serde_json::json!({ "tasks": keys }),
        };
        // The epic as read before the planner ran: if anyone changed it meanwhile (a second
        // run, a cancel), the compare-and-set refuses and nothing is recorded.
        let fresh = self.store_ref().epic(epic.id).await?;
        let written = self
            .store_ref()
            .record_plan(
                epic.id,
                fresh.version,
                &plan,
                self.next_free_spec_number().await?,
                decision,
            )
            .await;
        let written = match written {
            Err(StoreError::Stale { .. } | StoreError::IllegalTransition(_)) => {
                return Err(OrchestrateError::Planning {
                    epic: epic.id,
                    reason: "the epic changed while it was being planned (cancelled, or planned \
                             by another run); its plan was not recorded"
                        .into(),
                });
            }
            other => other?,
        };
        self.committed(written);
        self.set_agent(&agent_id, AgentRole::Planner, None, AgentState::Idle)
            .await?;
        Ok(())
    }

    /// The lowest spec number no leftover of an earlier database uses: above every spec dir,
    /// log dir and task worktree under `.factory/` and every `factory/<NNN-…>` branch. A store
    /// that was deleted and recreated therefore never reuses a spec id, and so never a
    /// `factory/<spec-id>` branch either, even once the spec dirs are gone too.
    async fn next_free_spec_number(&self) -> Result<u32, OrchestrateError> {
        let layout = self.layout();
        let dirs = [
            layout.factory_dir().join("specs"),
            layout.factory_dir().join("logs"),
            layout.factory_dir().join("worktrees").join("tasks"),
        ];
        let in_dirs = dirs
            .iter()
            .filter_map(|dir| std::fs::read_dir(dir).ok())
            .flatten()
            .filter_map(Result::ok)
            .filter_map(|entry| entry.file_name().to_str()?.parse::<SpecId>().ok())
            .map(|spec| spec.number())
            .max()
            .unwrap_or(0);
        let branches = self.inner.ports.vcs.branches(BRANCH_PREFIX).await?;
        let on_branches = branches
            .iter()
            .filter_map(|branch| spec_number_of_branch(&branch.name))
            .max()
            .unwrap_or(0);
        Ok(in_dirs.max(on_branches).saturating_add(1))
    }
}

/// Where Factory's task branches live: `factory/<spec-id>`.
const BRANCH_PREFIX: &str = "refs/heads/factory/";

/// The spec number a `factory/NNN…` branch name starts with (`factory/007-add-x` → 7), also
/// for names that are not quite spec ids (`factory/007`), so none is ever reused.
fn spec_number_of_branch(name: &str) -> Option<u32> {
    let rest = name.strip_prefix("factory/")?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    if digits.is_empty() {
        return None;
    }
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::spec_number_of_branch;

    #[test]
    fn branch_names_give_their_spec_number() {
        assert_eq!(spec_number_of_branch("factory/007-add-x"), Some(7));
        assert_eq!(spec_number_of_branch("factory/1234"), Some(1234));
        assert_eq!(spec_number_of_branch("factory/x-001"), None);
        assert_eq!(spec_number_of_branch("feature/001-x"), None);
        assert_eq!(spec_number_of_branch("factory/99999999999-x"), None);
    }
}
