//! The network a chaos run owns: one network namespace per node, joined by a bridge in a hub
//! namespace, with this process's namespace (agents, the workload, the delay proxies) on the
//! same subnet through one veth pair. Faults are iptables rules inside the nodes' namespaces,
//! so nothing outside the run's own namespaces is ever touched; deleting a namespace deletes
//! its rules, its links and everything routed through it.
//!
//! Addresses on `10.213.<tag>.0/24`: node `i` is `.i`; this namespace is `.100` (agents and
//! clients) and `.100+i` (the delay proxies' connections on behalf of node `i`, so node `j`
//! can tell node `i`'s traffic apart and drop it).
//!
//! Every peer connection runs through a delay proxy: in node `i`'s namespace a DNAT rule sends
//! its connections to node `j` to the proxy for `i -> j`, which forwards them from `.100+i`.
//! A cut `i -/-> j` drops, in `j`'s namespace, what arrives from `.100+i`: the connections `i`
//! opens to `j` carry nothing, those `j` opens to `i` still work.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::Command;

use super::schedule::NodeId;

/// Names of everything a chaos run creates start with this (`porch chaos --cleanup` looks
/// for it).
pub const NAME_PREFIX: &str = "porch-chaos-";

/// Stands for agents and clients (this namespace's own address) in [`Lab::cut`].
pub const CLIENTS: NodeId = 0;

pub struct Lab {
    tag: u8,
    nodes: usize,
    namespaces: Vec<String>,
    cuts: BTreeSet<(NodeId, NodeId)>,
}

/// Runs a command, turning a failure into an error naming the command and its output.
fn run(program: &str, args: &[&str]) -> Result<(), String> {
    let output = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if output.status.success() {
        return Ok(());
    }
    Err(format!(
        "`{program} {}` failed ({}): {}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stderr).trim()
    ))
}

/// Why this machine cannot run network faults, if it cannot.
pub fn unsupported_reason() -> Option<String> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Some("network faults need root (network namespaces, veth pairs, iptables)".into());
    }
    for (program, arg) in [("ip", "-V"), ("iptables", "--version")] {
        if Command::new(program).arg(arg).output().is_err() {
            return Some(format!(
                "network faults need `{program}` (iproute2, iptables), not found"
            ));
        }
    }
    None
}

pub fn namespace_name(tag: u8, suffix: &str) -> String {
    format!("{NAME_PREFIX}{tag}-{suffix}")
}

