//! Differential property test: the state machine against an independent reference
//! model written from the contract (`model.rs`), compared outcome by outcome.
//!
//! Every generated entry goes to both; after each one the test asserts identical
//! `Effects` (reply, events, touched), identical stock rows for every SKU the case uses
//! and every touched SKU, the model's own invariants (I1, I2, I7), I3 (a replayed reply
//! is the original one, byte for byte) and liveness (a reserve that fits the available
//! stock of its candidate rows is reserved; releasing or buying an active hold works).
//!
//! ```text
//! # 10,000 cases (the default)
//! cargo test -p state --test it reference::
//! # 1,000,000 cases
//! SKUFLOW_MODEL_CASES=1000000 cargo test -p state --release --test it reference::
//! ```

mod model;

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::{Just, ProptestConfig, any, prop, prop_oneof, proptest};
use proptest::strategy::Strategy as Gen;
use proptest::test_runner::TestCaseError;
use state::{Effects, LogEntry, Machine, MachineConfig, PartitionState};
use topics::{
    Adjust, Command, CommandId, Extend, LogCommand, LogTime, Outcome, Position, Purchase, Quantity,
    Release, Reply, Request, ReservationId, ReservationState, Reserve, Restock, SetStock, Sku,
    StockLevel, Strategy, TenantId, WarehouseId,
};

use self::model::Model;

const DEFAULT_TTL: u64 = 1_000;
const MAX_TTL: u64 = 5_000;
const MAX_Q: u32 = 1_000;
const MAX_STOCK: u64 = 1_000_000;
const MAX_WH: usize = 4;

fn config() -> MachineConfig {
    MachineConfig {
        default_ttl_ms: DEFAULT_TTL,
        max_ttl_ms: MAX_TTL,
        dedup_window_ms: 20_000,
        reservation_retention_ms: 10_000,
        max_quantity: MAX_Q,
        max_stock: MAX_STOCK,
        max_warehouses: MAX_WH as u32,
    }
}

/// A case uses the first `skus` SKUs and `whs` warehouses; a pick outside them is an
/// unknown name (an unstocked SKU, a fifth warehouse, ...).
const SKUS: [&str; 4] = ["a", "b", "c", "zz"];
const WHS: [&str; 6] = ["w1", "w2", "w3", "w4", "w5", "w6"];
const TENANTS: [&str; 2] = ["acme", "globex"];

fn pick<'a>(raw: u8, pool: usize, names: &[&'a str]) -> &'a str {
    if raw < 200 { names[raw as usize % pool] } else { names[raw as usize % names.len()] }
}
fn q(n: u32) -> Quantity {
    Quantity::new(n.max(1)).unwrap()
}
fn sku(s: &str) -> Sku {
    Sku::new(s).unwrap()
}
fn tenant(raw: u8) -> TenantId {
    TenantId::new(TENANTS[usize::from(raw >= 220)]).unwrap()
}
fn other_tenant(t: &TenantId) -> TenantId {
    TenantId::new(if t.as_str() == TENANTS[0] { TENANTS[1] } else { TENANTS[0] }).unwrap()
}
fn other_sku(s: &Sku) -> Sku {
    sku(SKUS.iter().find(|n| **n != s.as_str()).unwrap())
}

// ----- generated shapes ----------------------------------------------------------------

#[derive(Debug, Clone)]
struct Case {
    skus: usize,
    whs: usize,
    partition: i32,
    start: u64,
    first_offset: i64,
    steps: Vec<Step>,
}

#[derive(Debug, Clone)]
struct Step {
    op: Op,
    time: Time,
    /// Offset distance to the next entry (>= 1: offsets strictly increase).
    gap: i64,
    tenant: u8,
}

#[derive(Debug, Clone)]
enum Time {
    Same,
    /// Forward; large values jump past TTLs, retention and the dedup window.
    Fwd(u64),
    /// This entry's record time is behind the clock (the machine keeps max).
    Back(u64),
    /// To the end of time: every later addition saturates.
    Far(u64),
}

