//! Checks a planner's task list before anything is written: keys unique and non-blank,
//! dependencies naming tasks of the same plan, no task depending on itself, no cycles.

use std::collections::HashMap;

use factory_core::ports::StoreError;
use factory_core::task::NewTask;

/// For each task, the indices (into `tasks`) of the tasks it depends on, in the plan's order
/// with repeats removed.
pub(crate) fn resolve(tasks: &[NewTask]) -> Result<Vec<Vec<usize>>, StoreError> {
    let mut index: HashMap<&str, usize> = HashMap::new();
    for (i, task) in tasks.iter().enumerate() {
        if task.key.trim().is_empty() {
            return Err(StoreError::Invalid(format!(
                "task {} (`{}`) has a blank key; every task in a plan needs a unique key",
                i + 1,
                task.title
            )));
        }
        if index.insert(task.key.as_str(), i).is_some() {
            return Err(StoreError::Invalid(format!(
                "task key `{}` appears more than once in the plan",
                task.key
            )));
        }
    }

    let mut edges = Vec::with_capacity(tasks.len());
    for task in tasks {
        let mut deps: Vec<usize> = Vec::with_capacity(task.depends_on.len());
        for dep in &task.depends_on {
            let Some(&j) = index.get(dep.as_str()) else {
                return Err(StoreError::Invalid(format!(
                    "task `{}` depends on `{dep}`, which is not a key in this plan",
                    task.key
                )));
            };
            if dep == &task.key {
                return Err(StoreError::Invalid(format!(
                    "task `{}` depends on itself",
                    task.key
                )));
            }
            if !deps.contains(&j) {
                deps.push(j);
            }
        }
        edges.push(deps);
    }

    if let Some(cycle) = find_cycle(&edges) {
        let path: Vec<&str> = cycle.iter().map(|&i| tasks[i].key.as_str()).collect();
        return Err(StoreError::Invalid(format!(
            "task `{}` is part of a dependency cycle: {}",
            path[0],
            path.join(" -> ")
        )));
    }
    Ok(edges)
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
        // Iterative DFS: (node, next edge to follow); `path` mirrors the stack's nodes.
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

    fn invalid(tasks: &[NewTask]) -> String {
        match resolve(tasks) {
            Err(StoreError::Invalid(msg)) => msg,
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn resolves_in_plan_order_without_repeats() {
        let edges = resolve(&[t("a", &[]), t("b", &["a"]), t("c", &["b", "a", "b"])]).unwrap();
        assert_eq!(edges, vec![vec![], vec![0], vec![1, 0]]);
    }

    #[test]
    fn refuses_bad_plans_naming_the_key() {
        assert!(invalid(&[t("a", &[]), t("a", &[])]).contains("`a`"));
        assert!(invalid(&[t("a", &["zz"])]).contains("`zz`"));
        assert!(invalid(&[t("a", &["a"])]).contains("itself"));
        assert!(invalid(&[t(" ", &[])]).contains("blank"));
        let msg = invalid(&[t("a", &["c"]), t("b", &["a"]), t("c", &["b"]), t("d", &[])]);
        assert!(msg.contains("cycle"), "{msg}");
        assert!(msg.contains("a -> c -> b -> a"), "{msg}");
    }

    #[test]
    fn a_diamond_is_not_a_cycle() {
        assert!(
            resolve(&[
                t("a", &[]),
                t("b", &["a"]),
                t("c", &["a"]),
                t("d", &["b", "c"])
            ])
            .is_ok()
        );
    }
}
