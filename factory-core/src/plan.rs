//! A plan the store may persist: the planner's tasks, checked once, here, before anything is
//! written. Keys are unique and non-blank, dependencies name tasks of the same plan, no task
//! depends on itself, and there are no cycles. A [`Plan`] can only be built by [`Plan::new`], so
//! a store that takes one needs no rules of its own.

use std::collections::HashMap;

use crate::task::NewTask;

/// Why a planner's task list cannot be stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// The plan lists no task.
    #[error("the plan has no tasks")]
    Empty,
    /// A task has a blank key.
    #[error("task {position} (`{title}`) has a blank key; every task in a plan needs a unique key")]
    BlankKey {
        /// 1-based position in the plan.
        position: usize,
        /// Its title.
        title: String,
    },
    /// Two tasks share a key.
    #[error("task key `{0}` appears more than once in the plan")]
    DuplicateKey(String),
    /// `depends_on` names a key that is not in the plan.
    #[error("task `{task}` depends on `{missing}`, which is not a key in this plan")]
    UnknownDependency {
        /// The task.
        task: String,
        /// The unknown key.
        missing: String,
    },
    /// A task depends on itself.
    #[error("task `{0}` depends on itself")]
    SelfDependency(String),
    /// The dependencies form a cycle.
    #[error("task `{}` is part of a dependency cycle: {}", .0[0], .0.join(" -> "))]
    Cycle(Vec<String>),
}

/// A validated plan: the tasks in the planner's order and, for each, the positions of the tasks
/// it depends on (plan order, repeats removed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    tasks: Vec<NewTask>,
    dependencies: Vec<Vec<usize>>,
}

impl Plan {
    /// Checks `tasks` and resolves their `depends_on` keys to positions.
    pub fn new(tasks: Vec<NewTask>) -> Result<Plan, PlanError> {
        if tasks.is_empty() {
            return Err(PlanError::Empty);
        }
        let mut index: HashMap<&str, usize> = HashMap::new();
        for (i, task) in tasks.iter().enumerate() {
            if task.key.trim().is_empty() {
                return Err(PlanError::BlankKey {
                    position: i + 1,
                    title: task.title.clone(),
                });
            }
            if index.insert(task.key.as_str(), i).is_some() {
                return Err(PlanError::DuplicateKey(task.key.clone()));
            }
        }
        let mut dependencies = Vec::with_capacity(tasks.len());
        for task in &tasks {
            let mut deps: Vec<usize> = Vec::with_capacity(task.depends_on.len());
            for dep in &task.depends_on {
                let Some(&j) = index.get(dep.as_str()) else {
                    return Err(PlanError::UnknownDependency {
                        task: task.key.clone(),
                        missing: dep.clone(),
                    });
                };
                if dep == &task.key {
                    return Err(PlanError::SelfDependency(task.key.clone()));
                }
                if !deps.contains(&j) {
                    deps.push(j);
                }
            }
            dependencies.push(deps);
        }
        if let Some(cycle) = find_cycle(&dependencies) {
            return Err(PlanError::Cycle(
                cycle.iter().map(|&i| tasks[i].key.clone()).collect(),
            ));
        }
        Ok(Plan {
            tasks,
            dependencies,
        })
    }

    /// The tasks, in the planner's order.
    pub fn tasks(&self) -> &[NewTask] {
        &self.tasks
    }

    /// For task `i`, the positions of the tasks it depends on.
    pub fn dependencies(&self, i: usize) -> &[usize] {
        self.dependencies.get(i).map_or(&[], Vec::as_slice)
    }
}

/// A cycle in the graph, as the node path from one node back to itself, if there is one.
fn find_cycle(edges: &[Vec<usize>]) -> Option<Vec<usize>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        OnPath,
        Done,
    }
    let mut mark = vec![Mark::New; edges.len()];
    for start in 0..edges.len() {
        if mark[start] != Mark::New {
            continue;
        }
        // Iterative DFS: (node, next edge to follow).
        let mut stack: Vec<(usize, usize)> = vec![(start, 0)];
        mark[start] = Mark::OnPath;
        while let Some(top) = stack.last_mut() {
            let (node, next) = *top;
            if let Some(&child) = edges[node].get(next) {
                top.1 += 1;
                match mark[child] {
                    Mark::New => {
                        mark[child] = Mark::OnPath;
                        stack.push((child, 0));
                    }
                    Mark::OnPath => {
                        let from = stack.iter().position(|&(n, _)| n == child).unwrap_or(0);
                        let mut cycle: Vec<usize> = stack[from..].iter().map(|&(n, _)| n).collect();
                        cycle.push(child);
                        return Some(cycle);
                    }
                    Mark::Done => {}
                }
            } else {
                mark[node] = Mark::Done;
                stack.pop();
            }
        }
    }
    None
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn t(key: &str, deps: &[&str]) -> NewTask {
        NewTask {
            key: key.into(),
            title: key.into(),
            description: String::new(),
            acceptance: vec![],
            depends_on: deps.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn invalid(tasks: Vec<NewTask>) -> String {
        match Plan::new(tasks) {
            Err(e) => e.to_string(),
            Ok(p) => panic!("expected an error, got {p:?}"),
        }
    }

    #[test]
    fn resolves_in_plan_order_without_repeats() {
        let plan = Plan::new(vec![t("a", &[]), t("b", &["a"]), t("c", &["b", "a", "b"])]).unwrap();
        assert_eq!(plan.dependencies(0), &[] as &[usize]);
        assert_eq!(plan.dependencies(1), &[0]);
        assert_eq!(plan.dependencies(2), &[1, 0]);
    }

    #[test]
    fn refuses_bad_plans_naming_the_key() {
        assert!(invalid(vec![]).contains("no tasks"));
        assert!(invalid(vec![t("a", &[]), t("a", &[])]).contains("`a`"));
        assert!(invalid(vec![t("a", &["zz"])]).contains("`zz`"));
        assert!(invalid(vec![t("a", &["a"])]).contains("itself"));
        assert!(invalid(vec![t(" ", &[])]).contains("blank"));
        let msg = invalid(vec![
            t("a", &["c"]),
            t("b", &["a"]),
            t("c", &["b"]),
            t("d", &[]),
        ]);
        assert!(msg.contains("cycle"), "{msg}");
        assert!(msg.contains("a -> c -> b -> a"), "{msg}");
    }

    #[test]
    fn a_diamond_is_not_a_cycle() {
        assert!(
            Plan::new(vec![
                t("a", &[]),
                t("b", &["a"]),
                t("c", &["a"]),
                t("d", &["b", "c"])
            ])
            .is_ok()
        );
    }
}