/// Resolved against the current row when the op runs.
#[derive(Debug, Clone)]
enum Amount {
    Small(u64),
    Exact(u64),
    /// max_stock + n
    NearMax(i64),
    /// the row's reserved + n
    NearReserved(i64),
}

#[derive(Debug, Clone)]
enum Delta {
    Raw(i64),
    To(Amount),
}

#[derive(Debug, Clone)]
enum Version {
    Current,
    Off(i64),
    Exact(u64),
}

#[derive(Debug, Clone)]
enum Strat {
    Default,
    Most,
    Fewest,
    /// Raw picks: empty, too long, duplicated, unknown warehouses.
    Raw(Vec<u8>),
    /// A permutation of the case's warehouses cut to `k`.
    Valid(Vec<usize>, usize),
}

#[derive(Debug, Clone)]
enum Hold {
    /// A reservation created earlier in the case (maybe final or forgotten).
    Known(usize),
    /// A known reservation's seq under another SKU.
    OtherSku(usize),
    Unknown(u64),
}

#[derive(Debug, Clone)]
enum Who {
    Owner,
    Other,
}

#[derive(Debug, Clone)]
enum Reuse {
    /// Same tenant and command id, slightly different payload (same SKU).
    Payload,
    /// Same command id and payload under the other tenant.
    Tenant,
    /// Same tenant and command id, the command aimed at another SKU.
    Sku,
}

#[derive(Debug, Clone)]
enum Op {
    Restock {
        sku: u8,
        wh: u8,
        qty: Amount,
    },
    Adjust {
        sku: u8,
        wh: u8,
        delta: Delta,
    },
    Set {
        sku: u8,
        wh: u8,
        on_hand: Amount,
        version: Version,
    },
    Reserve {
        sku: u8,
        qty: u32,
        wh: Option<u8>,
        strat: Strat,
        partial: bool,
        ttl: Option<u64>,
    },
    Release {
        hold: Hold,
        who: Who,
    },
    Purchase {
        hold: Hold,
        qty: Option<u32>,
        who: Who,
    },
    Extend {
        hold: Hold,
        ttl: u64,
        who: Who,
    },
    Tick,
    /// Resend an earlier request exactly.
    Retry(usize),
    Reuse(usize, Reuse),
}

fn ttl() -> impl Gen<Value = u64> {
    prop_oneof![
        4 => 1u64..=MAX_TTL,
        1 => Just(0u64),
        1 => Just(1u64),
        1 => Just(DEFAULT_TTL),
        1 => Just(MAX_TTL),
        1 => Just(MAX_TTL + 1),
        1 => Just(u64::MAX),
    ]
}

fn reserve_qty() -> impl Gen<Value = u32> {
    prop_oneof![
        12 => 1u32..=10,
        3 => 1u32..=300,
        2 => Just(1u32),
        1 => Just(MAX_Q),
        1 => Just(MAX_Q + 1),
        1 => Just(u32::MAX),
        1 => 1u32..=u32::MAX,
    ]
}

fn restock_amount() -> impl Gen<Value = Amount> {
    prop_oneof![
        10 => (1u64..=50).prop_map(Amount::Small),
        2 => (-2i64..=2).prop_map(Amount::NearMax),
        1 => prop::sample::select(vec![1, u64::from(MAX_Q), MAX_STOCK, MAX_STOCK + 1, u64::from(u32::MAX)])
            .prop_map(Amount::Exact),
    ]
}

fn set_amount() -> impl Gen<Value = Amount> {
    prop_oneof![
        5 => (0u64..=60).prop_map(Amount::Small),
        3 => (-2i64..=2).prop_map(Amount::NearReserved),
        2 => (-2i64..=2).prop_map(Amount::NearMax),
        1 => prop::sample::select(vec![
            0,
            MAX_STOCK,
            MAX_STOCK + 1,
            i64::MAX as u64,
            i64::MAX as u64 + 1,
            u64::MAX
        ])
        .prop_map(Amount::Exact),
    ]
}