/// The namespaces that exist now, by name.
pub fn existing_namespaces() -> Vec<String> {
    Command::new("ip")
        .args(["netns", "list"])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter_map(|l| l.split_whitespace().next().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Deletes a namespace (its links, addresses and iptables rules go with it).
pub fn delete_namespace(name: &str) -> Result<(), String> {
    run("ip", &["netns", "delete", name])
}

/// A subnet tag no namespace and no address of this machine uses.
pub fn free_tag(seed_hint: u32) -> Result<u8, String> {
    let namespaces = existing_namespaces();
    let addresses = Command::new("ip")
        .args(["-4", "-o", "addr"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    (0..250u32)
        .map(|i| ((seed_hint + i) % 250 + 1) as u8)
        .find(|tag| {
            let prefix = format!("{NAME_PREFIX}{tag}-");
            !namespaces.iter().any(|n| n.starts_with(&prefix))
                && !addresses.contains(&format!("10.213.{tag}."))
        })
        .ok_or_else(|| "no free subnet in 10.213.0.0/16 for the chaos network".to_string())
}

impl Lab {
    /// Builds the namespaces, the bridge and the links for `nodes` nodes. On an error,
    /// whatever was built is deleted again.
    pub fn create(tag: u8, nodes: usize) -> Result<Lab, String> {
        let mut lab = Lab {
            tag,
            nodes,
            namespaces: Vec::new(),
            cuts: BTreeSet::new(),
        };
        lab.build()?;
        Ok(lab)
    }

    fn build(&mut self) -> Result<(), String> {
        let hub = namespace_name(self.tag, "hub");
        run("ip", &["netns", "add", &hub])?;
        self.namespaces.push(hub.clone());
        run("ip", &["-n", &hub, "link", "add", "br0", "type", "bridge"])?;
        run("ip", &["-n", &hub, "link", "set", "br0", "up"])?;
        // This namespace's end: created here with its peer moved into the hub at once, so a
        // crash leaves no link outside the run's namespaces (deleting the hub deletes both).
        let root_link = format!("pchaos{}", self.tag);
        run(
            "ip",
            &[
                "link", "add", &root_link, "type", "veth", "peer", "name", "up0", "netns", &hub,
            ],
        )?;
        run(
            "ip",
            &["-n", &hub, "link", "set", "up0", "master", "br0", "up"],
        )?;
        for i in 0..=self.nodes {
            let ip = if i == 0 {
                self.client_ip()
            } else {
                self.proxy_source_ip(i)
            };
            run(
                "ip",
                &["addr", "add", &format!("{ip}/24"), "dev", &root_link],
            )?;
        }
        run("ip", &["link", "set", &root_link, "up"])?;
        for id in 1..=self.nodes {
            let ns = self.namespace(id);
            run("ip", &["netns", "add", &ns])?;
            self.namespaces.push(ns.clone());
            let hub_end = format!("n{id}");
            run(
                "ip",
                &[
                    "-n", &ns, "link", "add", "eth0", "type", "veth", "peer", "name", &hub_end,
                    "netns", &hub,
                ],
            )?;
            run(
                "ip",
                &["-n", &hub, "link", "set", &hub_end, "master", "br0", "up"],
            )?;
            run(
                "ip",
                &[
                    "-n",
                    &ns,
                    "addr",
                    "add",
                    &format!("{}/24", self.node_ip(id)),
                    "dev",
                    "eth0",
                ],
            )?;
            run("ip", &["-n", &ns, "link", "set", "eth0", "up"])?;
            run("ip", &["-n", &ns, "link", "set", "lo", "up"])?;
        }
        Ok(())
    }

    pub fn tag(&self) -> u8 {
        self.tag
    }

    pub fn namespace(&self, id: NodeId) -> String {
        namespace_name(self.tag, &format!("n{id}"))
    }

    pub fn node_ip(&self, id: NodeId) -> Ipv4Addr {
        Ipv4Addr::new(10, 213, self.tag, id as u8)
    }

    pub fn client_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 213, self.tag, 100)
    }

    pub fn proxy_source_ip(&self, from: NodeId) -> Ipv4Addr {
        Ipv4Addr::new(10, 213, self.tag, 100 + from as u8)
    }

    fn iptables(&self, ns: &str, args: &[&str]) -> Result<(), String> {
        let comment = format!("{NAME_PREFIX}{}", self.tag);
        let mut full = vec!["netns", "exec", ns, "iptables", "-w"];
        full.extend_from_slice(args);
        full.extend_from_slice(&["-m", "comment", "--comment", &comment]);
        run("ip", &full)
    }

    /// Sends node `from`'s connections to `to` (at `port`) through `proxy`, for the whole run.
    pub fn route_through_proxy(
        &self,
        from: NodeId,
        to: NodeId,
        port: u16,
        proxy: SocketAddr,
    ) -> Result<(), String> {
        self.iptables(
            &self.namespace(from),
            &[
                "-t",
                "nat",
                "-A",
                "OUTPUT",
                "-p",
                "tcp",
                "-d",
                &self.node_ip(to).to_string(),
                "--dport",
                &port.to_string(),
                "-j",
                "DNAT",
                "--to-destination",
                &proxy.to_string(),
            ],
        )
    }

    fn cut_rule(&self, from: NodeId) -> Vec<String> {
        [
            "INPUT",
            "-s",
            &self.proxy_source_ip(from).to_string(),
            "-j",
            "DROP",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    /// Connections `from` (a node, or [`CLIENTS`]) opens to `to` carry nothing until
    /// [`Lab::uncut`].
    pub fn cut(&mut self, from: NodeId, to: NodeId) -> Result<(), String> {
        if self.cuts.contains(&(from, to)) {
            return Ok(());
        }
        let rule = self.cut_rule(from);
        let mut args: Vec<&str> = vec!["-A"];
        args.extend(rule.iter().map(String::as_str));
        self.iptables(&self.namespace(to), &args)?;
        self.cuts.insert((from, to));
        Ok(())
    }

    pub fn uncut(&mut self, from: NodeId, to: NodeId) -> Result<(), String> {
        if !self.cuts.contains(&(from, to)) {
            return Ok(());
        }
        let rule = self.cut_rule(from);
        let mut args: Vec<&str> = vec!["-D"];
        args.extend(rule.iter().map(String::as_str));
        self.iptables(&self.namespace(to), &args)?;
        self.cuts.remove(&(from, to));
        Ok(())
    }

    /// Removes every cut; the errors of those that could not be removed.
    pub fn heal_all(&mut self) -> Vec<String> {
        let cuts: Vec<_> = self.cuts.iter().copied().collect();
        cuts.into_iter()
            .filter_map(|(from, to)| self.uncut(from, to).err())
            .collect()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for error in self.heal_all() {
            eprintln!("porch chaos: healing: {error}");
        }
        // Nodes first, the hub (and this namespace's link with it) last.
        for ns in self.namespaces.iter().rev() {
            if let Err(error) = delete_namespace(ns) {
                eprintln!("porch chaos: cleanup: {error}");
            }
        }
    }
}
