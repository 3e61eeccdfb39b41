//! `porch dev`, the README's first command, as a new user runs it: one command, a secure
//! local cluster, and the clients in the same directory finding it on their own.

use porch_tests::{free_port, porch_bin};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// A `porch dev` process, killed if a test ends without stopping it.
struct Dev(Child);

impl Drop for Dev {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `porch dev` in `dir` on `base_port`, without the example agents unless `agents`.
fn porch_dev(dir: &std::path::Path, base_port: u16, agents: bool) -> Dev {
    Dev(Command::new(porch_bin())
        .args(["dev", "--base-port", &base_port.to_string()])
        .args(["--agents", if agents { "true" } else { "false" }])
        .current_dir(dir)
        .env("HOME", dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start porch dev"))
}

/// Every line `child` writes to stdout and stderr, as it writes them.
fn lines(child: &mut Child) -> mpsc::Receiver<String> {
    let (send, receive) = mpsc::channel();
    let stdout = child.stdout.take().expect("piped stdout");
    let stderr = child.stderr.take().expect("piped stderr");
    for stream in [
        Box::new(stdout) as Box<dyn std::io::Read + Send>,
        Box::new(stderr),
    ] {
        let send = send.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                if send.send(line).is_err() {
                    break;
                }
            }
        });
    }
    receive
}

/// Lines until one contains `wanted`, up to `timeout`; all of them, for a failure message.
fn read_until(lines: &mpsc::Receiver<String>, wanted: &str, timeout: Duration) -> (bool, String) {
    let deadline = std::time::Instant::now() + timeout;
    let mut seen = String::new();
    while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
        match lines.recv_timeout(left) {
            Ok(line) => {
                seen.push_str(&line);
                seen.push('\n');
                if line.contains(wanted) {
                    return (true, seen);
                }
            }
            Err(_) => break,
        }
    }
    (false, seen)
}

fn client(dir: &std::path::Path, name: &str, args: &[&str]) -> Output {
    Command::new(porch_bin().with_file_name(name))
        .args(args)
        .current_dir(dir)
        .env("HOME", dir)
        .env_remove("PORCH_SERVICE_URL")
        .output()
        .expect("run a client")
}

/// Sends `signal` to porch dev and waits up to 10 s for it to exit.
fn stop(dev: &mut Dev, signal: &str) -> std::process::ExitStatus {
    let sent = Command::new("kill")
        .args([&format!("-{signal}"), &dev.0.id().to_string()])
        .status()
        .expect("run kill");
    assert!(sent.success(), "kill -{signal} failed");
    for _ in 0..100 {
        if let Ok(Some(status)) = dev.0.try_wait() {
            return status;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("porch dev did not stop within 10 s of SIG{signal}");
}

/// Whether the dev cluster's three ports are all free again within 10 s.
fn ports_freed(base_port: u16) -> Result<(), String> {
    for p in base_port..base_port + 3 {
        let free = (0..100).any(|_| {
            let bound = std::net::TcpListener::bind(("127.0.0.1", p)).is_ok();
            if !bound {
                std::thread::sleep(Duration::from_millis(100));
            }
            bound
        });
        if !free {
            return Err(format!("port {p} is still taken after porch dev stopped"));
        }
    }
    Ok(())
}

#[test]
fn porch_dev_is_one_command_and_clients_beside_it_run_jobs_on_it() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let port = free_port();
    let mut dev = porch_dev(dir.path(), port, true);
    let lines = lines(&mut dev.0);
    let (ready, seen) = read_until(&lines, "Ctrl+C stops the cluster", Duration::from_secs(90));
    assert!(ready, "porch dev did not come up:\n{seen}");
    assert!(seen.contains("TLS from a throwaway CA"), "{seen}");

    // No flags: the client finds the dev cluster, its CA and the admin's token from here.
    let run = client(
        dir.path(),
        "puppet-job",
        &["run", "--nodes", "web1.example.com,db1.example.com"],
    );
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    // The example agents fail 5 % of their runs on purpose: a finished job either way.
    assert!(
        matches!(run.status.code(), Some(0) | Some(1)),
        "the job did not finish: {:?}\n{out}",
        run.status
    );
    assert!(
        out.contains("web1.example.com") && out.contains("db1.example.com"),
        "{out}"
    );

    let status = client(dir.path(), "porch", &["cluster", "status"]);
    assert!(status.status.success(), "{status:?}");

    // SIGTERM, as a service manager or `timeout` stops it: its nodes go with it.
    let exit = stop(&mut dev, "TERM");
    assert!(exit.success(), "porch dev exited with {exit:?} on SIGTERM");
    ports_freed(port).unwrap();
}

#[test]
fn porch_dev_killed_with_sigkill_leaves_no_node_behind() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let port = free_port();
    let mut dev = porch_dev(dir.path(), port, false);
    let lines = lines(&mut dev.0);
    let (ready, seen) = read_until(&lines, "Ctrl+C stops the cluster", Duration::from_secs(90));
    assert!(ready, "porch dev did not come up:\n{seen}");
    stop(&mut dev, "KILL");
    ports_freed(port).unwrap();
}

#[test]
fn porch_dev_stops_and_names_the_node_that_could_not_start() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let port = free_port();
    // Node 2's port is taken.
    let _taken = std::net::TcpListener::bind(("127.0.0.1", port + 1)).expect("bind port + 1");
    let mut dev = porch_dev(dir.path(), port, false);
    let lines = lines(&mut dev.0);
    let (said, seen) = read_until(
        &lines,
        "node 2 of the dev cluster exited",
        Duration::from_secs(30),
    );
    assert!(said, "porch dev did not say that node 2 failed:\n{seen}");
    assert!(
        seen.contains("cannot bind"),
        "node 2's own reason is missing:\n{seen}"
    );
    let status = (0..100)
        .find_map(|_| {
            let exited = dev.0.try_wait().ok().flatten();
            if exited.is_none() {
                std::thread::sleep(Duration::from_millis(100));
            }
            exited
        })
        .expect("porch dev kept running with a node down");
    assert_eq!(status.code(), Some(1), "{seen}");
}