fn delta() -> impl Gen<Value = Delta> {
    prop_oneof![
        6 => (-30i64..=30).prop_map(Delta::Raw),
        1 => prop::sample::select(vec![0, -1, i64::MIN, i64::MIN + 1, i64::MAX]).prop_map(Delta::Raw),
        1 => any::<i64>().prop_map(Delta::Raw),
        2 => (-2i64..=2).prop_map(|n| Delta::To(Amount::NearReserved(n))),
        2 => (-2i64..=2).prop_map(|n| Delta::To(Amount::NearMax(n))),
    ]
}

fn version() -> impl Gen<Value = Version> {
    prop_oneof![
        8 => Just(Version::Current),
        2 => (-1i64..=1).prop_map(Version::Off),
        1 => prop::sample::select(vec![0, 1, u64::MAX]).prop_map(Version::Exact),
    ]
}

fn strat() -> impl Gen<Value = Strat> {
    prop_oneof![
        3 => Just(Strat::Default),
        2 => Just(Strat::Most),
        2 => Just(Strat::Fewest),
        2 => prop::collection::vec(any::<u8>(), 0..=6).prop_map(Strat::Raw),
        3 => (Just(vec![0usize, 1, 2, 3]).prop_shuffle(), 1usize..=4)
            .prop_map(|(p, k)| Strat::Valid(p, k)),
    ]
}

fn hold() -> impl Gen<Value = Hold> {
    prop_oneof![
        12 => (0usize..64).prop_map(Hold::Known),
        1 => (0usize..64).prop_map(Hold::OtherSku),
        1 => prop_oneof![0u64..=200, Just(u64::MAX)].prop_map(Hold::Unknown),
    ]
}

fn who() -> impl Gen<Value = Who> {
    prop_oneof![9 => Just(Who::Owner), 1 => Just(Who::Other)]
}

fn op() -> impl Gen<Value = Op> {
    let wh = prop::option::weighted(0.2, any::<u8>());
    prop_oneof![
        5 => (any::<u8>(), any::<u8>(), restock_amount())
            .prop_map(|(sku, wh, qty)| Op::Restock { sku, wh, qty }),
        1 => (any::<u8>(), any::<u8>(), delta())
            .prop_map(|(sku, wh, delta)| Op::Adjust { sku, wh, delta }),
        1 => (any::<u8>(), any::<u8>(), set_amount(), version())
            .prop_map(|(sku, wh, on_hand, version)| Op::Set { sku, wh, on_hand, version }),
        9 => (any::<u8>(), reserve_qty(), wh, strat(), any::<bool>(), prop::option::weighted(0.4, ttl()))
            .prop_map(|(sku, qty, wh, strat, partial, ttl)| {
                Op::Reserve { sku, qty, wh, strat, partial, ttl }
            }),
        3 => (hold(), who()).prop_map(|(hold, who)| Op::Release { hold, who }),
        3 => (hold(), prop::option::weighted(0.5, reserve_qty()), who())
            .prop_map(|(hold, qty, who)| Op::Purchase { hold, qty, who }),
        2 => (hold(), ttl(), who()).prop_map(|(hold, ttl, who)| Op::Extend { hold, ttl, who }),
        2 => Just(Op::Tick),
        2 => (0usize..1_000).prop_map(Op::Retry),
        2 => (0usize..1_000, prop_oneof![Just(Reuse::Payload), Just(Reuse::Tenant), Just(Reuse::Sku)])
            .prop_map(|(i, r)| Op::Reuse(i, r)),
    ]
}

fn time() -> impl Gen<Value = Time> {
    prop_oneof![
        300 => Just(Time::Same),
        600 => (1u64..=400).prop_map(Time::Fwd),
        100 => (1u64..=3_000).prop_map(Time::Back),
        100 => (1_000u64..=30_000).prop_map(Time::Fwd),
        1 => (0u64..=3_000).prop_map(Time::Far),
    ]
}

