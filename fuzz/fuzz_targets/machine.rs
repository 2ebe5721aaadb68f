//! Arbitrary command sequences into the state machine: it never panics, never reports a
//! broken invariant (its own I1/I2 checks after every entry), and every stock row keeps
//! `reserved <= on_hand` and `on_hand <= max_stock` throughout.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use state::{LogEntry, Machine, MachineConfig, PartitionState};
use topics::*;

#[derive(Debug, Arbitrary)]
enum Op {
    Restock {
        sku: u8,
        wh: u8,
        n: u32,
    },
    Adjust {
        sku: u8,
        wh: u8,
        delta: i64,
    },
    Set {
        sku: u8,
        wh: u8,
        on_hand: u64,
        version: u64,
    },
    Reserve {
        sku: u8,
        n: u32,
        wh: Option<u8>,
        order: Option<Vec<u8>>,
        strategy: u8,
        partial: bool,
        ttl: Option<u64>,
    },
    Release {
        res: u16,
        sku: u8,
    },
    Purchase {
        res: u16,
        sku: u8,
        n: Option<u32>,
    },
    Extend {
        res: u16,
        sku: u8,
        ttl: u64,
    },
    Tick,
    Retry {
        index: u16,
    },
    Reuse {
        index: u16,
        tenant: bool,
    },
    Wait {
        ms: u32,
    },
}

fn sku(i: u8) -> Sku {
    Sku::new(format!("s{}", i % 4)).unwrap()
}

fn wh(i: u8) -> WarehouseId {
    WarehouseId::new(format!("w{}", i % 6)).unwrap()
}

fn command(op: &Op, offsets: &[u64]) -> Option<Command> {
    let res = |r: u16, s: u8| {
        let seq = offsets.get(r as usize % offsets.len().max(1)).copied().unwrap_or(u64::from(r));
        ReservationId::new(sku(s), seq)
    };
    Some(match op {
        Op::Restock { sku: s, wh: w, n } => Command::Restock(Restock {
            sku: sku(*s),
            warehouse: wh(*w),
            quantity: Quantity::new(*n)?,
        }),
        Op::Adjust { sku: s, wh: w, delta } => {
            Command::Adjust(Adjust { sku: sku(*s), warehouse: wh(*w), delta: *delta })
        }
        Op::Set { sku: s, wh: w, on_hand, version } => Command::SetStock(SetStock {
            sku: sku(*s),
            warehouse: wh(*w),
            on_hand: *on_hand,
            expected_version: *version % 8,
        }),
        Op::Reserve { sku: s, n, wh: w, order, strategy, partial, ttl } => {
            Command::Reserve(Reserve {
                sku: sku(*s),
                quantity: Quantity::new(*n)?,
                warehouse: w.map(wh),
                strategy: match (strategy % 4, order) {
                    (0, Some(order)) => Some(Strategy::Priority {
                        order: order.iter().take(80).map(|w| wh(*w)).collect(),
                    }),
                    (1, _) => Some(Strategy::MostAvailable),
                    (2, _) => Some(Strategy::FewestSplits),
                    _ => None,
                },
                allow_partial: *partial,
                ttl_ms: *ttl,
            })
        }
        Op::Release { res: r, sku: s } => Command::Release(Release { reservation: res(*r, *s) }),
        Op::Purchase { res: r, sku: s, n } => Command::Purchase(Purchase {
            reservation: res(*r, *s),
            quantity: n.and_then(Quantity::new),
        }),
        Op::Extend { res: r, sku: s, ttl } => {
            Command::Extend(Extend { reservation: res(*r, *s), ttl_ms: *ttl })
        }
        Op::Tick | Op::Retry { .. } | Op::Reuse { .. } | Op::Wait { .. } => return None,
    })
}

fuzz_target!(|ops: Vec<Op>| {
    let config = MachineConfig {
        default_ttl_ms: 1_000,
        max_ttl_ms: 5_000,
        dedup_window_ms: 20_000,
        reservation_retention_ms: 10_000,
        ..MachineConfig::default()
    };
    let machine = Machine::new(config);
    let mut state = PartitionState::new();
    let mut sent: Vec<Request> = Vec::new();
    let mut offsets: Vec<u64> = Vec::new();
    let mut now = 1_000_000u64;
    for (i, op) in ops.iter().take(200).enumerate() {
        let tenant = TenantId::new("t").unwrap();
        let log = match op {
            Op::Tick => LogCommand::Tick,
            Op::Wait { ms } => {
                now = now.saturating_add(u64::from(*ms));
                LogCommand::Tick
            }
            Op::Retry { index } if !sent.is_empty() => {
                LogCommand::Request(sent[*index as usize % sent.len()].clone())
            }
            Op::Reuse { index, tenant: other } if !sent.is_empty() => {
                let mut r = sent[*index as usize % sent.len()].clone();
                if *other {
                    r.tenant = TenantId::new("u").unwrap();
                } else {
                    r.command = Command::Release(Release {
                        reservation: ReservationId::new(r.command.sku().clone(), 0),
                    });
                }
                LogCommand::Request(r)
            }
            _ => match command(op, &offsets) {
                Some(command) => {
                    let r = Request {
                        tenant,
                        command_id: CommandId::new(format!("c{i}")).unwrap(),
                        command,
                    };
                    sent.push(r.clone());
                    LogCommand::Request(r)
                }
                None => LogCommand::Tick,
            },
        };
        let position = Position { partition: 0, offset: i as i64 };
        let fx = machine
            .apply(&mut state, LogEntry { position, at: LogTime(now), command: &log })
            .unwrap_or_else(|e| panic!("entry {i} ({op:?}): {e}"));
        if let Some(Reply { outcome: Outcome::Reserved { reservation, .. }, .. }) = &fx.reply {
            offsets.push(reservation.seq);
        }
        for ((s, w), l) in state.stock_rows() {
            assert!(l.reserved <= l.on_hand, "I1 broken on {s}/{w} after entry {i}: {l:?}");
            assert!(l.on_hand <= config.max_stock, "{s}/{w} above max_stock: {l:?}");
        }
    }
});
