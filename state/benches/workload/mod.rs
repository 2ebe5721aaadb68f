//! The workload of the machine's benchmarks (`apply` here, and the instruction count of
//! `examples/instructions.rs`): a state with stock for every SKU, then reserve / purchase /
//! release in the ratio 2 : 1 : 1, each a new request with its own idempotency record.

use state::{LogEntry, Machine, PartitionState};
use topics::*;

pub const SPREAD_SKUS: usize = 10_000;

#[derive(Clone, Copy)]
pub enum Shape {
    Spread,
    Hot,
}

/// A state with stock for every SKU, and a log of `n` commands after it: reserve 2,
/// then purchase half of the holds and release the other half.
pub struct Workload {
    pub state: PartitionState,
    pub log: Vec<(Position, LogTime, LogCommand)>,
}

pub fn sku_of(shape: Shape, i: usize) -> Sku {
    match shape {
        Shape::Spread => Sku::new(format!("sku-{}", i % SPREAD_SKUS)).unwrap(),
        Shape::Hot => Sku::new("hot").unwrap(),
    }
}

pub fn workload(machine: &Machine, shape: Shape, n: usize) -> Workload {
    let tenant = TenantId::new("bench").unwrap();
    let wh = WarehouseId::new("w1").unwrap();
    let mut state = PartitionState::new();
    let skus = match shape {
        Shape::Spread => SPREAD_SKUS,
        Shape::Hot => 1,
    };
    let mut offset = 0i64;
    // Log time advances 1 ms per 100 commands: holds (10 min default) never expire here.
    let entry = |command: Command, offset: &mut i64| -> (Position, LogTime, LogCommand) {
        let request = Request {
            tenant: tenant.clone(),
            command_id: CommandId::new(format!("c{offset}")).unwrap(),
            command,
        };
        let e = (
            Position { partition: 0, offset: *offset },
            LogTime(1_000 + *offset as u64 / 100),
            LogCommand::Request(request),
        );
        *offset += 1;
        e
    };
    for i in 0..skus {
        let restock = Command::Restock(Restock {
            sku: sku_of(shape, i),
            warehouse: wh.clone(),
            quantity: Quantity::new(1_000_000_000).unwrap(),
        });
        let (position, at, command) = entry(restock, &mut offset);
        machine.apply(&mut state, LogEntry { position, at, command: &command }).unwrap();
    }
    state.take_changes();
    let mut log = Vec::with_capacity(n);
    let mut open: Vec<ReservationId> = Vec::new();
    for i in 0..n {
        let command = if i % 2 == 0 || open.is_empty() {
            let sku = sku_of(shape, i / 2);
            open.push(ReservationId::new(sku.clone(), offset as u64));
            Command::Reserve(Reserve {
                sku,
                quantity: Quantity::new(2).unwrap(),
                warehouse: None,
                strategy: None,
                allow_partial: false,
                ttl_ms: None,
            })
        } else {
            let reservation = open.remove(0);
            if i % 4 == 1 {
                Command::Purchase(Purchase { reservation, quantity: None })
            } else {
                Command::Release(Release { reservation })
            }
        };
        log.push(entry(command, &mut offset));
    }
    Workload { state, log }
}