fn step() -> impl Gen<Value = Step> {
    (op(), time(), prop_oneof![20 => Just(1i64), 1 => 2i64..=1_000], any::<u8>())
        .prop_map(|(op, time, gap, tenant)| Step { op, time, gap, tenant })
}

fn case() -> impl Gen<Value = Case> {
    (
        1usize..=3,
        1usize..=4,
        0i32..=3,
        prop_oneof![Just(0u64), Just(1_000_000u64), 0u64..10_000_000],
        0i64..=5,
        prop::collection::vec(step(), 1..=40),
    )
        .prop_map(|(skus, whs, partition, start, first_offset, steps)| Case {
            skus,
            whs,
            partition,
            start,
            first_offset,
            steps,
        })
}

// ----- resolving ops into commands ------------------------------------------------------

fn restock_qty(a: &Amount, row: StockLevel) -> u32 {
    let want: i128 = match *a {
        Amount::Small(n) | Amount::Exact(n) => i128::from(n),
        Amount::NearMax(n) => i128::from(MAX_STOCK) + i128::from(n) - i128::from(row.on_hand),
        Amount::NearReserved(n) => i128::from(n),
    };
    want.clamp(1, i128::from(u32::MAX)) as u32
}

fn on_hand_target(a: &Amount, row: StockLevel) -> u64 {
    let want: i128 = match *a {
        Amount::Small(n) | Amount::Exact(n) => i128::from(n),
        Amount::NearMax(n) => i128::from(MAX_STOCK) + i128::from(n),
        Amount::NearReserved(n) => i128::from(row.reserved) + i128::from(n),
    };
    want.clamp(0, i128::from(u64::MAX)) as u64
}

fn perturb(c: &Command) -> Command {
    let mut c = c.clone();
    match &mut c {
        Command::Reserve(r) => r.allow_partial = !r.allow_partial,
        Command::Release(r) => {
            return Command::Purchase(Purchase {
                reservation: r.reservation.clone(),
                quantity: None,
            });
        }
        Command::Purchase(p) => p.quantity = if p.quantity.is_some() { None } else { Some(q(1)) },
        Command::Extend(e) => e.ttl_ms = e.ttl_ms.wrapping_add(1),
        Command::Restock(r) => r.quantity = q(r.quantity.get().checked_add(1).unwrap_or(1)),
        Command::Adjust(a) => a.delta = a.delta.wrapping_add(1),
        Command::SetStock(s) => s.expected_version = s.expected_version.wrapping_add(1),
    }
    c
}

fn resku(c: &Command, to: Sku) -> Command {
    let mut c = c.clone();
    match &mut c {
        Command::Reserve(r) => r.sku = to,
        Command::Release(r) => r.reservation.sku = to,
        Command::Purchase(p) => p.reservation.sku = to,
        Command::Extend(e) => e.reservation.sku = to,
        Command::Restock(r) => r.sku = to,
        Command::Adjust(a) => a.sku = to,
        Command::SetStock(s) => s.sku = to,
    }
    c
}

// ----- liveness -------------------------------------------------------------------------

#[derive(Debug)]
enum Expect {
    /// Reserved with a quantity in min..=max.
    Reserved {
        min: u32,
        max: u32,
    },
    Released {
        returned: u32,
    },
    Purchased {
        quantity: u32,
        returned: u32,
    },
}

