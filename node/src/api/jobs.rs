//! Read endpoints over jobs and the inventory. Each first passes the read barrier, so a
//! client that got a 202 from any node sees its job on every node afterwards.

use super::error::ApiError;
use super::job_filter::JobFilter;
use super::{ApiState, views};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use porch_core::{Job, JobId};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Most items one page may hold.
pub const PAGE_ITEMS_MAX: usize = 1000;

fn parse_id(text: &str) -> Result<JobId, ApiError> {
    text.parse::<u64>()
        .map(JobId)
        .map_err(|_| ApiError::validation(format!("job id {text:?} is not an integer")))
}

fn int_param(params: &BTreeMap<String, String>, name: &str) -> Result<Option<u64>, ApiError> {
    params
        .get(name)
        .map(|v| {
            v.parse::<u64>().map_err(|_| {
                ApiError::validation(format!(
                    "'{name}' must be a non-negative integer, got {v:?}"
                ))
            })
        })
        .transpose()
}

pub async fn list(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    Query(params): Query<BTreeMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let limit = int_param(&params, "limit")?.map(|l| l as usize);
    let offset = int_param(&params, "offset")?.unwrap_or(0) as usize;
    let order_by = params
        .get("order_by")
        .map(String::as_str)
        .unwrap_or("timestamp");
    let descending = match params.get("order").map(String::as_str) {
        None | Some("asc") => false,
        Some("desc") => true,
        Some(other) => {
            return Err(ApiError::validation(format!(
                "'order' must be asc or desc, got {other:?}"
            )));
        }
    };
    let order = JobOrder::parse(order_by)?;
    let filter = JobFilter::parse(&params)?;
    state.consensus.read_barrier().await?;
    let base = state.base_url(&headers);
    // A persistent map: this copy is O(1), and the sorting below runs without the lock
    // `apply` needs (sorting 100,000 jobs under it stalled every write on this node).
    let jobs = state.consensus.view.read().cluster.jobs().clone();
    let total = if filter.is_everything() {
        jobs.len()
    } else {
        jobs.values().filter(|j| filter.matches(j)).count()
    };
    let page = limit.unwrap_or(PAGE_ITEMS_MAX).min(PAGE_ITEMS_MAX);
    let items: Vec<Value> = page_of_jobs(&jobs, &filter, order, descending, offset, page)
        .into_iter()
        .map(|j| views::job_summary(j, &base))
        .collect();
    Ok(Json(json!({
        "items": items,
        "pagination": {"limit": limit, "offset": offset, "total": total},
    })))
}

/// The orders `GET /jobs` accepts (`order_by`); ties are broken by job id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobOrder {
    Timestamp,
    Owner,
    Environment,
    Name,
    State,
}

impl JobOrder {
    pub fn parse(text: &str) -> Result<JobOrder, ApiError> {
        Ok(match text {
            "timestamp" => JobOrder::Timestamp,
            "owner" => JobOrder::Owner,
            "environment" => JobOrder::Environment,
            "name" => JobOrder::Name,
            "state" => JobOrder::State,
            other => {
                return Err(ApiError::validation(format!(
                    "'order_by' must be one of owner, timestamp, environment, name, state; got {other:?}"
                )));
            }
        })
    }

    /// The sort key of `job`, computed once per job.
    fn key(self, job: &Job) -> (String, u64, u64) {
        let id = job.id.0;
        match self {
            JobOrder::Timestamp => (String::new(), job.timestamp_ms(), id),
            JobOrder::Owner => (job.spec.owner.login.clone(), 0, id),
            JobOrder::Environment => (job.spec.environment.clone(), 0, id),
            JobOrder::Name => (String::new(), 0, id),
            JobOrder::State => (job.state().as_str().to_string(), 0, id),
        }
    }
}

