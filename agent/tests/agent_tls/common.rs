//! Fixtures: a dev CA with Puppet ssldirs and an unrelated second CA; agents built from
//! command-line flags; an AgentSessions server over TLS (or plain TCP) that reports who
//! opened each session; captured logs.

use clap::Parser;
use porch_agent::AgentArgs;
use porch_agent::args::Agents;
use porch_agent::proto::agent_sessions_server::{AgentSessions, AgentSessionsServer};
use porch_agent::proto::server_message::Kind;
use porch_agent::proto::{AgentMessage, Refused, ServerMessage, Welcome, agent_message};
use porch_tls::dev_ca::{DevCa, Validity};
use porch_tls::{PeerInfo, PlainListener, TlsIdentity, TlsListener, TlsPaths};
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tonic::{Request, Response, Status, Streaming};

pub const NODE: &str = "orch1.porch.test";

pub struct Pki {
    pub dir: tempfile::TempDir,
    pub ca: DevCa,
    pub other_ca: DevCa,
}

impl Pki {
    pub fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let ca = DevCa::create(&dir.path().join("ca")).unwrap();
        let other_ca = DevCa::create(&dir.path().join("other-ca")).unwrap();
        Pki { dir, ca, other_ca }
    }

    /// The agents' shared ssldir (one certificate per certname, as `--sessions` expects).
    pub fn ssldir(&self) -> PathBuf {
        self.dir.path().join("agent-ssl")
    }

    pub fn issue_agent(&self, certname: &str, validity: Validity) -> TlsPaths {
        self.ca
            .issue(&self.ssldir(), certname, &[], validity)
            .unwrap()
    }

    /// An ssldir whose certificate and CA are both another CA's.
    pub fn other_ssldir(&self, certname: &str) -> PathBuf {
        let ssldir = self.dir.path().join("other-ssl");
        self.other_ca
            .issue(&ssldir, certname, &[], Validity::default())
            .unwrap();
        ssldir
    }

    /// The orchestrator node's identity, for `alt_names` besides its certname.
    pub fn node(&self, alt_names: &[&str]) -> Arc<TlsIdentity> {
        let ssldir = self.dir.path().join("node-ssl");
        TlsIdentity::load(
            self.ca
                .issue(&ssldir, NODE, alt_names, Validity::default())
                .unwrap(),
        )
        .unwrap()
    }

    pub fn spool(&self) -> PathBuf {
        self.dir.path().join("spool")
    }
}

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: AgentArgs,
}

/// Agent flags as a user would type them (after `porch agent`).
pub fn parse(flags: &[&str]) -> Result<AgentArgs, clap::Error> {
    Cli::try_parse_from(std::iter::once("porch-agent").chain(flags.iter().copied()))
        .map(|cli| cli.args)
}

/// The agents of some flags, or the error the agent would exit with.
pub fn agents(flags: &[&str]) -> Result<Agents, String> {
    parse(flags).map_err(|e| e.to_string())?.agents()
}

/// What the server saw when a session opened: the connection's verified certname and the
/// Hello's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Opened {
    pub connection_certname: Option<String>,
    pub hello_certname: String,
}

/// Welcomes every session, or refuses every one with `refusal`; reports each opening.
struct TestSessions {
    opened: mpsc::UnboundedSender<Opened>,
    refusal: Option<String>,
}

type ServerStream = Pin<Box<dyn futures::Stream<Item = Result<ServerMessage, Status>> + Send>>;

#[tonic::async_trait]
impl AgentSessions for TestSessions {
    type SessionStream = ServerStream;

    async fn fetch_task_file(
        &self,
        _request: Request<porch_agent::proto::TaskFileRequest>,
    ) -> Result<Response<porch_agent::proto::TaskFile>, Status> {
        Err(Status::unimplemented("these tests run no tasks"))
    }

