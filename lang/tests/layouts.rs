//! The two layouts of an application model: PE's (`production`: `application`, mappings and
//! `site` among Puppet's own manifests) and the porch-only directory (`modern`: the same in
//! `orchestration/`, components in modules). Both plan the same; Puppet 7 parses every file
//! it would read in the new layout and refuses the old one.

use porch_lang::render::render_plan;
use porch_lang::views::instances_json;
use porch_lang::{Environment, PlanReport};
use std::path::{Path, PathBuf};
use std::process::Command;

fn environments() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/code/environments")
}

fn load(name: &str) -> Environment {
    Environment::load(&environments().join(".."), name)
        .unwrap_or_else(|e| panic!("the {name} example loads: {e}"))
}

fn levels(report: &PlanReport) -> Vec<(String, u32)> {
    let levels = report.plan.levels().expect("the plan is acyclic");
    report
        .plan
        .nodes()
        .iter()
        .zip(levels)
        .map(|(node, level)| (node.name.clone(), level))
        .collect()
}

#[test]
fn both_layouts_plan_the_same_application_order() {
    let (old, new) = (load("production"), load("modern"));
    for target in [
        "Lamp",
        "Lamp[prod]",
        "Lamp['dev']",
        "Webstack",
        "Webstack[shop]",
        "Webstack[blog]",
    ] {
        let before = old.plan_application(target).unwrap();
        let after = new.plan_application(target).unwrap();
        assert_eq!(levels(&after), levels(&before), "levels of {target}");
        assert_eq!(
            after.applications, before.applications,
            "instances of {target}"
        );
        assert_eq!(
            render_plan(&after, "env", target, None),
            render_plan(&before, "env", target, None),
            "job plan of {target}"
        );
    }
    for nodes in [
        vec!["app1.example.com", "lb1.example.com"],
        vec!["web1.example.com", "mon1.example.com", "cache1.example.com"],
    ] {
        let nodes: Vec<String> = nodes.into_iter().map(String::from).collect();
        let before = old.plan_nodes(&nodes).unwrap();
        let after = new.plan_nodes(&nodes).unwrap();
        assert_eq!(levels(&after), levels(&before), "levels of {nodes:?}");
        assert_eq!(after.warnings, before.warnings, "warnings for {nodes:?}");
    }
    assert_eq!(
        instances_json(&new, None).unwrap(),
        instances_json(&old, None).unwrap(),
        "components, nodes and capabilities of every instance"
    );
}

#[test]
fn new_layout_reads_the_model_from_the_orchestration_directory() {
    let env = load("modern");
    assert_eq!(
        env.applications["Lamp"].span.to_string(),
        "orchestration/lamp.pp:3:1"
    );
    assert_eq!(
        env.site.as_ref().unwrap().1.to_string(),
        "orchestration/site.pp:3:1"
    );
    assert_eq!(env.mappings.len(), 6);
    let types: Vec<&str> = env.capability_types.iter().map(String::as_str).collect();
    assert_eq!(types, vec!["Cache", "Http", "Sql", "Web"]);
}

/// `.pp` files Puppet Server reads in an environment: its manifests and its modules'.
fn files_puppet_reads(environment: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    pp_files(&environment.join("manifests"), &mut out);
    for module in std::fs::read_dir(environment.join("modules"))
        .unwrap()
        .flatten()
    {
        pp_files(&module.path().join("manifests"), &mut out);
    }
    out.sort();
    out
}

fn pp_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            pp_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "pp") {
            out.push(path);
        }
    }
}

/// `puppet parser validate` on `files` with a throwaway confdir and vardir (one per `label`:
/// tests run in parallel): exit success and
/// stderr, or None (with a note) where there is no `puppet` binary.
fn puppet_parser_validate(label: &str, files: &[PathBuf]) -> Option<(bool, String)> {
    let scratch =
        std::env::temp_dir().join(format!("porch-lang-puppet-{}-{label}", std::process::id()));
    let output = Command::new("puppet")
        .args(["parser", "validate", "--strict=error", "--color=false"])
        .arg("--confdir")
        .arg(scratch.join("conf"))
        .arg("--vardir")
        .arg(scratch.join("var"))
        .arg("--codedir")
        .arg(scratch.join("code"))
        .args(files)
        .output();
    let _ = std::fs::remove_dir_all(&scratch);
    match output {
        Ok(output) => Some((
            output.status.success(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!("note: no `puppet` binary on PATH; skipping the Puppet parser check");
            None
        }
        Err(e) => panic!("could not run puppet: {e}"),
    }
}

#[test]
fn puppet_accepts_every_file_it_reads_in_the_new_layout() {
    let files = files_puppet_reads(&environments().join("modern"));
    assert_eq!(files.len(), 7, "{files:?}");
    let Some((accepted, stderr)) = puppet_parser_validate("accepts", &files) else {
        return;
    };
    assert!(
        accepted && stderr.trim().is_empty(),
        "puppet parser validate refused the new layout:\n{stderr}"
    );
}

#[test]
fn puppet_refuses_application_site_and_mappings() {
    let modern = environments().join("modern/orchestration");
    let production = environments().join("production");
    let refused = [
        modern.join("lamp.pp"),     // application, capability mappings
        modern.join("site.pp"),     // site
        modern.join("webstack.pp"), // application, capability mappings
        production.join("manifests/site.pp"),
        production.join("modules/lamp/manifests/init.pp"),
        production.join("modules/lamp/manifests/db.pp"),
    ];
    let Some((accepted, stderr)) = puppet_parser_validate("refuses", &refused) else {
        return;
    };
    assert!(!accepted, "puppet accepted application code:\n{stderr}");
    for file in &refused {
        assert!(
            stderr
                .lines()
                .any(|l| l.starts_with("Error") && l.contains(&*file.to_string_lossy())),
            "puppet did not refuse {}:\n{stderr}",
            file.display()
        );
    }
}