/// What a fresh request must achieve, judged from the state before the entry. Timers
/// only return units, so stock that fits before the entry still fits after its timers.
fn expectation(model: &Model, at: LogTime, req: &Request) -> Option<Expect> {
    if model.has_record(&req.tenant, req.command.sku(), &req.command_id) {
        return None; // a retry or a conflict
    }
    let now = model.now().max(at.0);
    // An active hold of this tenant that its own timer will not expire in this entry.
    let live_hold = |id: &ReservationId| {
        model.reservation(id).filter(|h| {
            h.tenant == req.tenant && h.state == ReservationState::Active && h.expires_at.0 > now
        })
    };
    match &req.command {
        Command::Reserve(r) => {
            let qty = r.quantity.get();
            let ttl = r.ttl_ms.unwrap_or(DEFAULT_TTL);
            if qty > MAX_Q || ttl == 0 || ttl > MAX_TTL {
                return None;
            }
            let rows = model.availability(&r.sku);
            let candidates: Vec<&WarehouseId> = match (&r.warehouse, &r.strategy) {
                (_, Some(Strategy::Priority { order }))
                    if order.is_empty()
                        || order.len() > MAX_WH
                        || order.iter().collect::<BTreeSet<_>>().len() != order.len() =>
                {
                    return None;
                }
                (Some(w), _) => vec![w],
                (None, Some(Strategy::Priority { order })) => order.iter().collect(),
                (None, _) => rows.keys().collect(),
            };
            let mut free: u128 = 0;
            for w in candidates {
                free += u128::from(rows.get(w)?.available());
            }
            if free >= u128::from(qty) {
                Some(Expect::Reserved { min: qty, max: qty })
            } else if r.allow_partial && free > 0 {
                Some(Expect::Reserved { min: free as u32, max: qty })
            } else {
                None
            }
        }
        Command::Release(c) => {
            live_hold(&c.reservation).map(|h| Expect::Released { returned: h.quantity })
        }
        Command::Purchase(c) => {
            let h = live_hold(&c.reservation)?;
            let quantity = c.quantity.map_or(h.quantity, |n| n.get());
            (quantity <= h.quantity)
                .then(|| Expect::Purchased { quantity, returned: h.quantity - quantity })
        }
        _ => None,
    }
}

fn meets(expect: &Expect, outcome: &Outcome) -> bool {
    match (expect, outcome) {
        (Expect::Reserved { min, max }, Outcome::Reserved { quantity, .. }) => {
            min <= quantity && quantity <= max
        }
        (Expect::Released { returned: want }, Outcome::Released { returned, .. }) => {
            want == returned
        }
        (
            Expect::Purchased { quantity: q, returned: r },
            Outcome::Purchased { quantity, returned, .. },
        ) => q == quantity && r == returned,
        _ => false,
    }
}

// ----- the run --------------------------------------------------------------------------

struct Run<'c> {
    case: &'c Case,
    machine: Machine,
    state: PartitionState,
    model: Model,
    /// Offset of the next entry.
    offset: i64,
    clock: u64,
    sent: Vec<Request>,
    holds: Vec<(ReservationId, TenantId)>,
    /// Fresh replies by the offset that produced them (I3).
    replies: BTreeMap<i64, (Request, Reply)>,
}

impl<'c> Run<'c> {
    fn new(case: &'c Case) -> Self {
        Run {
            case,
            machine: Machine::new(config()),
            state: PartitionState::new(),
            model: Model::new(&config()),
            offset: case.first_offset,
            clock: case.start,
            sent: Vec::new(),
            holds: Vec::new(),
            replies: BTreeMap::new(),
        }
    }

    fn sku(&self, raw: u8) -> Sku {
        sku(pick(raw, self.case.skus, &SKUS))
    }

    fn wh(&self, raw: u8) -> WarehouseId {
        WarehouseId::new(pick(raw, self.case.whs, &WHS)).unwrap()
    }

    fn row(&self, s: &Sku, w: &WarehouseId) -> StockLevel {
        self.model.availability(s).get(w).copied().unwrap_or_default()
    }

    fn at(&mut self, t: &Time) -> LogTime {
        match *t {
            Time::Same => {}
            Time::Fwd(ms) => self.clock = self.clock.saturating_add(ms),
            Time::Back(ms) => return LogTime(self.clock.saturating_sub(ms)),
            Time::Far(ms) => self.clock = self.clock.max(u64::MAX - ms),
        }
        LogTime(self.clock)
    }

