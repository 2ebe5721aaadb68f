//! Builders for commands and a log driver shared by the state tests and benchmarks.
#![allow(dead_code)]

use state::{Effects, LogEntry, Machine, MachineConfig, PartitionState};
use topics::*;

pub fn sku(s: &str) -> Sku {
    Sku::new(s).unwrap()
}
pub fn wh(s: &str) -> WarehouseId {
    WarehouseId::new(s).unwrap()
}
pub fn q(n: u32) -> Quantity {
    Quantity::new(n).unwrap()
}
pub fn rid(s: &str, seq: u64) -> ReservationId {
    ReservationId::new(sku(s), seq)
}

pub fn restock(s: &str, w: &str, n: u32) -> Command {
    Command::Restock(Restock { sku: sku(s), warehouse: wh(w), quantity: q(n) })
}
pub fn reserve(s: &str, n: u32) -> Reserve {
    Reserve {
        sku: sku(s),
        quantity: q(n),
        warehouse: None,
        strategy: None,
        allow_partial: false,
        ttl_ms: None,
    }
}
pub fn release(r: &ReservationId) -> Command {
    Command::Release(Release { reservation: r.clone() })
}
pub fn purchase(r: &ReservationId, n: Option<u32>) -> Command {
    Command::Purchase(Purchase { reservation: r.clone(), quantity: n.map(q) })
}
pub fn extend(r: &ReservationId, ttl_ms: u64) -> Command {
    Command::Extend(Extend { reservation: r.clone(), ttl_ms })
}
pub fn adjust(s: &str, w: &str, delta: i64) -> Command {
    Command::Adjust(Adjust { sku: sku(s), warehouse: wh(w), delta })
}
pub fn set_stock(s: &str, w: &str, on_hand: u64, expected_version: u64) -> Command {
    Command::SetStock(SetStock { sku: sku(s), warehouse: wh(w), on_hand, expected_version })
}

pub const TTL: u64 = 60_000;

pub fn config() -> MachineConfig {
    MachineConfig {
        default_ttl_ms: TTL,
        max_ttl_ms: 10 * TTL,
        dedup_window_ms: 100 * TTL,
        reservation_retention_ms: 100 * TTL,
        ..MachineConfig::default()
    }
}

/// A partition log being applied: offsets count up from 0, time is set by the caller.
pub struct Log {
    pub machine: Machine,
    pub state: PartitionState,
    pub offset: i64,
    pub now: u64,
    pub tenant: TenantId,
    next_id: u64,
    pub entries: Vec<(Position, LogTime, LogCommand)>,
    pub effects: Vec<Effects>,
}

impl Log {
    pub fn new() -> Self {
        Self::with(config())
    }

    pub fn with(config: MachineConfig) -> Self {
        Self {
            machine: Machine::new(config),
            state: PartitionState::new(),
            offset: 0,
            now: 1_000_000,
            tenant: TenantId::new("acme").unwrap(),
            next_id: 0,
            entries: Vec::new(),
            effects: Vec::new(),
        }
    }

    pub fn entry(&mut self, command: LogCommand) -> Effects {
        let position = Position { partition: 0, offset: self.offset };
        self.offset += 1;
        let at = LogTime(self.now);
        self.entries.push((position, at, command.clone()));
        let fx = self
            .machine
            .apply(&mut self.state, LogEntry { position, at, command: &command })
            .unwrap();
        self.effects.push(fx.clone());
        fx
    }

    /// Send `command` under a fresh command id; return its outcome.
    pub fn send(&mut self, command: Command) -> Outcome {
        self.next_id += 1;
        let id = CommandId::new(format!("c{}", self.next_id)).unwrap();
        self.send_as(&id, command).reply.unwrap().outcome
    }

    pub fn send_as(&mut self, id: &CommandId, command: Command) -> Effects {
        let request = Request { tenant: self.tenant.clone(), command_id: id.clone(), command };
        self.entry(LogCommand::Request(request))
    }

    pub fn tick(&mut self) -> Effects {
        self.entry(LogCommand::Tick)
    }

    /// Reserve and return the reservation id (the test expects success).
    pub fn hold(&mut self, r: Reserve) -> ReservationId {
        match self.send(Command::Reserve(r)) {
            Outcome::Reserved { reservation, .. } => reservation,
            other => panic!("expected a reservation, got {other:?}"),
        }
    }

    pub fn level(&self, s: &str, w: &str) -> StockLevel {
        *self.state.stock_level(&sku(s), &wh(w)).unwrap()
    }
}
