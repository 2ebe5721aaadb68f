//! Property test: random command sequences against a reference model of the
//! invariants, checked after every step (I1, I2, I3, I7), then a replay of the same
//! log that must reproduce state, replies and events exactly (I6).
//!
//! The model does not re-implement allocation; it follows the machine's published
//! outputs (replies and events) and checks that the state agrees with them and with
//! the bookkeeping laws: units come only from stock-keeping commands, are held only by
//! active reservations, and are sold only out of holds.

use std::collections::BTreeMap;

use crate::support::*;
use proptest::prelude::{Just, ProptestConfig, any, prop, prop_assert_eq, prop_oneof, proptest};
use proptest::strategy::Strategy as Gen;
use state::{Effects, LogEntry, Machine, PartitionState};
use topics::*;

const SKUS: [&str; 2] = ["a", "b"];
const WHS: [&str; 2] = ["w1", "w2"];

#[derive(Debug, Clone)]
enum Op {
    Restock(usize, usize, u32),
    Adjust(usize, usize, i64),
    Set(usize, usize, u64, Option<u64>),
    Reserve {
        sku: usize,
        n: u32,
        wh: Option<usize>,
        strategy: u8,
        partial: bool,
        ttl: Option<u64>,
    },
    Release(usize),
    Purchase(usize, Option<u32>),
    Extend(usize, u64),
    Tick,
    /// Resend an earlier request exactly (a client retry).
    Retry(usize),
    /// Reuse an earlier command id for another command under the same tenant.
    Reuse(usize),
    Wait(u64),
}

fn op() -> impl Gen<Value = Op> {
    let i = || 0usize..2;
    prop_oneof![
        3 => (i(), i(), 1u32..8).prop_map(|(s, w, n)| Op::Restock(s, w, n)),
        1 => (i(), i(), -6i64..6).prop_map(|(s, w, d)| Op::Adjust(s, w, d)),
        1 => (i(), i(), 0u64..12, prop::option::of(0u64..4)).prop_map(|(s, w, n, v)| Op::Set(s, w, n, v)),
        6 => (i(), 1u32..6, prop::option::of(i()), 0u8..4, any::<bool>(), prop::option::of(0u64..3 * TTL))
            .prop_map(|(sku, n, wh, strategy, partial, ttl)| Op::Reserve { sku, n, wh, strategy, partial, ttl }),
        2 => (0usize..64).prop_map(Op::Release),
        3 => (0usize..64, prop::option::of(1u32..6)).prop_map(|(r, n)| Op::Purchase(r, n)),
        1 => (0usize..64, 0u64..2 * TTL).prop_map(|(r, t)| Op::Extend(r, t)),
        1 => Just(Op::Tick),
        2 => (0usize..64).prop_map(Op::Retry),
        1 => (0usize..64).prop_map(Op::Reuse),
        3 => (0u64..TTL).prop_map(Op::Wait),
    ]
}

/// What the model knows, built only from outputs and commands.
#[derive(Default)]
struct Model {
    /// Σ stock-keeping deltas per row.
    deltas: BTreeMap<(Sku, WarehouseId), i128>,
    /// Units sold per row, from purchases applied to the allocations in order.
    sold: BTreeMap<(Sku, WarehouseId), u64>,
    /// Every reservation ever created, with its allocations.
    created: BTreeMap<ReservationId, Vec<Allocation>>,
    /// How many terminal events each reservation got.
    ended: BTreeMap<ReservationId, u32>,
    /// First request and reply per (tenant, id).
    replies: BTreeMap<(TenantId, Sku, CommandId), (Command, Reply)>,
    sent: Vec<(CommandId, Command)>,
}

impl Model {
    fn observe(&mut self, log: &Log, sent: Option<(&CommandId, &Command)>, fx: &Effects) {
        for e in &fx.events {
            match e {
                Event::ReservationCreated { reservation, allocations, .. } => {
                    assert!(
                        self.created.insert(reservation.clone(), allocations.clone()).is_none(),
                        "id reused"
                    );
                }
                Event::ReservationPurchased { reservation, quantity, .. } => {
                    let mut left = u64::from(*quantity);
                    for a in &self.created[reservation] {
                        let take = left.min(u64::from(a.quantity));
                        left -= take;
                        *self
                            .sold
                            .entry((reservation.sku.clone(), a.warehouse.clone()))
                            .or_default() += take;
                    }
                    self.end(reservation);
                }
                Event::ReservationReleased { reservation, .. }
                | Event::ReservationExpired { reservation, .. } => self.end(reservation),
                _ => {}
            }
        }
        let (Some((id, command)), Some(reply)) = (sent, &fx.reply) else { return };
        // Idempotency is scoped by tenant, SKU and id.
        let key = (log.tenant.clone(), command.sku().clone(), id.clone());
        match self.replies.get(&key) {
            Some((first, original)) if first == command => {
                assert_eq!(reply, original, "I3: a retry got another reply")
            }
            Some(_) => assert_eq!(reply.outcome, Outcome::Rejected(Rejection::Conflict)),
            None => {
                self.account(command, &reply.outcome);
                self.replies.insert(key, (command.clone(), reply.clone()));
            }
        }
    }

    fn end(&mut self, r: &ReservationId) {
        let n = self.ended.entry(r.clone()).or_default();
        *n += 1;
        assert_eq!(*n, 1, "I7: {r} ended twice");
    }

