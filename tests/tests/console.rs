//! The web console in a real browser (Debian's headless Chromium through chromedriver)
//! against a real three-node cluster over TLS: log in with the keyboard, run an application
//! from the run form after its plan, watch its nodes finish in order without reloading, read a
//! node's report, stop a job, filter the list, see the applications' graph and the cluster,
//! kill the leader and watch the job page fail over and the cluster page show the election,
//! an unknown job, a phone-sized screen, logout, and an expired session. One browser serves
//! every check; each page's screenshot lands in `target/console-screenshots/`.
//!
//! Without Chromium the test is skipped with a note, unless `PORCH_CONSOLE_REQUIRED=1` (set
//! by `.ci/run`, which installs it), where it fails.

use porch_tests::browser::{self, Browser};
use porch_tests::{Cluster, FAST, execution_logger, executions, wait_until};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Duration;

const LAMP_NODES: [&str; 3] = ["db1.example.com", "app1.example.com", "lb1.example.com"];
const SLOW_NODES: [&str; 3] = [
    "slow1.example.com",
    "slow2.example.com",
    "slow3.example.com",
];
const WAIT: Duration = Duration::from_secs(30);

fn codedir() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../lang/examples/code")
        .canonicalize()
        .expect("example code")
        .display()
        .to_string()
}

fn screenshots() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/console-screenshots")
}

/// Saves the page and checks the file is a real picture, not an empty frame.
fn shoot(browser: &Browser, name: &str) {
    let path = screenshots().join(format!("{name}.png"));
    browser.screenshot(&path);
    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    assert!(size > 5_000, "{}: only {size} bytes", path.display());
}

/// Records every class change of the job page's node rows, in order, from now on; and marks
/// the page, so a reload (which would lose the mark) is noticed.
const WATCH_ROWS: &str = "window.__marker = 'same page'; window.__seen = [];
new MutationObserver((changes) => changes.forEach((m) => {
  if (m.target.id && m.target.id.startsWith('node-')) window.__seen.push([m.target.id.slice(5), m.target.className]);
})).observe(document.getElementById('nodes'), {subtree: true, attributes: true, attributeFilter: ['class']});";