    /// A reservation id and its owner, if it is one the case created.
    fn hold(&self, h: &Hold) -> (ReservationId, Option<TenantId>) {
        let known = |i: usize| self.holds.get(i % self.holds.len().max(1)).cloned();
        match *h {
            Hold::Known(i) => match known(i) {
                Some((id, owner)) => (id, Some(owner)),
                None => (ReservationId::new(sku("a"), 999_999), None),
            },
            Hold::OtherSku(i) => match known(i) {
                Some((id, owner)) => (ReservationId::new(other_sku(&id.sku), id.seq), Some(owner)),
                None => (ReservationId::new(sku("b"), 0), None),
            },
            Hold::Unknown(seq) => (ReservationId::new(sku("a"), seq), None),
        }
    }

    fn command(&self, n: usize, step: &Step) -> LogCommand {
        let mut tenant = tenant(step.tenant);
        let mut as_who = |owner: Option<TenantId>, who: &Who| {
            let owner = owner.unwrap_or_else(|| tenant.clone());
            tenant = match who {
                Who::Owner => owner,
                Who::Other => other_tenant(&owner),
            };
        };
        let command = match &step.op {
            Op::Tick => return LogCommand::Tick,
            Op::Retry(_) | Op::Reuse(..) if self.sent.is_empty() => return LogCommand::Tick,
            Op::Retry(i) => return LogCommand::Request(self.sent[i % self.sent.len()].clone()),
            Op::Reuse(i, how) => {
                let base = self.sent[i % self.sent.len()].clone();
                let request = match how {
                    Reuse::Payload => Request { command: perturb(&base.command), ..base },
                    Reuse::Tenant => Request { tenant: other_tenant(&base.tenant), ..base },
                    Reuse::Sku => {
                        let to = other_sku(base.command.sku());
                        Request { command: resku(&base.command, to), ..base }
                    }
                };
                return LogCommand::Request(request);
            }
            Op::Restock { sku, wh, qty } => {
                let (s, w) = (self.sku(*sku), self.wh(*wh));
                let quantity = q(restock_qty(qty, self.row(&s, &w)));
                Command::Restock(Restock { sku: s, warehouse: w, quantity })
            }
            Op::Adjust { sku, wh, delta } => {
                let (s, w) = (self.sku(*sku), self.wh(*wh));
                let row = self.row(&s, &w);
                let delta = match delta {
                    Delta::Raw(d) => *d,
                    Delta::To(a) => {
                        let d = i128::from(on_hand_target(a, row)) - i128::from(row.on_hand);
                        d.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
                    }
                };
                Command::Adjust(Adjust { sku: s, warehouse: w, delta })
            }
            Op::Set { sku, wh, on_hand, version } => {
                let (s, w) = (self.sku(*sku), self.wh(*wh));
                let row = self.row(&s, &w);
                let expected_version = match *version {
                    Version::Current => row.version,
                    Version::Off(d) => row.version.saturating_add_signed(d),
                    Version::Exact(v) => v,
                };
                let on_hand = on_hand_target(on_hand, row);
                Command::SetStock(SetStock { sku: s, warehouse: w, on_hand, expected_version })
            }
            Op::Reserve { sku, qty, wh, strat, partial, ttl } => {
                let strategy = match strat {
                    Strat::Default => None,
                    Strat::Most => Some(Strategy::MostAvailable),
                    Strat::Fewest => Some(Strategy::FewestSplits),
                    Strat::Raw(picks) => Some(Strategy::Priority {
                        order: picks.iter().map(|p| self.wh(*p)).collect(),
                    }),
                    Strat::Valid(perm, k) => {
                        let order = perm
                            .iter()
                            .filter(|i| **i < self.case.whs)
                            .take(*k)
                            .map(|i| WarehouseId::new(WHS[*i]).unwrap())
                            .collect();
                        Some(Strategy::Priority { order })
                    }
                };
                Command::Reserve(Reserve {
                    sku: self.sku(*sku),
                    quantity: q(*qty),
                    warehouse: wh.map(|w| self.wh(w)),
                    strategy,
                    allow_partial: *partial,
                    ttl_ms: *ttl,
                })
            }
            Op::Release { hold, who } => {
                let (reservation, owner) = self.hold(hold);
                as_who(owner, who);
                Command::Release(Release { reservation })
            }
            Op::Purchase { hold, qty, who } => {
                let (reservation, owner) = self.hold(hold);
                as_who(owner, who);
                Command::Purchase(Purchase { reservation, quantity: qty.map(q) })
            }
            Op::Extend { hold, ttl, who } => {
                let (reservation, owner) = self.hold(hold);
                as_who(owner, who);
                Command::Extend(Extend { reservation, ttl_ms: *ttl })
            }
        };
        let command_id = CommandId::new(format!("c{n}")).unwrap();
        LogCommand::Request(Request { tenant, command_id, command })
    }

