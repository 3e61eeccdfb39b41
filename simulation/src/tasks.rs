//! Tasks in the workload: a code dir with one task whose metadata declares typed parameters,
//! redeployed now and then (its file rewritten, so jobs planned before and after run different
//! hashes of one file name), and task requests with generated parameters — awkward on purpose:
//! unicode, quotes, newlines, shell syntax, nested JSON, integers beyond 2^53. A request is
//! made into a job by the node's own check of `POST /command/task` bodies
//! (`porch_node::api::task_request`), so the job carries what a real one would: the planned
//! hash, the checked parameters with defaults, the input method.

use porch_core::{JobSpec, Plan};
use porch_node::api::task_request::{check_task_request, parse_body};
use rand::Rng;
use rand::rngs::SmallRng;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

/// The one task the simulation runs.
pub const TASK: &str = "simtask::echo";

/// Its metadata: one parameter of each kind of Puppet type a job may carry.
const METADATA: &str = r#"{
  "description": "The simulation's task: echoes its parameters",
  "supports_noop": true,
  "input_method": "both",
  "parameters": {
    "text": {"type": "String"},
    "count": {"type": "Integer"},
    "big": {"type": "Optional[Numeric]"},
    "ratio": {"type": "Float"},
    "flag": {"type": "Boolean"},
    "tags": {"type": "Array[String]"},
    "doc": {"type": "Hash"},
    "mode": {"type": "Enum[fast, slow]"},
    "note": {"type": "Optional[String]", "default": "défaut \"quoted\"\nsecond line"},
    "secret": {"type": "String", "sensitive": true}
  }
}"#;

/// Strings a task parameter may hold that break naive encoders.
const AWKWARD_STRINGS: [&str; 12] = [
    "",
    "plain",
    "naïve café ☕ 日本語 𝄞 עברית",
    "quote \" and 'single' and `back`",
    "line one\nline two\r\n\ttabbed",
    "back\\slash \\n not a newline",
    "{\"looks\": [\"like\", \"json\"]}",
    "$(touch /tmp/x); rm -rf / | cat && echo ${HOME}",
    "\u{2028}line separator\u{2029}",
    "e\u{301} combining, \u{200b}zero width",
    "PT_text=overridden",
    "%s %d %n {0} {{}}",
];

/// Integers at the edges of what JSON layers carry exactly.
const AWKWARD_INTEGERS: [i64; 8] = [
    0,
    -1,
    9_007_199_254_740_993, // 2^53 + 1: a float cannot hold it
    -9_007_199_254_740_993,
    i64::MAX,
    i64::MIN,
    1_234_567_890_123_456_789,
    42,
];

/// Where a run's code lives, under its spool root.
pub fn code_dir(spool_root: &Path) -> PathBuf {
    spool_root.join("code")
}

/// The environment's code as the nodes read it: `<dir>/environments/production/modules/...`.
pub struct SimCode {
    dir: PathBuf,
    version: u32,
}