    /// Stock-keeping deltas of an applied command.
    fn account(&mut self, command: &Command, outcome: &Outcome) {
        let Outcome::StockUpdated { sku, warehouse, level } = outcome else { return };
        let row = (sku.clone(), warehouse.clone());
        let on_hand_before = self.deltas.get(&row).copied().unwrap_or(0)
            - i128::from(self.sold.get(&row).copied().unwrap_or(0));
        let delta = match command {
            Command::Restock(c) => i128::from(c.quantity.get()),
            Command::Adjust(c) => i128::from(c.delta),
            Command::SetStock(c) => i128::from(c.on_hand) - on_hand_before,
            _ => unreachable!("only stock commands update stock"),
        };
        assert_eq!(
            on_hand_before + delta,
            i128::from(level.on_hand),
            "reply level disagrees with the model"
        );
        *self.deltas.entry(row).or_default() += delta;
    }

    fn check(&self, state: &PartitionState) {
        let mut held: BTreeMap<(Sku, WarehouseId), u64> = BTreeMap::new();
        for r in state.reservations().values() {
            assert_eq!(
                self.ended.contains_key(&r.id),
                r.state.is_final(),
                "I7: state vs events for {}",
                r.id
            );
            if r.state == ReservationState::Active {
                assert!(r.expires_at > state.log_time(), "a due hold is still active");
                for a in &r.allocations {
                    *held.entry((r.id.sku.clone(), a.warehouse.clone())).or_default() +=
                        u64::from(a.quantity);
                }
            }
        }
        for (row, level) in state.stock_rows() {
            assert!(level.reserved <= level.on_hand, "I1: {row:?} {level:?}");
            assert_eq!(
                level.reserved,
                held.get(&row).copied().unwrap_or(0),
                "I1: reserved is not the active holds"
            );
            assert_eq!(
                level.sold,
                self.sold.get(&row).copied().unwrap_or(0),
                "units sold outside a hold"
            );
            let units = i128::from(level.on_hand) + i128::from(level.sold);
            assert_eq!(
                units,
                self.deltas.get(&row).copied().unwrap_or(0),
                "I2: conservation for {row:?}"
            );
        }
    }
}

fn command(op: &Op, model: &Model, log: &Log) -> Option<Command> {
    let rid = |i: usize| -> ReservationId {
        let known: Vec<&ReservationId> = model.created.keys().collect();
        if known.is_empty() { rid("a", 999) } else { known[i % known.len()].clone() }
    };
    Some(match op {
        Op::Restock(s, w, n) => restock(SKUS[*s], WHS[*w], *n),
        Op::Adjust(s, w, d) => adjust(SKUS[*s], WHS[*w], *d),
        Op::Set(s, w, n, v) => {
            let current =
                log.state.stock_level(&sku(SKUS[*s]), &wh(WHS[*w])).map_or(0, |l| l.version);
            set_stock(SKUS[*s], WHS[*w], *n, v.unwrap_or(current))
        }
        Op::Reserve { sku: s, n, wh: w, strategy, partial, ttl } => Command::Reserve(Reserve {
            warehouse: w.map(|w| wh(WHS[w])),
            strategy: match strategy {
                0 => None,
                1 => Some(Strategy::MostAvailable),
                2 => Some(Strategy::FewestSplits),
                _ => Some(Strategy::Priority { order: vec![wh("w2"), wh("w1")] }),
            },
            allow_partial: *partial,
            ttl_ms: *ttl,
            ..reserve(SKUS[*s], *n)
        }),
        Op::Release(i) => release(&rid(*i)),
        Op::Purchase(i, n) => purchase(&rid(*i), *n),
        Op::Extend(i, t) => extend(&rid(*i), *t),
        _ => return None,
    })
}

fn run(ops: &[Op]) -> Log {
    let mut log = Log::new();
    let mut model = Model::default();
    for (n, op) in ops.iter().enumerate() {
        let (id, cmd) = match op {
            Op::Wait(ms) => {
                log.now += ms;
                continue;
            }
            Op::Tick => {
                let fx = log.tick();
                model.observe(&log, None, &fx);
                model.check(&log.state);
                continue;
            }
            Op::Retry(i) | Op::Reuse(i) if model.sent.is_empty() => continue,
            Op::Retry(i) => model.sent[i % model.sent.len()].clone(),
            Op::Reuse(i) => {
                let (id, _) = model.sent[i % model.sent.len()].clone();
                (id, restock("a", "w1", 1))
            }
            _ => (CommandId::new(format!("c{n}")).unwrap(), command(op, &model, &log).unwrap()),
        };
        let fx = log.send_as(&id, cmd.clone());
        model.observe(&log, Some((&id, &cmd)), &fx);
        model.check(&log.state);
        model.sent.push((id, cmd));
    }
    log
}

/// Apply `log`'s entries again to a fresh machine.
fn replay(log: &Log) -> (PartitionState, Vec<Effects>) {
    let machine = Machine::new(config());
    let mut state = PartitionState::new();
    let effects = log
        .entries
        .iter()
        .map(|(position, at, command)| {
            machine.apply(&mut state, LogEntry { position: *position, at: *at, command }).unwrap()
        })
        .collect();
    (state, effects)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 10_000, max_shrink_iters: 10_000, ..ProptestConfig::default() })]

    #[test]
    fn invariants_hold_after_every_step_and_replay_is_exact(ops in prop::collection::vec(op(), 1..80)) {
        let log = run(&ops);
        let (first, effects_a) = replay(&log);
        let (second, effects_b) = replay(&log);
        prop_assert_eq!(first.snapshot(), log.state.snapshot(), "I6: replay differs from the live state");
        prop_assert_eq!(second.snapshot(), first.snapshot());
        prop_assert_eq!(&effects_a, &log.effects, "I6: replay produced other replies or events");
        prop_assert_eq!(effects_a, effects_b);
    }
}
