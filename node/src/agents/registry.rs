//! Which agents hold a session on *this* node, and how to send them a message.
//!
//! A newer session for the same certname supersedes the older one (as PCP does): the old
//! sender is dropped, which ends the old stream.

use porch_agent::proto::ServerMessage;
use std::collections::BTreeMap;
use std::sync::Mutex;
use tokio::sync::mpsc;

/// Messages queued per session before a slow agent is treated as gone.
pub const SESSION_QUEUE_MAX: usize = 256;

/// The sending half of a session's outbound queue.
///
/// Messages travel boxed: tokio's channel allocates its slots 32 at a time, the first block
/// when the channel is made, and 32 unboxed `ServerMessage`s cost 2 KB per connected agent
/// that sits mostly unused (an idle agent only ever gets heartbeats).
#[derive(Clone)]
pub struct SessionSender(mpsc::Sender<Box<ServerMessage>>);

pub type SessionReceiver = mpsc::Receiver<Box<ServerMessage>>;

/// A new session's outbound queue, holding up to [`SESSION_QUEUE_MAX`] messages.
pub fn session_queue() -> (SessionSender, SessionReceiver) {
    let (tx, rx) = mpsc::channel(SESSION_QUEUE_MAX);
    (SessionSender(tx), rx)
}

impl SessionSender {
    /// Queues `message` unless the queue is full or the session ended.
    pub fn try_send(&self, message: ServerMessage) -> Result<(), ()> {
        self.0.try_send(Box::new(message)).map_err(|_| ())
    }

    /// Queues `message`, waiting for room; fails only if the session ended.
    pub async fn send(&self, message: ServerMessage) -> Result<(), ()> {
        self.0.send(Box::new(message)).await.map_err(|_| ())
    }

    pub fn is_closed(&self) -> bool {
        self.0.is_closed()
    }
}

#[derive(Clone)]
pub struct SessionHandle {
    pub session_id: u64,
    pub sender: SessionSender,
}

#[derive(Default)]
pub struct Registry {
    sessions: Mutex<BTreeMap<String, SessionHandle>>,
    next_session_id: Mutex<u64>,
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, SessionHandle>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a session for `certname`, replacing any older one; returns its id.
    pub fn register(&self, certname: &str, sender: SessionSender) -> u64 {
        let session_id = {
            let mut next = self
                .next_session_id
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            *next += 1;
            *next
        };
        self.lock()
            .insert(certname.to_string(), SessionHandle { session_id, sender });
        session_id
    }

    /// Removes the session if it is still the current one for `certname`. Returns whether it was.
    pub fn unregister(&self, certname: &str, session_id: u64) -> bool {
        let mut sessions = self.lock();
        if sessions.get(certname).map(|s| s.session_id) == Some(session_id) {
            sessions.remove(certname);
            true
        } else {
            false
        }
    }

    pub fn is_current(&self, certname: &str, session_id: u64) -> bool {
        self.lock().get(certname).map(|s| s.session_id) == Some(session_id)
    }

    pub fn get(&self, certname: &str) -> Option<SessionHandle> {
        self.lock().get(certname).cloned()
    }

    pub fn certnames(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }
}