fn seen(browser: &Browser) -> Vec<(String, String)> {
    browser
        .run("return window.__seen || [];", vec![])
        .as_array()
        .into_iter()
        .flatten()
        .map(|pair| {
            (
                pair[0].as_str().unwrap_or("").to_string(),
                pair[1].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

fn position(seen: &[(String, String)], node: &str, class: &str) -> Option<usize> {
    seen.iter().position(|(n, c)| n == node && c == class)
}

fn row_class(browser: &Browser, node: &str) -> String {
    browser
        .run(
            "const r = document.getElementById('node-' + arguments[0]); return r ? r.className : '';",
            vec![json!(node)],
        )
        .as_str()
        .unwrap_or("")
        .to_string()
}

fn job_id_of(url: &str) -> u64 {
    url.rsplit('/')
        .next()
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("{url} is not a job page"))
}

#[test]
fn the_console_drives_and_watches_jobs_in_a_real_browser_through_a_leader_failover() {
    if let Some(why) = browser::missing() {
        if std::env::var("PORCH_CONSOLE_REQUIRED").as_deref() == Ok("1") {
            panic!("PORCH_CONSOLE_REQUIRED=1 but {why}");
        }
        eprintln!("skipped: {why}");
        return;
    }
    let code = codedir();
    let mut flags = FAST.to_vec();
    flags.extend(["--codedir", code.as_str()]);
    let mut cluster = Cluster::start(3, &flags);
    let log = cluster.dir.path().join("exec.log");
    let lamp_script = execution_logger(cluster.dir.path(), &log, 1.5, &[]);
    let slow_script = execution_logger(cluster.dir.path(), &log, 5.0, &[]);
    for node in LAMP_NODES {
        cluster.start_agent(node, &lamp_script);
    }
    for node in SLOW_NODES {
        cluster.start_agent(node, &slow_script);
    }
    let leader = cluster.wait_for_leader(Duration::from_secs(10));
    let all: Vec<&str> = LAMP_NODES.iter().chain(&SLOW_NODES).copied().collect();
    cluster.wait_agents_connected(leader, &all);

    let certs: Vec<PathBuf> = std::iter::once(cluster.cacert())
        .chain((1..=3).map(|id| {
            cluster
                .ssldir
                .join("certs")
                .join(format!("{}.pem", cluster.certname(id)))
        }))
        .collect();
    let browser = Browser::start(
        &browser::spki_hashes(&certs),
        &cluster.dir.path().join("chromedriver.log"),
    );
    let urls: std::collections::BTreeMap<u64, String> =
        (1..=3).map(|id| (id, cluster.url(id))).collect();
    let url = |id: u64| urls[&id].clone();
    let first = *cluster.running().first().expect("a node");

    // Logging in: the console sends a stranger to the login page, and back after it.
    browser.goto(&format!("{}/console/jobs", url(first)));
    browser.wait_text(".notice", "Log in to use the console", WAIT);
    shoot(&browser, "01-login");
    let login = browser.find("input[name=login]");
    browser.type_into(&login, "admin");
    let password = browser.find("input[name=password]");
    browser.type_into(&password, &format!("{}\u{E007}", cluster.admin_password()));
    browser.wait_text("main h1", "Jobs", WAIT);
    let cookie = browser
        .cookies()
        .into_iter()
        .find(|c| c["name"] == "__Host-porch-session")
        .expect("the session cookie");
    assert_eq!(cookie["httpOnly"], true, "{cookie}");
    assert_eq!(cookie["secure"], true, "{cookie}");
    assert_eq!(cookie["sameSite"], "Strict", "{cookie}");
    assert_eq!(
        browser.run("return document.cookie;", vec![]),
        "",
        "scripts must not see the session"
    );

    // The run form shows the plan first; the job page follows the run live, in order.
    browser.goto(&format!("{}/console/run", url(first)));
    browser.type_into(&browser.find("input[name=application]"), "Lamp[prod]");
    browser.click(&browser.find("form.run button[type=submit]"));
    browser.wait_text("main h1", "Plan: 3 nodes in 3 levels", WAIT);
    assert_eq!(
        browser
            .text(".plan-levels")
            .unwrap_or_default()
            .matches("Level")
            .count(),
        3
    );
    shoot(&browser, "02-plan");
    browser.click(&browser.find("form.confirm button[type=submit]"));
    wait_until(WAIT, "the job page", || {
        browser.url().contains("/console/jobs/").then_some(())
    });
    browser.run(WATCH_ROWS, vec![]);
    let lamp_job = job_id_of(&browser.url());
    browser.wait_text("#job-state", "finished", WAIT);
    let changes = seen(&browser);
    for node in LAMP_NODES {
        assert_eq!(
            row_class(&browser, node),
            "s-finished",
            "{node}: {changes:?}"
        );
    }
    let lb_finished = position(&changes, "lb1.example.com", "s-finished")
        .unwrap_or_else(|| panic!("the last level's finish was never seen live: {changes:?}"));
    let app_running = position(&changes, "app1.example.com", "s-running");
    let app_finished = position(&changes, "app1.example.com", "s-finished");
    if let Some(db_finished) = position(&changes, "db1.example.com", "s-finished") {
        assert!(
            app_running.is_none_or(|a| a > db_finished),
            "app1 ran before db1 finished: {changes:?}"
        );
    }
    assert!(
        app_finished.is_some_and(|a| a < lb_finished),
        "lb1 finished before app1: {changes:?}"
    );
    assert_eq!(
        browser.run("return window.__marker;", vec![]),
        "same page",
        "the page reloaded instead of updating"
    );
    let ran = executions(&log);
    let time = |kind: &str, node: &str| {
        ran.iter()
            .find(|(k, n, j, _, _)| k == kind && n == node && *j == lamp_job)
            .map(|e| e.4)
            .unwrap_or_else(|| panic!("no {kind} of {node} in job {lamp_job}: {ran:?}"))
    };
    assert!(time("start", "app1.example.com") >= time("end", "db1.example.com"));
    assert!(time("start", "lb1.example.com") >= time("end", "app1.example.com"));
    assert!(
        browser
            .text("#levels")
            .unwrap_or_default()
            .contains("1 nodes: 1 finished")
    );
    shoot(&browser, "03-job-finished");

    // A node's report.
    browser.click(&browser.find("a[href$='/nodes/app1.example.com']"));
    browser.wait_text("main h1", "app1.example.com", WAIT);
    let report = browser.text("main").unwrap_or_default();
    assert!(
        report.contains("node_finished") && report.contains("Duration"),
        "{report}"
    );
    shoot(&browser, "04-node-report");

    // Stopping a job: the running node finishes, the others are skipped, live.
    browser.goto(&format!("{}/console/run", url(first)));
    browser.type_into(
        &browser.find("textarea[name=nodes]"),
        &SLOW_NODES.join("\n"),
    );
    browser.type_into(&browser.find("input[name=concurrency]"), "1");
    browser.click(&browser.find("form.run button[type=submit]"));
    browser.wait_text("main h1", "Plan: 3 nodes", WAIT);
    browser.click(&browser.find("form.confirm button[type=submit]"));
    wait_until(WAIT, "the slow job's page", || {
        browser.url().contains("/console/jobs/").then_some(())
    });
    let slow_job = job_id_of(&browser.url());
    wait_until(WAIT, "a slow node running", || {
        SLOW_NODES
            .iter()
            .any(|n| row_class(&browser, n) == "s-running")
            .then_some(())
    });
    browser.click(&browser.find("#stop button"));
    browser.wait_text("#job-state", "stop", WAIT);
    wait_until(WAIT, "the other slow nodes skipped", || {
        (SLOW_NODES
            .iter()
            .filter(|n| row_class(&browser, n) == "s-skipped")
            .count()
            == 2)
            .then_some(())
    });
    shoot(&browser, "05-job-stopping");
    browser.wait_text("#job-state", "stopped", WAIT);
    assert_eq!(
        browser.run("return document.getElementById('stop') === null;", vec![]),
        true,
        "a stopped job still offers Stop"
    );

    // The list, filtered.
    browser.goto(&format!("{}/console/jobs?state=stopped", url(first)));
    let listed = browser.wait_text("table.jobs tbody", &slow_job.to_string(), WAIT);
    assert!(
        !listed.contains("Lamp[prod]"),
        "the filter kept a finished job: {listed}"
    );
    browser.goto(&format!("{}/console/jobs", url(first)));
    let listed = browser.wait_text("table.jobs tbody", "Lamp[prod]", WAIT);
    assert!(
        listed.contains("finished") && listed.contains("stopped"),
        "{listed}"
    );
    shoot(&browser, "06-jobs");

    // Applications: the produces/consumes picture.
    browser.goto(&format!(
        "{}/console/apps?environment=production",
        url(first)
    ));
    let graph = browser.wait_text("svg.app-graph", "Sql['lamp-prod']", WAIT);
    assert!(graph.contains("on db1.example.com"), "{graph}");
    assert!(
        browser.run(
            "return document.querySelectorAll('svg.app-graph .edge').length >= 2;",
            vec![]
        ) == true
    );
    shoot(&browser, "07-applications");

    // Unknown job: a clear message.
    browser.goto(&format!("{}/console/jobs/99999", url(first)));
    browser.wait_text(".notice.error", "There is no job 99999", WAIT);
    shoot(&browser, "08-unknown-job");

    // A phone: no sideways scrolling of the page itself.
    browser.set_window_size(390, 844);
    browser.goto(&format!("{}/console/jobs/{lamp_job}", url(first)));
    browser.wait_text("#job-state", "finished", WAIT);
    assert_eq!(
        browser.run(
            "return document.documentElement.scrollWidth <= window.innerWidth + 1;",
            vec![]
        ),
        true,
        "the job page overflows a phone's width"
    );
    shoot(&browser, "09-phone-job");
    browser.set_window_size(1280, 900);

    // Kill the leader: the job page it served follows the job through another node, and a
    // cluster page open on a survivor shows the election.
    let leader = cluster.wait_for_leader(Duration::from_secs(10));
    let survivor = *cluster
        .running()
        .iter()
        .find(|id| **id != leader)
        .expect("a follower");
    let job_tab = browser.current_tab();
    let cluster_tab = browser.new_tab();
    browser.goto(&format!("{}/console/cluster", url(survivor)));
    wait_until(WAIT, "every member's live view", || {
        (1..=3)
            .all(|id| {
                let role = browser
                    .text(&format!("#member-{id} .role"))
                    .unwrap_or_default();
                role == "leader" || role == "follower"
            })
            .then_some(())
    });
    browser.wait_text(&format!("#member-{leader} .role"), "leader", WAIT);
    shoot(&browser, "10-cluster");
    browser.switch_to(&job_tab);
    let body = json!({"environment": "production", "scope": {"application": "Lamp[prod]"}});
    let (status, answer) = cluster.post(survivor, "/command/deploy", &body.to_string(), &[]);
    assert_eq!(status, 202, "{answer}");
    let failover_job: u64 = answer["job"]["name"]
        .as_str()
        .and_then(|n| n.parse().ok())
        .expect("a job id");
    browser.goto(&format!("{}/console/jobs/{failover_job}", url(leader)));
    browser.run(WATCH_ROWS, vec![]);
    wait_until(WAIT, "db1 running on the page", || {
        (row_class(&browser, "db1.example.com") != "s-new").then_some(())
    });
    cluster.kill9(leader);
    browser.wait_text("#job-state", "finished", Duration::from_secs(60));
    let banner = browser.text("#banner").unwrap_or_default();
    assert!(
        banner.contains("following the job through"),
        "no failover notice: {banner:?}"
    );
    assert!(
        cluster
            .running()
            .iter()
            .any(|id| banner.contains(&format!("through {}", url(*id)))),
        "the notice names no surviving node: {banner:?}"
    );
    let changes = seen(&browser);
    assert!(
        position(&changes, "lb1.example.com", "s-finished").is_some(),
        "the last node's finish did not reach the page after the failover: {changes:?}"
    );
    assert_eq!(browser.run("return window.__marker;", vec![]), "same page");
    shoot(&browser, "11-job-after-failover");
    browser.switch_to(&cluster_tab);
    browser.wait_text(&format!("#member-{leader} .role"), "not answering", WAIT);
    let new_leader = wait_until(WAIT, "a new leader on the cluster page", || {
        cluster
            .running()
            .into_iter()
            .find(|id| browser.text(&format!("#member-{id} .role")).as_deref() == Some("leader"))
    });
    assert_ne!(new_leader, leader);
    let elections = browser.wait_text("#elections", &format!("node {new_leader} leads"), WAIT);
    assert!(
        elections.contains(&format!("node {leader} stopped answering")),
        "{elections}"
    );
    shoot(&browser, "12-cluster-election");

    // Logging out revokes the session.
    browser.goto(&format!("{}/console/jobs", url(survivor)));
    browser.click(&browser.find("form.logout button"));
    browser.wait_text(".notice", "You are logged out", WAIT);
    browser.goto(&format!("{}/console/jobs", url(survivor)));
    browser.wait_text(".notice", "Log in to use the console", WAIT);

    // An expired session on an open page: back to the login page, which says why.
    let short = cluster
        .login(survivor, "admin", &cluster.admin_password(), "4s")
        .expect("a short login");
    browser.add_cookie(
        json!({"name": "__Host-porch-session", "value": short, "path": "/",
        "secure": true, "httpOnly": true, "sameSite": "Strict"}),
    );
    browser.goto(&format!("{}/console/cluster", url(survivor)));
    browser.wait_text("main h1", "Cluster", WAIT);
    browser.wait_text(".notice", "Your session has expired", WAIT);
    assert!(
        browser.url().contains("/console/login"),
        "{}",
        browser.url()
    );
    shoot(&browser, "13-session-expired");
}