/// The jobs `filter` passes, `offset..offset + page` in `order`. By name (id) it walks the
/// map, which is in id order, and costs only the page (and the jobs filtered out); otherwise
/// it keys every job that passes once and sorts.
pub fn page_of_jobs<'a>(
    jobs: &'a imbl::OrdMap<JobId, Arc<Job>>,
    filter: &JobFilter,
    order: JobOrder,
    descending: bool,
    offset: usize,
    page: usize,
) -> Vec<&'a Job> {
    if order == JobOrder::Name {
        let in_order: Box<dyn Iterator<Item = &Arc<Job>>> = if descending {
            Box::new(jobs.values().rev())
        } else {
            Box::new(jobs.values())
        };
        return in_order
            .filter(|j| filter.matches(j))
            .skip(offset)
            .take(page)
            .map(|j| &**j)
            .collect();
    }
    if page == 0 || offset >= jobs.len() {
        return Vec::new();
    }
    // Keys computed once per job (the old code built a string key per comparison), then
    // one sort: pattern-defeating quicksort is linear on the common already-ordered case
    // (measured at 100,000 jobs: ~20 ms, the old sort 43 ms; a partial selection or a
    // bounded heap was slower on ordered input).
    let mut keyed: Vec<((String, u64, u64), &Job)> = jobs
        .values()
        .filter(|j| filter.matches(j))
        .map(|j| (order.key(j), &**j))
        .collect();
    if descending {
        keyed.sort_unstable_by(|a, b| b.0.cmp(&a.0));
    } else {
        keyed.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    }
    keyed
        .into_iter()
        .skip(offset)
        .take(page)
        .map(|(_, job)| job)
        .collect()
}

/// Runs `render` on job `id` after the read barrier.
async fn with_job<T>(
    state: &ApiState,
    id: &str,
    render: impl FnOnce(&Job, u64) -> T,
) -> Result<T, ApiError> {
    let id = parse_id(id)?;
    state.consensus.read_barrier().await?;
    let applied = state.consensus.view.read();
    let job = applied
        .cluster
        .job(id)
        .ok_or_else(|| ApiError::unknown_job(id))?;
    Ok(render(job, applied.cluster.clock_ms()))
}

pub async fn show(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let base = state.base_url(&headers);
    let (mut detail, job_id) = with_job(&state, &id, |job, _| {
        (views::job_detail(job, &base), job.id)
    })
    .await?;
    // porch: the schedule occurrence that created the job, if one did.
    let origin = state
        .consensus
        .view
        .read()
        .cluster
        .schedules()
        .job_origin(job_id);
    detail["scheduled_job"] = match origin {
        Some(origin) => json!({
            "id": super::schedules::schedule_url(&base, origin.schedule_id),
            "name": origin.schedule_id.to_string(),
            "occurrence": origin.occurrence,
        }),
        None => Value::Null,
    };
    Ok(Json(detail))
}

pub async fn nodes(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(params): Query<BTreeMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let base = state.base_url(&headers);
    let limit = int_param(&params, "limit")?
        .map(|l| l as usize)
        .unwrap_or(usize::MAX);
    let offset = int_param(&params, "offset")?.unwrap_or(0) as usize;
    let state_filter = params.get("state").cloned();
    with_job(&state, &id, |job, now| {
        let next = job.events.last().map(|e| e.id.0 + 1).unwrap_or(1);
        let items: Vec<Value> = (0..job.runs.len())
            .filter(|&i| state_filter.as_deref().is_none_or(|s| job.runs[i].state.as_str() == s))
            .skip(offset)
            .take(limit)
            .map(|i| views::node_item(job, i, now))
            .collect();
        Json(json!({
            "next-events": {"id": format!("{base}/orchestrator/v1/jobs/{}/events?start={next}", job.id), "event": next.to_string()},
            "items": items,
        }))
    })
    .await
}

