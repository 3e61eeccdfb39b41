//! Which agents hold a session on *this* node, and how to send them a message.
//!
//! A newer session for the same certname supersedes the older one (as PCP does): the old
//! sender is dropped, which ends the old stream.

use porch_agent::proto::ServerMessage;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// Messages queued per session before a slow agent is treated as gone (the default of
/// `NodeConfig::capacities.session_queue`).
pub const SESSION_QUEUE_MAX: usize = 256;

/// The sending half of a session's outbound queue.
///
/// Messages travel boxed: tokio's channel allocates its slots 32 at a time, the first block
/// when the channel is made, and 32 unboxed `ServerMessage`s cost 2 KB per connected agent
/// that sits mostly unused (an idle agent only ever gets heartbeats).
///
/// A message refused because the queue was full is remembered (`overflowed`): the session
/// then asks its agent about every run in flight once there is room again
/// ([`SessionSender::take_overflow`]), so a dropped run start is re-sent rather than lost —
/// a healthy session never reconnects, and nothing else would ever send it.
#[derive(Clone)]
pub struct SessionSender {
    queue: mpsc::Sender<Box<ServerMessage>>,
    overflowed: Arc<AtomicBool>,
}

pub type SessionReceiver = mpsc::Receiver<Box<ServerMessage>>;

/// A new session's outbound queue, holding up to `capacity` messages (at least one).
fn session_queue(capacity: usize) -> (SessionSender, SessionReceiver) {
    let (queue, rx) = mpsc::channel(capacity.max(1));
    let sender = SessionSender {
        queue,
        overflowed: Arc::default(),
    };
    (sender, rx)
}

impl SessionSender {
    /// Queues `message` unless the queue is full or the session ended. A full queue is
    /// remembered for [`SessionSender::take_overflow`].
    pub fn try_send(&self, message: ServerMessage) -> Result<(), ()> {
        match self.queue.try_send(Box::new(message)) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.overflowed.store(true, Ordering::SeqCst);
                Err(())
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err(()),
        }
    }

    /// Queues `message` if there is room, without remembering a full queue: for messages
    /// whose loss costs nothing (a heartbeat: the agent hears the queued messages instead).
    /// Fails only if the session ended; returns whether the message was queued.
    pub fn send_if_room(&self, message: ServerMessage) -> Result<bool, ()> {
        match self.queue.try_send(Box::new(message)) {
            Ok(()) => Ok(true),
            Err(mpsc::error::TrySendError::Full(_)) => Ok(false),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(()),
        }
    }

    /// Whether a message was refused for a full queue since the last call (and forgets it).
    pub fn take_overflow(&self) -> bool {
        self.overflowed.swap(false, Ordering::SeqCst)
    }

    /// Queues `message`, waiting for room; fails only if the session ended.
    pub async fn send(&self, message: ServerMessage) -> Result<(), ()> {
        self.queue.send(Box::new(message)).await.map_err(|_| ())
    }

    pub fn is_closed(&self) -> bool {
        self.queue.is_closed()
    }
}

#[derive(Clone)]
pub struct SessionHandle {
    pub session_id: u64,
    pub sender: SessionSender,
}

pub struct Registry {
    sessions: Mutex<BTreeMap<String, SessionHandle>>,
    next_session_id: Mutex<u64>,
    /// Each new session's queue capacity.
    session_queue_max: usize,
}

impl Registry {
    pub fn new(session_queue_max: usize) -> Registry {
        Registry {
            sessions: Mutex::default(),
            next_session_id: Mutex::default(),
            session_queue_max,
        }
    }

    /// A new session's outbound queue, of this registry's capacity.
    pub fn new_session_queue(&self) -> (SessionSender, SessionReceiver) {
        session_queue(self.session_queue_max)
    }

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
