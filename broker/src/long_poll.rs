//! A front for the dev broker that makes empty fetches wait, as Kafka does.
//!
//! A Kafka broker that has nothing for a fetch keeps the request until data arrives or
//! the fetch's `max_wait_ms` passes. The dev broker (noida-db 0.2.3) answers at once,
//! so every fetching consumer spins: about 7,400 fetches a second from one idle consumer,
//! a core between the client's threads and the broker's (BROKERS.md). This front sits on
//! the port clients are given and relays each connection to the broker on a port of its
//! own, requests one way and answers the other, in order and pipelined as they come.
//!
//! When a fetch comes back with no records and no error, the client gets that answer at
//! once, and its next fetch on the connection (librdkafka sends it right away) waits in
//! the front until data may have arrived anywhere since the empty one was sent (a
//! produce or an `EndTxn` sent or answered, an `InitProducerId` that aborts a
//! predecessor's transaction answered), or [`ASK_AGAIN`] passes. A consumer thus sees new data
//! about as soon as it would from a broker that holds fetches, and an idle one costs 20
//! fetches a second. Each request still goes to the broker exactly once.
//!
//! Clients connect to the address the broker advertises, so the front rewrites the
//! broker's port to its own in the responses that advertise it (Metadata,
//! FindCoordinator, DescribeCluster). Anything it cannot parse passes through unchanged:
//! the front can make the broker no less correct than it is, only slow its empty
//! answers. Every response is checked to answer the oldest request outstanding
//! (correlation id); a mismatch closes the connection. When the broker closes a
//! connection (killed, restarted) the front closes the client's, as the broker's own close
//! would have; while the broker is down, a new connection is accepted and closed at once.

use std::collections::VecDeque;
use std::io;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::wire::{self, RequestHeader};

/// A fetch after an empty one waits at most this long, woken or not: data that arrived
/// without a wake (a commit marker the broker writes after answering `EndTxn`, a topic
/// deleted, an `acks=0` produce not yet applied) reaches the client within this. An idle
/// consumer then fetches 20 times a second instead of thousands.
const ASK_AGAIN: Duration = Duration::from_millis(50);

/// What the front has done with fetches since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HoldStats {
    /// Fetch requests relayed.
    pub fetches: u64,
    /// Fetches that waited before going to the broker.
    pub held: u64,
    /// Waits ended because data may have arrived.
    pub woken: u64,
    /// Waits ended by [`ASK_AGAIN`] (or the fetch's own shorter `max_wait_ms`).
    pub expired: u64,
}

/// The running front; stops accepting when dropped (open connections end with the
/// broker's).
pub struct LongPoll {
    listen: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for LongPoll {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LongPoll")
            .field("listen", &self.listen)
            .field("upstream", &self.shared.upstream())
            .finish()
    }
}

struct Shared {
    /// Where the broker listens now (it may move when the broker is started again).
    upstream: Mutex<SocketAddr>,
    stop: AtomicBool,
    wake: Wake,
    fetches: AtomicU64,
    held: AtomicU64,
    woken: AtomicU64,
    expired: AtomicU64,
}

impl Shared {
    fn upstream(&self) -> SocketAddr {
        *lock(&self.upstream)
    }
}

impl LongPoll {
    /// Serve `listener`, relaying to the broker at `upstream`.
    pub fn start(listener: TcpListener, upstream: SocketAddr) -> io::Result<Self> {
        let listen = listener.local_addr()?;
        let shared = Arc::new(Shared {
            upstream: Mutex::new(upstream),
            stop: AtomicBool::new(false),
            wake: Wake::default(),
            fetches: AtomicU64::new(0),
            held: AtomicU64::new(0),
            woken: AtomicU64::new(0),
            expired: AtomicU64::new(0),
        });
        let accept = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("broker-front".into())
                .spawn(move || accept_loop(&listener, &shared))?
        };
        Ok(Self { listen, shared, accept: Some(accept) })
    }

    /// Relay new connections to the broker at `upstream` from now on (connections already
    /// relayed stay on the old address until they close).
    pub fn set_upstream(&self, upstream: SocketAddr) {
        *lock(&self.shared.upstream) = upstream;
    }

    pub fn stats(&self) -> HoldStats {
        let s = &self.shared;
        HoldStats {
            fetches: s.fetches.load(Ordering::Relaxed),
            held: s.held.load(Ordering::Relaxed),
            woken: s.woken.load(Ordering::Relaxed),
            expired: s.expired.load(Ordering::Relaxed),
        }
    }
}