    async fn session(
        &self,
        request: Request<Streaming<AgentMessage>>,
    ) -> Result<Response<ServerStream>, Status> {
        let peer = request
            .extensions()
            .get::<axum::extract::ConnectInfo<PeerInfo>>()
            .map(|info| info.0.clone())
            .ok_or_else(|| Status::internal("no ConnectInfo<PeerInfo>"))?;
        let mut inbound = request.into_inner();
        let hello = match inbound.message().await?.and_then(|m| m.kind) {
            Some(agent_message::Kind::Hello(hello)) => hello,
            _ => return Err(Status::invalid_argument("no hello")),
        };
        let _ = self.opened.send(Opened {
            connection_certname: peer.certname,
            hello_certname: hello.certname,
        });
        let first = match &self.refusal {
            Some(reason) => Kind::Refused(Refused {
                reason: reason.clone(),
            }),
            None => Kind::Welcome(Welcome {
                orchestrator_node: 1,
                heartbeat_interval_secs: 30,
            }),
        };
        let refused = self.refusal.is_some();
        let first = ServerMessage { kind: Some(first) };
        // After a welcome the stream stays open (until the agent goes) with nothing to say.
        let stream = futures::stream::once(async move { Ok(first) });
        let stream: ServerStream = if refused {
            Box::pin(stream)
        } else {
            Box::pin(futures::StreamExt::chain(
                stream,
                futures::stream::pending(),
            ))
        };
        // Keep reading so the agent's heartbeats are consumed.
        tokio::spawn(async move { while let Ok(Some(_)) = inbound.message().await {} });
        Ok(Response::new(stream))
    }
}

pub struct TestServer {
    pub addr: SocketAddr,
    pub opened: mpsc::UnboundedReceiver<Opened>,
}

impl TestServer {
    /// Waits up to 10 s for the next session to open.
    pub async fn next_opened(&mut self) -> Opened {
        tokio::time::timeout(Duration::from_secs(10), self.opened.recv())
            .await
            .expect("a session opened within 10 s")
            .expect("the server is running")
    }
}

fn router(refusal: Option<String>) -> (axum::Router, mpsc::UnboundedReceiver<Opened>) {
    let (opened, opened_rx) = mpsc::unbounded_channel();
    let sessions = TestSessions { opened, refusal };
    let router = tonic::service::Routes::new(AgentSessionsServer::new(sessions)).into_axum_router();
    (router, opened_rx)
}

/// An AgentSessions server over TLS with `identity`, client certificates optional (as a node
/// serves); `refusal` makes it refuse every session with that reason.
pub async fn serve_tls(identity: Arc<TlsIdentity>, refusal: Option<&str>) -> TestServer {
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let (app, opened) = router(refusal.map(str::to_string));
    let listener = TlsListener::new(tcp, identity).with_handshake_timeout(Duration::from_secs(2));
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<PeerInfo>(),
        )
        .await
    });
    TestServer { addr, opened }
}

/// The same server over plain TCP (`--insecure-http`).
pub async fn serve_plain() -> TestServer {
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let (app, opened) = router(None);
    tokio::spawn(async move {
        axum::serve(
            PlainListener::new(tcp),
            app.into_make_service_with_connect_info::<PeerInfo>(),
        )
        .await
    });
    TestServer { addr, opened }
}

/// Log lines written while the guard lives, on this thread (the tests' runtime is
/// single-threaded, so the agent's tasks log here too).
#[derive(Clone, Default)]
pub struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    pub fn capture() -> (Logs, tracing::subscriber::DefaultGuard) {
        let logs = Logs::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(logs.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .finish();
        (logs, tracing::subscriber::set_default(subscriber))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    /// Waits up to 10 s for a line containing `needle`.
    pub async fn wait_for(&self, needle: &str) -> String {
        for _ in 0..1000 {
            if let Some(line) = self.text().lines().find(|line| line.contains(needle)) {
                return line.to_string();
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!(
            "expected a log line containing {needle:?}, logs were:\n{}",
            self.text()
        );
    }
}

pub struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl Write for LogWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Logs {
    type Writer = LogWriter;

    fn make_writer(&'a self) -> LogWriter {
        LogWriter(self.0.clone())
    }
}