pub async fn events(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(params): Query<BTreeMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let base = state.base_url(&headers);
    let start = int_param(&params, "start")?.unwrap_or(0);
    with_job(&state, &id, |job, _| {
        let items: Vec<Value> = job
            .events
            .iter()
            .filter(|e| e.id.0 >= start)
            .take(PAGE_ITEMS_MAX)
            .map(|event| views::event_item(event, job))
            .collect();
        let next = items
            .last()
            .and_then(|e| e["id"].as_str().and_then(|s| s.parse::<u64>().ok()))
            .map(|last| last + 1)
            .unwrap_or(start.max(1));
        Json(json!({
            "next-events": {"id": format!("{base}/orchestrator/v1/jobs/{}/events?start={next}", job.id), "event": next.to_string()},
            "items": items,
        }))
    })
    .await
}

pub async fn report(
    State(state): State<Arc<ApiState>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    with_job(&state, &id, |job, now| {
        let items: Vec<Value> = (0..job.runs.len())
            .map(|i| {
                let run = &job.runs[i];
                let name = &job.plan.nodes()[i].name;
                let events: Vec<Value> = job
                    .events
                    .iter()
                    .filter(|e| e.node.as_deref() == Some(name.as_str()))
                    .map(|event| views::event_item(event, job))
                    .collect();
                json!({
                    "node": name,
                    "state": run.state.as_str(),
                    "timestamp": crate::clock::format_time_ms(run.finish_ms.or(run.start_ms).unwrap_or(now)),
                    "result": views::node_item(job, i, now)["result"].clone(),
                    "events": events,
                })
            })
            .collect();
        Json(json!({"items": items}))
    })
    .await
}

fn member_addr(state: &ApiState) -> impl Fn(u64) -> Option<String> {
    let members = state.consensus.members();
    move |id| members.get(&id).map(|(addr, _)| addr.clone())
}

pub async fn inventory_all(State(state): State<Arc<ApiState>>) -> Result<Json<Value>, ApiError> {
    state.consensus.read_barrier().await?;
    let addr = member_addr(&state);
    let applied = state.consensus.view.read();
    let items: Vec<Value> = applied
        .cluster
        .inventory()
        .agents()
        .iter()
        .filter(|(_, r)| r.connected)
        .map(|(name, _)| views::inventory_item(&applied.cluster, name, &addr))
        .collect();
    Ok(Json(json!({"items": items})))
}

