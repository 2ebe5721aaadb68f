//! Replies by the position of the command they answer: a bounded cache (oldest out
//! first) and the waiters for replies not yet seen.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;
use topics::{CommandId, Position, Reply, TenantId};

#[derive(Debug)]
pub struct Replies {
    inner: Mutex<Inner>,
    capacity: usize,
}

#[derive(Debug, Default)]
struct Inner {
    by_position: HashMap<Position, Arc<Reply>>,
    /// The first reply seen for each command id (a later conflicting payload under the
    /// same id gets a `conflict` reply, which must not hide the command's own).
    by_key: HashMap<(TenantId, CommandId), Arc<Reply>>,
    order: VecDeque<Position>,
    waiters: HashMap<Position, Vec<oneshot::Sender<Arc<Reply>>>>,
    inserted: u64,
    /// Per partition, the highest command offset whose reply the tail has read: replies
    /// arrive in command order, so a command after it has no reply yet.
    tail_read: HashMap<i32, i64>,
}

/// A registered interest in one reply.
#[derive(Debug)]
pub struct Waiter {
    ready: Option<Arc<Reply>>,
    rx: Option<oneshot::Receiver<Arc<Reply>>>,
}

impl Waiter {
    pub fn ready(&self) -> Option<Arc<Reply>> {
        self.ready.clone()
    }

    pub async fn wait(self) -> Option<Arc<Reply>> {
        match (self.ready, self.rx) {
            (Some(r), _) => Some(r),
            (None, Some(rx)) => rx.await.ok(),
            (None, None) => None,
        }
    }
}

impl Replies {
    pub fn new(capacity: usize) -> Self {
        Self { inner: Mutex::default(), capacity: capacity.max(1) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn get(&self, at: Position) -> Option<Arc<Reply>> {
        self.lock().by_position.get(&at).cloned()
    }

    /// True when the reply to the command at `at` cannot have been read yet: the tail has
    /// read replies of that partition, all of them to earlier commands. Answered from
    /// memory, without asking Kafka.
    pub fn pending(&self, at: Position) -> bool {
        self.lock().tail_read.get(&at.partition).is_some_and(|read| at.offset > *read)
    }

    /// A reply the replies tail read (in order): kept like [`Replies::insert`], and the
    /// tail's progress in its partition noted for [`Replies::pending`].
    pub fn insert_from_tail(&self, at: Position, reply: Arc<Reply>) {
        self.insert(at, reply);
        let mut inner = self.lock();
        let read = inner.tail_read.entry(at.partition).or_insert(at.offset);
        *read = (*read).max(at.offset);
    }

    /// The command's reply by its id, if it is among the cached ones.
    pub fn by_key(&self, tenant: &TenantId, command_id: &CommandId) -> Option<Arc<Reply>> {
        self.lock().by_key.get(&(tenant.clone(), command_id.clone())).cloned()
    }

    /// Interest in the reply at `at`; already there, or delivered when it arrives.
    pub fn waiter(&self, at: Position) -> Waiter {
        let mut inner = self.lock();
        if let Some(r) = inner.by_position.get(&at) {
            return Waiter { ready: Some(r.clone()), rx: None };
        }
        let (tx, rx) = oneshot::channel();
        inner.waiters.entry(at).or_default().push(tx);
        Waiter { ready: None, rx: Some(rx) }
    }

    /// A reply arrived: keep it and wake whoever waits for it.
    pub fn insert(&self, at: Position, reply: Arc<Reply>) {
        let mut inner = self.lock();
        for tx in inner.waiters.remove(&at).unwrap_or_default() {
            let _ = tx.send(reply.clone());
        }
        inner
            .by_key
            .entry((reply.tenant.clone(), reply.command_id.clone()))
            .or_insert_with(|| reply.clone());
        if inner.by_position.insert(at, reply).is_none() {
            inner.order.push_back(at);
            while inner.order.len() > self.capacity {
                let Some(old) = inner.order.pop_front() else { break };
                if let Some(r) = inner.by_position.remove(&old) {
                    let key = (r.tenant.clone(), r.command_id.clone());
                    if inner.by_key.get(&key).is_some_and(|k| Arc::ptr_eq(k, &r)) {
                        inner.by_key.remove(&key);
                    }
                }
            }
        }
        // Waiters whose callers gave up leave closed senders behind; sweep them now and
        // then so the map stays bounded by the live waiters.
        inner.inserted += 1;
        if inner.inserted.is_multiple_of(4096) {
            inner.waiters.retain(|_, txs| {
                txs.retain(|tx| !tx.is_closed());
                !txs.is_empty()
            });
        }
    }

    pub fn len(&self) -> usize {
        self.lock().by_position.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use topics::{LogTime, Outcome, Rejection};

    fn reply(id: &str, offset: i64, outcome: Outcome) -> (Position, Arc<Reply>) {
        let position = Position { partition: 0, offset };
        let reply = Reply {
            tenant: TenantId::new("t").unwrap(),
            command_id: CommandId::new(id).unwrap(),
            position,
            at: LogTime(1),
            outcome,
        };
        (position, Arc::new(reply))
    }

    #[test]
    fn bounded_first_reply_per_key_wins_and_waiters_wake() {
        let replies = Replies::new(2);
        let ok = Outcome::Released { reservation: "s~1".parse().unwrap(), returned: 1 };
        let (a, first) = reply("k", 1, ok.clone());
        let waiter = replies.waiter(a);
        assert!(waiter.ready().is_none());
        replies.insert(a, first.clone());
        let woken =
            tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(waiter.wait());
        assert_eq!(woken, Some(first.clone()));

        // A conflicting payload under the same key gets its own reply at its own position;
        // the key keeps pointing at the command's own reply.
        let (b, conflict) = reply("k", 2, Outcome::Rejected(Rejection::Conflict));
        replies.insert(b, conflict.clone());
        let k = (TenantId::new("t").unwrap(), CommandId::new("k").unwrap());
        assert_eq!(replies.by_key(&k.0, &k.1), Some(first));
        assert_eq!(replies.get(b), Some(conflict));

        // Over capacity the oldest goes, and with it the key's entry.
        let (c, other) = reply("other", 3, ok);
        replies.insert(c, other);
        assert_eq!(replies.len(), 2);
        assert!(replies.get(a).is_none());
        assert!(replies.by_key(&k.0, &k.1).is_none());
    }

    #[test]
    fn a_command_after_what_the_tail_read_is_pending() {
        let replies = Replies::new(8);
        let ok = Outcome::Released { reservation: "s~1".parse().unwrap(), returned: 1 };
        let (a, first) = reply("k", 10, ok);
        assert!(!replies.pending(a), "nothing read yet: unknown, not pending");
        replies.insert_from_tail(a, first);
        assert!(replies.pending(Position { partition: 0, offset: 11 }));
        assert!(!replies.pending(a));
        assert!(!replies.pending(Position { partition: 0, offset: 3 }), "older: ask Kafka");
        assert!(!replies.pending(Position { partition: 1, offset: 11 }), "another partition");
    }
}
