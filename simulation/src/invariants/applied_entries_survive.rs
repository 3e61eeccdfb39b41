//! Committed entries survive every crash, correlated power loss included: a log index that
//! any node incarnation applied (a crashed one's last applied entry counts — apply follows
//! commit) is applied with the same log id by every node incarnation that ever reaches it.
//! Raft's State Machine Safety and Leader Completeness (Ongaro & Ousterhout 2014, §5.4), which
//! rest on every node persisting an entry before acknowledging it.

use super::{Observation, Violation};
use std::collections::BTreeMap;

#[derive(Default)]
pub struct AppliedEntries {
    /// index → (log id, who applied it first).
    seen: BTreeMap<u64, (String, String)>,
}

impl AppliedEntries {
    pub fn check(&mut self, observation: &Observation, violations: &mut Vec<Violation>) {
        for sample in observation.applied {
            match self.seen.get(&sample.index) {
                Some((log_id, who)) if *log_id != sample.log_id => violations.push(Violation {
                    invariant: "applied entries survive",
                    detail: format!(
                        "index {} was applied as {log_id} by {who} and as {} by {}: a committed entry was lost",
                        sample.index, sample.log_id, sample.who
                    ),
                }),
                Some(_) => {}
                None => {
                    self.seen.insert(
                        sample.index,
                        (sample.log_id.clone(), sample.who.clone()),
                    );
                }
            }
        }
    }
}
