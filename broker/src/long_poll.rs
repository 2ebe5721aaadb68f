//! A front for the dev broker that holds empty fetches the way Kafka does.
//!
//! A Kafka broker that has nothing for a fetch keeps the request until data arrives or
//! the fetch's `max_wait_ms` passes. The dev broker (noida-db 0.2.3) answers at once,
//! so every fetching consumer spins: about 7,400 fetches a second from one idle consumer,
//! a core between the client's threads and the broker's (BROKERS.md). This front sits on
//! the port clients are given and relays every request to the broker on a port of its
//! own, one request at a time per connection (as Kafka processes a connection's requests
//! in order, and librdkafka expects). When a fetch comes back with no records and no
//! error, the front keeps it and asks the broker again each time data may have arrived
//! anywhere (a produce, an `EndTxn`, an `InitProducerId` that aborts a predecessor's
//! transaction passed through it), and at least every [`ASK_AGAIN`], until the answer
//! has something or the fetch's wait is over; then it hands the client the last answer.
//!
//! Clients connect to the address the broker advertises, so the front rewrites the
//! broker's port to its own in the responses that advertise it (Metadata,
//! FindCoordinator, DescribeCluster). Anything it cannot parse passes through unchanged:
//! the front can make the broker no less correct than it is, only hold empty answers.
//! Every response is checked to answer the request before it (correlation id); a
//! mismatch closes the connection. When the broker goes away (killed, restarted) the
//! front closes the client's connection, as the broker's own close would have; while the
//! broker is down, a new connection is accepted and closed at once.

use std::io;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::wire::{self, RequestHeader};

/// A fetch is never held longer than this, whatever it asks for.
const MAX_HOLD: Duration = Duration::from_secs(30);

/// A held fetch is asked again at least this often, woken or not: data that arrived
/// without a wake (a commit marker the broker writes after answering `EndTxn`, a topic
/// deleted) reaches the client within this, and a broker that died is noticed.
const ASK_AGAIN: Duration = Duration::from_millis(50);

/// What the front has done with empty fetches since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HoldStats {
    /// Fetches answered empty by the broker and held.
    pub held: u64,
    /// Held fetches answered with something after data arrived (a wake or a periodic ask).
    pub woken: u64,
    /// Held fetches answered empty when their wait was over.
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
            .field("upstream", &self.shared.upstream)
            .finish()
    }
}

struct Shared {
    upstream: SocketAddr,
    stop: AtomicBool,
    wake: Wake,
    held: AtomicU64,
    woken: AtomicU64,
    expired: AtomicU64,
}

impl LongPoll {
    /// Serve `listener`, relaying to the broker at `upstream`.
    pub fn start(listener: TcpListener, upstream: SocketAddr) -> io::Result<Self> {
        let listen = listener.local_addr()?;
        let shared = Arc::new(Shared {
            upstream,
            stop: AtomicBool::new(false),
            wake: Wake::default(),
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

    pub fn stats(&self) -> HoldStats {
        let s = &self.shared;
        HoldStats {
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

fn serve(client: TcpStream, shared: &Shared) {
    // A broker that is down refuses the connection: the client sees it closed.
    let Ok(upstream) = TcpStream::connect(shared.upstream) else { return };
    let result = relay(&client, &upstream, shared);
    if let Err(e) = result {
        tracing::trace!(error = %e, "broker front: connection ended");
    }
    let _ = client.shutdown(Shutdown::Both);
    let _ = upstream.shutdown(Shutdown::Both);
}

fn relay(mut client: &TcpStream, mut upstream: &TcpStream, shared: &Shared) -> io::Result<()> {
    client.set_nodelay(true)?;
    upstream.set_nodelay(true)?;
    let public_port = client.local_addr()?.port();
    let broker_port = shared.upstream.port();
    loop {
        if !client_speaks_first(client, upstream)? {
            return Ok(());
        }
        let Some(request) = wire::read_frame(&mut client)? else { return Ok(()) };
        let header = wire::request(&request).map(|(h, _)| h);
        let since = shared.wake.generation();
        let asked = Instant::now();
        wire::write_frame(&mut upstream, &request)?;
        if wire::expects_no_response(&request) {
            shared.wake.bump();
            continue;
        }
        let mut response = answer(&request, upstream)?;
        if let Some(h) = header {
            match h.api_key {
                wire::FETCH => {
                    response = hold(&request, response, h, since, asked, upstream, shared)?;
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
}

/// Wait until the client sends something; false when the broker closed or sent something
/// first (it has nothing to say unasked: the connection is over).
fn client_speaks_first(client: &TcpStream, upstream: &TcpStream) -> io::Result<bool> {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    use std::os::fd::AsFd;
    let mut fds = [
        PollFd::new(client.as_fd(), PollFlags::POLLIN),
        PollFd::new(upstream.as_fd(), PollFlags::POLLIN),
    ];
    loop {
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => break,
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let ready = |fd: &PollFd<'_>| fd.revents().is_some_and(|r| !r.is_empty());
    Ok(!ready(&fds[1]))
}

/// The broker's response to `request`, which must carry its correlation id.
fn answer(request: &[u8], mut upstream: &TcpStream) -> io::Result<Vec<u8>> {
    let response = wire::read_frame(&mut upstream)?
        .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "broker closed"))?;
    let (asked, answered) =
        (wire::request_correlation(request), wire::response_correlation(&response));
    if asked != answered {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("response {answered:?} to request {asked:?}"),
        ));
    }
    Ok(response)
}

/// Keep asking the broker `request` (a fetch) while it answers empty, each time data may
/// have arrived since the last answer, until the fetch's wait from `asked` is over.
fn hold(
    request: &[u8],
    mut response: Vec<u8>,
    h: RequestHeader,
    since: u64,
    asked: Instant,
    upstream: &TcpStream,
    shared: &Shared,
) -> io::Result<Vec<u8>> {
    let Some(wait) = wire::fetch_max_wait_ms(request) else { return Ok(response) };
    let wait = Duration::from_millis(u64::try_from(wait).unwrap_or(0)).min(MAX_HOLD);
    if wait.is_zero() {
        return Ok(response);
    }
    let deadline = asked + wait;
    let mut seen = since;
    let mut held = false;
    while wire::fetch_is_empty(&response, h) == Some(true) {
        if !held {
            held = true;
            shared.held.fetch_add(1, Ordering::Relaxed);
        }
        if Instant::now() >= deadline {
            shared.expired.fetch_add(1, Ordering::Relaxed);
            return Ok(response);
        }
        let next = deadline.min(Instant::now() + ASK_AGAIN);
        if let Some(generation) = shared.wake.wait_past(seen, next) {
            seen = generation;
        }
        let mut to = upstream;
        wire::write_frame(&mut to, request)?;
        response = answer(request, upstream)?;
    }
    if held {
        shared.woken.fetch_add(1, Ordering::Relaxed);
    }
    Ok(response)
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
        *self.generation.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn bump(&self) {
        *self.generation.lock().unwrap_or_else(PoisonError::into_inner) += 1;
        self.changed.notify_all();
    }

    /// The generation once it differs from `seen`, or `None` at `deadline`.
    fn wait_past(&self, seen: u64, deadline: Instant) -> Option<u64> {
        let mut generation = self.generation.lock().unwrap_or_else(PoisonError::into_inner);
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
