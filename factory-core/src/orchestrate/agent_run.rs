//! Running one agent request: the agent's state, its transcript under `.factory/logs/`, and the
//! start/completion events.

use std::time::Instant;

use tracing::Instrument;

use crate::agent::{AgentId, AgentRole, AgentState};
use crate::event::DomainEvent;
use crate::ports::{AgentError, AgentRequest, TranscriptEntry, TranscriptKind};
use crate::task::TaskId;

use super::{Factory, OrchestrateError};

impl Factory {
    /// Runs one agent request, tracking the agent's state, writing its transcript to
    /// `.factory/logs/<scope>/` and emitting start/completion events. The inner result is the
    /// agent's output or its failure (which the caller turns into a blocked task).
    pub(super) async fn run_agent(
        &self,
        role: AgentRole,
        agent_id: &AgentId,
        task: Option<TaskId>,
        request: AgentRequest,
        log_scope: &str,
    ) -> Result<Result<String, AgentError>, OrchestrateError> {
        let round = request.round;
        self.set_agent(agent_id, role, task, AgentState::Busy)
            .await?;
        self.emit(DomainEvent::AgentStarted {
            agent_id: agent_id.clone(),
            role,
            task_id: task,
            round,
        })
        .await?;
        let started = Instant::now();
        let span = tracing::info_span!("agent", agent = %agent_id, round);
        let result = self
            .inner
            .ports
            .agents
            .for_role(role)
            .run(request)
            .instrument(span)
            .await;
        let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let log_name = format!("{role}-round-{round}.jsonl");
        let transcript = match &result {
            Ok(resp) => resp.transcript.clone(),
            Err(e) => vec![TranscriptEntry {
                at: self.now(),
                kind: TranscriptKind::Exit,
                text: e.to_string(),
            }],
        };
        self.write_log(log_scope, &log_name, &transcript)?;
        self.emit(DomainEvent::AgentCompleted {
            agent_id: agent_id.clone(),
            role,
            task_id: task,
            round,
            ok: result.is_ok(),
            duration_ms,
        })
        .await?;
        Ok(result.map(|r| r.output))
    }

    pub(super) fn write_log(
        &self,
        scope: &str,
        name: &str,
        entries: &[TranscriptEntry],
    ) -> Result<(), OrchestrateError> {
        let dir = self.inner.layout.logs_dir(scope);
        let path = dir.join(name);
        let err = |source| OrchestrateError::Artifact {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(&dir).map_err(err)?;
        let mut text = String::new();
        for e in entries {
            if let Ok(line) = serde_json::to_string(e) {
                text.push_str(&line);
                text.push('\n');
            }
        }
        std::fs::write(&path, text).map_err(err)
    }
}