impl Drop for LongPoll {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept; it sees the flag and returns. If even that connection
        // cannot be made, the thread is left to end with the process.
        if TcpStream::connect(self.listen).is_ok()
            && let Some(accept) = self.accept.take()
        {
            let _ = accept.join();
        }
    }
}

fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>) {
    for client in listener.incoming() {
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        let client = match client {
            Ok(client) => client,
            Err(e) => {
                // Out of descriptors, say: try again shortly rather than spin.
                tracing::warn!(error = %e, "broker front: accept failed");
                std::thread::park_timeout(Duration::from_millis(100));
                continue;
            }
        };
        let shared = Arc::clone(shared);
        let spawned = std::thread::Builder::new()
            .name("broker-front-conn".into())
            .spawn(move || serve(client, &shared));
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "broker front: no thread for a connection; it is closed");
        }
    }
}

/// One client connection: requests flow to the broker on this thread (a fetch after an
/// empty one waits first), answers flow back on another.
fn serve(client: TcpStream, shared: &Arc<Shared>) {
    // A broker that is down refuses the connection: the client sees it closed. While it is
    // down, the kernel may even pick its port as this connection's own and connect the
    // socket to itself (a loopback simultaneous open), which would also keep the broker
    // from binding its port again: such a connection is dropped.
    let Ok(upstream) = TcpStream::connect(shared.upstream()) else { return };
    if upstream.local_addr().ok() == upstream.peer_addr().ok() {
        return;
    }
    let conn = Arc::new(Conn::default());
    let answers = match (client.try_clone(), upstream.try_clone()) {
        (Ok(c), Ok(u)) => {
            let (conn, shared) = (Arc::clone(&conn), Arc::clone(shared));
            std::thread::Builder::new()
                .name("broker-front-answers".into())
                .spawn(move || {
                    if let Err(e) = answers(&c, &u, &conn, &shared) {
                        tracing::trace!(error = %e, "broker front: answers ended");
                    }
                    // The broker closed (or broke the protocol): so does the client's end,
                    // and the broker's, should the requests thread be blocked writing to it.
                    let _ = c.shutdown(Shutdown::Both);
                    let _ = u.shutdown(Shutdown::Both);
                })
                .ok()
        }
        _ => None,
    };
    if answers.is_some()
        && let Err(e) = requests(&client, &upstream, &conn, shared)
    {
        tracing::trace!(error = %e, "broker front: requests ended");
    }
    let _ = client.shutdown(Shutdown::Both);
    let _ = upstream.shutdown(Shutdown::Both);
    if let Some(answers) = answers {
        let _ = answers.join();
    }
}

/// What the two directions of one connection share.
#[derive(Default)]
struct Conn {
    /// Requests sent and not yet answered, oldest first (Kafka answers in order).
    pending: Mutex<VecDeque<Pending>>,
    /// The wake generation when the connection's last fetch was sent, if it came back
    /// empty: the client's next fetch waits until the generation moves past it. A
    /// `ListOffsets` or `OffsetForLeaderEpoch` on the connection (a seek, an offset reset)
    /// clears it. (Comparing the fetches' bytes does not work: librdkafka rotates the
    /// order of the partitions in each fetch.)
    empty_fetch: Mutex<Option<u64>>,
}

struct Pending {
    correlation: Option<i32>,
    header: Option<RequestHeader>,
    /// The wake generation when the request was sent.
    generation: u64,
}