impl SimCode {
    /// Writes the task and its metadata under `dir` (version 1 of its file).
    pub fn create(dir: &Path) -> Result<SimCode, String> {
        let mut code = SimCode {
            dir: dir.to_path_buf(),
            version: 0,
        };
        let tasks = code.tasks_dir();
        std::fs::create_dir_all(&tasks).map_err(|e| format!("{}: {e}", tasks.display()))?;
        let metadata = tasks.join("echo.json");
        std::fs::write(&metadata, METADATA).map_err(|e| format!("{}: {e}", metadata.display()))?;
        code.redeploy()?;
        Ok(code)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn tasks_dir(&self) -> PathBuf {
        self.dir
            .join("environments/production/modules/simtask/tasks")
    }

    /// A new version of the task's file replaces the old one at once (written aside, then
    /// renamed), as a code deploy does: jobs planned before it were planned with the old hash.
    pub fn redeploy(&mut self) -> Result<(), String> {
        use std::os::unix::fs::PermissionsExt;
        self.version += 1;
        let path = self.tasks_dir().join("echo.sh");
        let aside = self.tasks_dir().join(".echo.sh.new");
        let script = format!("#!/bin/sh\n# version {}\ncat\n", self.version);
        std::fs::write(&aside, script)
            .and_then(|()| std::fs::set_permissions(&aside, std::fs::Permissions::from_mode(0o755)))
            .and_then(|()| std::fs::rename(&aside, &path))
            .map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn version(&self) -> u32 {
        self.version
    }
}

fn awkward_string(rng: &mut SmallRng) -> String {
    match rng.random_range(0..8) {
        // A long one: several awkward strings end to end.
        0 => (0..rng.random_range(2..40))
            .map(|_| AWKWARD_STRINGS[rng.random_range(0..AWKWARD_STRINGS.len())])
            .collect(),
        _ => AWKWARD_STRINGS[rng.random_range(0..AWKWARD_STRINGS.len())].to_string(),
    }
}

/// A JSON value nested up to `depth` levels: objects with awkward keys, arrays, nulls,
/// numbers of every kind.
fn nested(rng: &mut SmallRng, depth: u32) -> Value {
    let leaf = depth == 0 || rng.random_bool(0.3);
    match rng.random_range(0..if leaf { 5 } else { 7 }) {
        0 => Value::Null,
        1 => json!(rng.random_bool(0.5)),
        2 => json!(AWKWARD_INTEGERS[rng.random_range(0..AWKWARD_INTEGERS.len())]),
        3 => json!(rng.random_range(-1.0e6..1.0e6)),
        4 => json!(awkward_string(rng)),
        5 => Value::Array(
            (0..rng.random_range(0..4))
                .map(|_| nested(rng, depth - 1))
                .collect(),
        ),
        _ => Value::Object(
            (0..rng.random_range(0..4))
                .map(|_| (awkward_string(rng), nested(rng, depth - 1)))
                .collect(),
        ),
    }
}

/// Parameters of the declared types, some optional ones left out (the defaults apply).
pub fn random_params(rng: &mut SmallRng) -> Value {
    let mut params = serde_json::Map::new();
    params.insert("text".into(), json!(awkward_string(rng)));
    params.insert(
        "count".into(),
        json!(AWKWARD_INTEGERS[rng.random_range(0..AWKWARD_INTEGERS.len())]),
    );
    match rng.random_range(0..3) {
        0 => {}
        1 => {
            params.insert("big".into(), json!(u64::MAX));
        }
        _ => {
            params.insert("big".into(), json!(rng.random_range(-1.0e300..1.0e300)));
        }
    }
    params.insert(
        "ratio".into(),
        json!([0.1, -0.0, 1e-300, 6.02214076e23][rng.random_range(0..4)]),
    );
    params.insert("flag".into(), json!(rng.random_bool(0.5)));
    params.insert(
        "tags".into(),
        Value::Array(
            (0..rng.random_range(0..5))
                .map(|_| json!(awkward_string(rng)))
                .collect(),
        ),
    );
    let doc = match nested(rng, 3) {
        Value::Object(map) => Value::Object(map),
        other => json!({ "value": other }),
    };
    params.insert("doc".into(), doc);
    params.insert(
        "mode".into(),
        json!(if rng.random_bool(0.5) { "fast" } else { "slow" }),
    );
    if rng.random_bool(0.5) {
        params.insert("note".into(), json!(awkward_string(rng)));
    }
    params.insert("secret".into(), json!(awkward_string(rng)));
    Value::Object(params)
}

/// A task job on `nodes`, made from a request body by the node's own check against `code`.
pub fn task_job(
    rng: &mut SmallRng,
    code: &SimCode,
    nodes: Vec<String>,
    request_id: &str,
) -> Result<(JobSpec, Plan), String> {
    let body = json!({
        "environment": "production",
        "scope": {"nodes": nodes},
        "task": TASK,
        "params": random_params(rng),
        "noop": rng.random_bool(0.2),
        "description": request_id,
    });
    let refused = |e: porch_node::api::error::ApiError| {
        format!(
            "the generated task request {request_id} was refused: {} {}",
            e.kind, e.msg
        )
    };
    let body = parse_body(body.to_string().as_bytes()).map_err(refused)?;
    let owner = porch_core::Actor {
        id: "forged".into(),
        login: "forged".into(),
    };
    let (spec, _warnings) = check_task_request(code.dir(), body, owner).map_err(refused)?;
    let plan = Plan::independent(nodes).map_err(|e| format!("task plan: {e}"))?;
    Ok((spec, plan))
}