    fn step(&mut self, n: usize, step: &Step) -> Result<(), TestCaseError> {
        let at = self.at(&step.time);
        let offset = self.offset;
        self.offset += step.gap;
        let command = self.command(n, step);
        let partition = self.case.partition;
        let fail = |what: String| {
            TestCaseError::fail(format!(
                "op #{n} (offset {offset}, record time {at}, {:?}):\n{command:#?}\n{what}",
                step.op
            ))
        };
        let expect = match &command {
            LogCommand::Request(r) => expectation(&self.model, at, r),
            LogCommand::Tick => None,
        };

        let position = Position { partition, offset };
        let got: Effects = self
            .machine
            .apply(&mut self.state, LogEntry { position, at, command: &command })
            .map_err(|e| fail(format!("machine refused the entry: {e:?}")))?;
        let want: Effects = self.model.apply(offset, at, partition, &command);

        if got != want {
            return Err(fail(format!(
                "effects differ\n--- machine:\n{got:#?}\n--- model:\n{want:#?}"
            )));
        }
        let mut skus: BTreeSet<Sku> = SKUS.iter().map(|s| sku(s)).collect();
        skus.extend(got.touched.iter().cloned());
        for s in &skus {
            let machine_rows = self.state.stock(s).cloned().unwrap_or_default();
            let model_rows = self.model.availability(s);
            if machine_rows != model_rows {
                return Err(fail(format!(
                    "stock rows of {s} differ\n--- machine:\n{machine_rows:#?}\n--- model:\n{model_rows:#?}\n--- effects:\n{got:#?}"
                )));
            }
        }
        self.model.check_invariants().map_err(|e| fail(format!("model invariant: {e}")))?;

        let LogCommand::Request(request) = &command else {
            if got.reply.is_some() {
                return Err(fail(format!("a tick got a reply: {got:#?}")));
            }
            return Ok(());
        };
        let Some(reply) = &got.reply else {
            return Err(fail("a request got no reply".to_string()));
        };
        // I3: a reply from an earlier position is the one that position produced, and
        // only for the very same request.
        if reply.position.offset == offset {
            self.replies.insert(offset, (request.clone(), reply.clone()));
        } else {
            match self.replies.get(&reply.position.offset) {
                Some((first, original)) if first == request && original == reply => {}
                other => {
                    return Err(fail(format!(
                        "I3: replayed reply {reply:#?}\noriginal: {other:#?}"
                    )));
                }
            }
        }
        if let Some(expect) = &expect
            && !meets(expect, &reply.outcome)
        {
            return Err(fail(format!("liveness: expected {expect:?}, got {:#?}", reply.outcome)));
        }
        if reply.position.offset == offset
            && let Outcome::Reserved { reservation, .. } = &reply.outcome
        {
            self.holds.push((reservation.clone(), request.tenant.clone()));
        }
        self.sent.push(request.clone());
        Ok(())
    }
}

fn run(case: &Case) -> Result<(), TestCaseError> {
    let mut run = Run::new(case);
    for (n, step) in case.steps.iter().enumerate() {
        run.step(n, step)?;
    }
    Ok(())
}

fn cases() -> u32 {
    std::env::var("SKUFLOW_MODEL_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(10_000)
}

proptest! {
    #![proptest_config(ProptestConfig { max_shrink_iters: 20_000, ..ProptestConfig::with_cases(cases()) })]

    #[test]
    fn machine_matches_the_reference_model(scenario in case()) {
        run(&scenario)?;
    }
}