fn requests(
    mut client: &TcpStream,
    mut upstream: &TcpStream,
    conn: &Conn,
    shared: &Shared,
) -> io::Result<()> {
    client.set_nodelay(true)?;
    upstream.set_nodelay(true)?;
    while let Some(request) = wire::read_frame(&mut client)? {
        let header = wire::request(&request).map(|(h, _)| h);
        match header.map(|h| h.api_key) {
            Some(wire::FETCH) => {
                shared.fetches.fetch_add(1, Ordering::Relaxed);
                delay_fetch(&request, conn, shared);
            }
            Some(wire::LIST_OFFSETS | wire::OFFSET_FOR_LEADER_EPOCH) => {
                lock(&conn.empty_fetch).take();
            }
            _ => {}
        }
        let answered = !wire::expects_no_response(&request);
        if answered {
            let pending = Pending {
                correlation: wire::request_correlation(&request),
                header,
                generation: shared.wake.generation(),
            };
            lock(&conn.pending).push_back(pending);
        }
        wire::write_frame(&mut upstream, &request)?;
        // Data is on its way: a waiting fetch goes now, and may find it before the
        // producer hears back (as a broker that holds fetches answers one as soon as the
        // data is appended). If it is too early, its empty answer is sent at a newer
        // generation, and the bump when the write is answered sends the next one.
        let writes = header.is_some_and(|h| matches!(h.api_key, wire::PRODUCE | wire::END_TXN));
        if writes || !answered {
            shared.wake.bump();
        }
    }
    Ok(())
}

/// A fetch that follows an empty one is sent once data may have arrived since that one
/// was sent, or after [`ASK_AGAIN`] (at most its own `max_wait_ms`).
fn delay_fetch(request: &[u8], conn: &Conn, shared: &Shared) {
    let Some(since) = lock(&conn.empty_fetch).take() else { return };
    let Some(wait) = wire::fetch_max_wait_ms(request) else { return };
    let wait = Duration::from_millis(u64::try_from(wait).unwrap_or(0)).min(ASK_AGAIN);
    if wait.is_zero() {
        return;
    }
    shared.held.fetch_add(1, Ordering::Relaxed);
    let ended = match shared.wake.wait_past(since, Instant::now() + wait) {
        Some(_) => &shared.woken,
        None => &shared.expired,
    };
    ended.fetch_add(1, Ordering::Relaxed);
}

fn answers(
    mut client: &TcpStream,
    mut upstream: &TcpStream,
    conn: &Conn,
    shared: &Shared,
) -> io::Result<()> {
    let public_port = client.local_addr()?.port();
    let broker_port = upstream.peer_addr()?.port();
    while let Some(mut response) = wire::read_frame(&mut upstream)? {
        let pending = lock(&conn.pending).pop_front();
        let Some(pending) = pending.filter(|p| {
            p.correlation.is_some() && p.correlation == wire::response_correlation(&response)
        }) else {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "an answer to no request"));
        };
        if let Some(h) = pending.header {
            match h.api_key {
                wire::FETCH => {
                    let empty = wire::fetch_is_empty(&response, h) == Some(true);
                    *lock(&conn.empty_fetch) = empty.then_some(pending.generation);
                }
                wire::PRODUCE | wire::END_TXN | wire::INIT_PRODUCER_ID => shared.wake.bump(),
                wire::METADATA | wire::FIND_COORDINATOR | wire::DESCRIBE_CLUSTER
                    if wire::rewrite_ports(&mut response, h, broker_port, public_port)
                        .is_none() =>
                {
                    // The client will connect to the broker directly, past the front.
                    tracing::warn!(?h, "broker front: an address it could not rewrite");
                }
                _ => {}
            }
        }
        wire::write_frame(&mut client, &response)?;
    }
    Ok(())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A generation number bumped whenever data may have arrived, and a condition variable
/// held fetches wait on.
#[derive(Default)]
struct Wake {
    generation: Mutex<u64>,
    changed: Condvar,
}

impl Wake {
    fn generation(&self) -> u64 {
        *lock(&self.generation)
    }

    fn bump(&self) {
        *lock(&self.generation) += 1;
        self.changed.notify_all();
    }

    /// The generation once it differs from `seen`, or `None` at `deadline`.
    fn wait_past(&self, seen: u64, deadline: Instant) -> Option<u64> {
        let mut generation = lock(&self.generation);
        loop {
            if *generation != seen {
                return Some(*generation);
            }
            let left = deadline.checked_duration_since(Instant::now()).filter(|d| !d.is_zero())?;
            generation = self
                .changed
                .wait_timeout(generation, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wait_ends_at_once_if_data_may_have_arrived_since_and_else_at_its_deadline() {
        let wake = Wake::default();
        let seen = wake.generation();
        assert_eq!(wake.wait_past(seen, Instant::now()), None, "nothing new, deadline now");
        wake.bump();
        assert_eq!(
            wake.wait_past(seen, Instant::now() + Duration::from_secs(3600)),
            Some(seen + 1)
        );
    }
}