pub async fn inventory_one(
    State(state): State<Arc<ApiState>>,
    Path(node): Path<String>,
) -> Result<Json<Value>, ApiError> {
    state.consensus.read_barrier().await?;
    let addr = member_addr(&state);
    let applied = state.consensus.view.read();
    Ok(Json(views::inventory_item(&applied.cluster, &node, &addr)))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct InventoryBody {
    nodes: Vec<String>,
}

pub async fn inventory_some(
    State(state): State<Arc<ApiState>>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let body: InventoryBody = serde_json::from_slice(&body).map_err(|e| {
        ApiError::validation(format!(
            "invalid request body (expected {{\"nodes\": [...]}}): {e}"
        ))
    })?;
    state.consensus.read_barrier().await?;
    let addr = member_addr(&state);
    let applied = state.consensus.view.read();
    let items: Vec<Value> = body
        .nodes
        .iter()
        .map(|name| views::inventory_item(&applied.cluster, name, &addr))
        .collect();
    Ok(Json(json!({"items": items})))
}

#[cfg(test)]
mod page_tests {
    use super::*;
    use porch_core::{ClusterState, Command, JobSpec, Plan, Request, Target};

    /// Jobs with owners, environments, states and timestamps that collide and interleave.
    fn jobs() -> imbl::OrdMap<JobId, Arc<Job>> {
        let mut state = ClusterState::new();
        let mut now = 1_000;
        for i in 0..200u64 {
            now += 1 + (i * 7919) % 13;
            let node = format!("n{i}");
            let spec = JobSpec {
                environment: ["production", "staging", "dev"][(i % 3) as usize].into(),
                target: Target::Nodes(vec![node.clone()]),
                noop: false,
                no_noop: false,
                concurrency: None,
                enforce_environment: true,
                debug: false,
                trace: false,
                evaltrace: false,
                description: None,
                owner: {
                    let login = ["alice", "bob", "carol", "dave", "eve"][(i % 5) as usize];
                    porch_core::Actor {
                        id: format!("id-{login}"),
                        login: login.into(),
                    }
                },
                // Every third a task job, of two tasks.
                task: (i % 3 == 2).then(|| porch_core::TaskInvocation {
                    name: ["package::status", "service"][(i % 2) as usize].into(),
                    file_name: "task.sh".into(),
                    file_path: "modules/m/tasks/task.sh".into(),
                    sha256: "0".repeat(64),
                    size_bytes: 1,
                    params_json: "{}".into(),
                    input_method: porch_core::TaskInputMethod::Both,
                    timeout_secs: 60,
                    sensitive: Vec::new(),
                }),
            };
            let command = Command::SubmitJob {
                spec,
                plan: Plan::independent(vec![node]).unwrap(),
                start_under_cap: None,
            };
            state.apply(Request {
                request_id: None,
                now_ms: now,
                command,
                origin: None,
            });
            if i % 4 == 1 {
                // Stopping a job that never started ends it: another state, a later timestamp.
                let command = Command::StopJob { job_id: JobId(i) };
                state.apply(Request {
                    request_id: None,
                    now_ms: now + 50,
                    command,
                    origin: None,
                });
            }
        }
        state.jobs().clone()
    }

    /// The plain way: filter, key everything, sort it all, slice.
    fn naive(
        jobs: &imbl::OrdMap<JobId, Arc<Job>>,
        filter: &JobFilter,
        order: JobOrder,
        descending: bool,
        offset: usize,
        page: usize,
    ) -> Vec<JobId> {
        let mut all: Vec<&Job> = jobs
            .values()
            .filter(|j| filter.matches(j))
            .map(|j| &**j)
            .collect();
        all.sort_by_key(|j| order.key(j));
        if descending {
            all.reverse();
        }
        all.into_iter()
            .skip(offset)
            .take(page)
            .map(|j| j.id)
            .collect()
    }

    /// A filter as `GET /jobs?...` gives it.
    fn filter(pairs: &[(&str, &str)]) -> JobFilter {
        let params = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        JobFilter::parse(&params).unwrap()
    }

    #[test]
    fn every_filter_order_and_page_matches_a_full_sort() {
        let jobs = jobs();
        let orders = [
            JobOrder::Timestamp,
            JobOrder::Owner,
            JobOrder::Environment,
            JobOrder::Name,
            JobOrder::State,
        ];
        let filters = [
            filter(&[]),
            filter(&[("type", "task")]),
            filter(&[("type", "deploy")]),
            filter(&[("type", "plan_task")]),
            filter(&[("task", "status")]),
            filter(&[("type", "task"), ("task", "serv")]),
        ];
        for filter in &filters {
            for order in orders {
                for descending in [false, true] {
                    for (offset, page) in [
                        (0, 50),
                        (0, 1),
                        (7, 13),
                        (190, 50),
                        (199, 1),
                        (200, 5),
                        (0, 0),
                        (0, 1000),
                        (250, 10),
                    ] {
                        let fast: Vec<JobId> =
                            page_of_jobs(&jobs, filter, order, descending, offset, page)
                                .into_iter()
                                .map(|j| j.id)
                                .collect();
                        assert_eq!(
                            fast,
                            naive(&jobs, filter, order, descending, offset, page),
                            "{filter:?} {order:?} descending={descending} offset={offset} page={page}"
                        );
                    }
                }
            }
        }
        let count = |f: &JobFilter| jobs.values().filter(|j| f.matches(j)).count();
        assert_eq!(count(&filters[1]) + count(&filters[2]), jobs.len());
        assert_eq!(count(&filters[1]), 66, "every third job is a task job");
        assert_eq!(count(&filters[3]), 0, "porch runs no plans");
        assert_eq!(count(&filters[4]) + count(&filters[5]), count(&filters[1]));
    }

    #[test]
    fn an_unknown_order_is_a_validation_error() {
        assert!(JobOrder::parse("nope").is_err());
        assert_eq!(JobOrder::parse("state").unwrap(), JobOrder::State);
    }
}
