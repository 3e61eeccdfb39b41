//! Bad input gets a clear error naming what and where: flags, data dirs, corrupt files, API
//! bodies. Never a panic, never a 500 for input.

use porch_tests::{Cluster, FAST, free_port, porch_bin};
use std::process::Command;
use std::time::Duration;

fn server(args: &[&str]) -> (i32, String) {
    let output = Command::new(porch_bin())
        .arg("server")
        .args(args)
        .output()
        .expect("run porch");
    let text = String::from_utf8_lossy(&output.stderr).to_string();
    (output.status.code().unwrap_or(-1), text)
}

#[test]
fn bad_flags_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("d").display().to_string();
    let (code, text) = server(&[
        "--id",
        "1",
        "--data-dir",
        &d,
        "--listen",
        "127.0.0.1:1",
        "--initial-cluster",
        "1=host",
    ]);
    assert_ne!(code, 0);
    assert!(
        text.contains("--initial-cluster") && text.contains("has no port"),
        "{text}"
    );
    let (code, text) = server(&[
        "--id",
        "1",
        "--data-dir",
        &d,
        "--listen",
        "nowhere",
        "--initial-cluster",
        "1=a:1",
    ]);
    assert_ne!(code, 0);
    assert!(text.contains("--listen"), "{text}");
    let (code, text) = server(&["--id", "x"]);
    assert_eq!(code, 2, "{text}");
}

#[test]
fn data_dir_of_another_node_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let d = dir.path().join("d").display().to_string();
    let listen = format!("127.0.0.1:{port}");
    let cluster = format!("2={listen}");
    let mut child = Command::new(porch_bin())
        .args([
            "server",
            "--id",
            "2",
            "--data-dir",
            &d,
            "--listen",
            &listen,
            "--initial-cluster",
            &cluster,
            "--insecure-http",
        ])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let _ = child.kill();
    let _ = child.wait();
    let (code, text) = server(&[
        "--id",
        "3",
        "--data-dir",
        &d,
        "--listen",
        &listen,
        "--initial-cluster",
        &cluster,
        "--insecure-http",
    ]);
    assert_ne!(code, 0);
    assert!(text.contains("node 2") && text.contains(&d), "{text}");
    assert!(!text.contains("panicked"), "{text}");
}

#[test]
fn unwritable_data_dir_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    let d = file.join("sub").display().to_string();
    let listen = format!("127.0.0.1:{}", free_port());
    let (code, text) = server(&[
        "--id",
        "1",
        "--data-dir",
        &d,
        "--listen",
        &listen,
        "--initial-cluster",
        "1=127.0.0.1:1",
        "--insecure-http",
    ]);
    assert_ne!(code, 0);
    assert!(text.contains("--data-dir"), "{text}");
    assert!(!text.contains("panicked"), "{text}");
}

#[test]
fn corrupt_sled_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let d = dir.path().join("d");
    let listen = format!("127.0.0.1:{port}");
    let cluster = format!("1={listen}");
    let mut child = Command::new(porch_bin())
        .args([
            "server",
            "--id",
            "1",
            "--data-dir",
            &d.display().to_string(),
            "--listen",
            &listen,
            "--initial-cluster",
            &cluster,
            "--insecure-http",
        ])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let _ = child.kill();
    let _ = child.wait();
    // Overwrite every file of the sled store with garbage.
    let sled_dir = d.join("sled");
    for entry in walk(&sled_dir) {
        std::fs::write(&entry, vec![0xA5u8; 4096]).unwrap();
    }
    let output = Command::new(porch_bin())
        .args([
            "server",
            "--id",
            "1",
            "--data-dir",
            &d.display().to_string(),
            "--listen",
            &listen,
            "--initial-cluster",
            &cluster,
            "--insecure-http",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "a corrupt store must not start: {text}"
    );
    assert!(
        text.contains("error:") && text.contains(&d.display().to_string()),
        "{text}"
    );
    assert!(!text.contains("panicked"), "{text}");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[test]
fn api_input_errors_are_4xx_with_pe_kinds() {
    let cluster = Cluster::start(1, FAST);
    let validation = "puppetlabs.validators/validation-error";
    let cases = [
        ("/command/deploy", "{", 400, validation),
        (
            "/command/deploy",
            r#"{"environment":"production","scope":{"nodes":["a"]},"bogus":1}"#,
            400,
            validation,
        ),
        (
            "/command/deploy",
            r#"{"environment":"production","scope":{"nodes":[]}}"#,
            400,
            "puppetlabs.orchestrator/empty-target",
        ),
        (
            "/command/deploy",
            r#"{"environment":"production","scope":{"query":"nodes { certname ~ \"nothing\" }"}}"#,
            400,
            "puppetlabs.orchestrator/empty-target",
        ),
        (
            "/command/deploy",
            r#"{"environment":"production","scope":{"query":"reports {}"}}"#,
            400,
            "puppetlabs.orchestrator/query-error",
        ),
        ("/command/stop", r#"{"job":"abc"}"#, 400, validation),
        (
            "/command/stop",
            r#"{"job":"999"}"#,
            404,
            "puppetlabs.orchestrator/unknown-job",
        ),
    ];
    for (path, body, status, kind) in cases {
        let (got, reply) = cluster.post(1, path, body, &[]);
        assert_eq!(got, status, "{path} {body}: {reply}");
        assert_eq!(reply["kind"], kind, "{path} {body}: {reply}");
        assert!(reply["msg"].as_str().is_some_and(|m| !m.is_empty()));
    }
    assert_eq!(cluster.get(1, "/jobs/abc").0, 400);
    let (status, reply) = cluster.get(1, "/jobs/12345");
    assert_eq!(
        (status, reply["kind"].as_str()),
        (404, Some("puppetlabs.orchestrator/unknown-job"))
    );
    assert_eq!(cluster.get(1, "/jobs?limit=x").0, 400);
    assert_eq!(cluster.get(1, "/jobs?order_by=nope").0, 400);
}
