//! Open connections per client address. Each accepted connection is counted against its
//! peer's IP address for as long as it is open; a connection beyond the limit is answered
//! 429 `too-many-connections` on its first request and closed, so one client cannot take
//! every connection of an instance. The table holds only addresses with a connection
//! open, so it is as bounded as the connections themselves.
//!
//! The address is the TCP peer's: behind a proxy or load balancer that does not keep
//! client addresses, every client shares the proxy's, so raise the limit or turn it off
//! (0) there. Forwarded-for headers are not trusted.

use std::any::Any;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

use actix_web::dev::Extensions;

/// Open connections by peer address, against a limit.
#[derive(Debug)]
pub struct PerAddress {
    limit: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One open connection, kept in the connection's data; dropped when it closes.
#[derive(Debug)]
pub struct Connection {
    addr: IpAddr,
    table: Arc<PerAddress>,
    /// This connection came when its address already had `limit` open.
    pub over_limit: bool,
}

impl PerAddress {
    /// A table allowing `limit` connections per address (0: no limit, nothing counted).
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(Self { limit, open: Mutex::new(HashMap::new()) })
    }

    /// The `HttpServer::on_connect` hook: count a new TCP connection.
    pub fn on_connect(self: &Arc<Self>, conn: &dyn Any, data: &mut Extensions) {
        if self.limit == 0 {
            return;
        }
        let Some(addr) = conn
            .downcast_ref::<actix_web::rt::net::TcpStream>()
            .and_then(|s| s.peer_addr().ok())
            .map(|a| a.ip())
        else {
            return;
        };
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let n = open.entry(addr).or_insert(0);
        *n += 1;
        let over_limit = *n > self.limit;
        data.insert(Connection { addr, table: self.clone(), over_limit });
    }

    /// Connections open from `addr`.
    pub fn open(&self, addr: IpAddr) -> usize {
        self.open.lock().unwrap_or_else(PoisonError::into_inner).get(&addr).copied().unwrap_or(0)
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        let mut open = self.table.open.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = open.get_mut(&self.addr) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.addr);
            }
        }
    }
}
