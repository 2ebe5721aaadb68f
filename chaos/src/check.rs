//! The independent checker: the invariants judged from the client's own history (every
//! request sent, every answer, with times) and the final reads in it, by a model of the
//! domain written here from the API's contract alone. It uses no code of `state` or
//! `processor` (a test keeps it that way), so a bug in the state machine cannot hide by
//! being replayed through itself.
//!
//! The contract the model follows, per SKU, in log order (a reply's `position`; one
//! SKU's commands share a partition, so their offsets order them):
//! - a command at log time `at` first sees every hold whose `expires_at <= at` expired
//!   and its units returned;
//! - reserve adds to `reserved` of the rows it allocates, never past `on_hand - reserved`;
//!   purchase moves the units it buys from `on_hand` to `sold` and returns the rest;
//!   release returns all; extend moves `expires_at`; restock adds to `on_hand`; a stock
//!   command's reply carries the row it left;
//! - one effect per (tenant, SKU, key): identical retries get the identical reply, another
//!   body a `conflict`.
//!
//! Checks: **I1** (no reserve beyond what is available; availability never shows
//! `reserved > on_hand`), **I2** (each row a stock command or the final read shows equals
//! the model's), **I3** (one reply per key), **I4** (every command answered, after the
//! harness's retries with the same key), **I7** (holds end once, not before their time,
//! and return their units within the tick bound), reads that honour `min_position`, and
//! hostile requests refused.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::history::{Entry, position};

/// A violation, with what it involves.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Finding {
    pub invariant: String,
    pub check: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sku: Option<String>,
    /// History entries involved.
    pub entries: Vec<u64>,
    /// When (ms since the workload started) the offending answer came.
    pub at_ms: f64,
    pub detail: String,
    /// A known cause outside skuflow (the dev broker's losses), when one explains it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub explained_by: Option<String>,
}

/// One check: how much it looked at and what it found.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CheckSummary {
    pub check: String,
    pub invariant: String,
    pub checked: usize,
    pub violations: usize,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Verdict {
    pub checks: Vec<CheckSummary>,
    pub findings: Vec<Finding>,
}

impl Verdict {
    /// No violation that a known broker loss does not explain.
    pub fn ok(&self) -> bool {
        self.findings.iter().all(|f| f.explained_by.is_some())
    }

    pub fn unexplained(&self) -> usize {
        self.findings.iter().filter(|f| f.explained_by.is_none()).count()
    }
}

/// What the checker needs besides the history.
#[derive(Debug, Clone, Default)]
pub struct Context {
    /// Longest time after `expires_at` until a hold's units are back with no other
    /// traffic (tick interval plus processing).
    pub tick_bound_ms: u64,
    /// When the dev broker was killed with `kill -9` or stopped for a restart (ms since
    /// the workload started): it may lose what it acknowledged shortly before.
    pub broker_kills_ms: Vec<f64>,
    /// Partitions the processors halted as a gap at the end of the run (they stop rather
    /// than skip commands when the broker lost committed changelog records).
    pub halted_gaps: BTreeSet<i64>,
}

/// How long before a broker `kill -9` an acknowledged write may be lost by the dev
/// broker (BROKERS.md measured losses up to 100 ms after the acknowledgement, none at 1 s;
/// large bursts lose more, so twice that).
pub const BROKER_LOSS_WINDOW_MS: f64 = 2_000.0;

const BROKER_LOSS: &str = "the dev broker loses writes it acknowledged shortly before a kill -9 or a restart (BROKERS.md); this SKU's partition had acknowledged commands in that window";

const HALTED: &str = "the processor halted this partition as a gap: the dev broker lost committed changelog records (BROKERS.md), and the processor stops rather than skip commands";

const OFFSET_REUSE: &str = "the broker gave one offset to two records: it lost the first after acknowledging it (BROKERS.md); later answers on this partition follow from that loss";

struct Checker<'a> {
    history: &'a [Entry],
    by_id: BTreeMap<u64, &'a Entry>,
    counts: BTreeMap<&'static str, (&'static str, usize)>,
    findings: Vec<Finding>,
}

impl<'a> Checker<'a> {
    fn count(&mut self, check: &'static str, invariant: &'static str) {
        self.count_n(check, invariant, 1);
    }

    fn count_n(&mut self, check: &'static str, invariant: &'static str, n: usize) {
        self.counts.entry(check).or_insert((invariant, 0)).1 += n;
    }

    fn violate(
        &mut self,
        invariant: &str,
        check: &str,
        sku: Option<&str>,
        entries: Vec<u64>,
        detail: String,
    ) {
        let at_ms = entries
            .iter()
            .filter_map(|id| self.by_id.get(id))
            .map(|e| e.done_ms)
            .fold(0.0, f64::max);
        self.findings.push(Finding {
            invariant: invariant.to_owned(),
            check: check.to_owned(),
            sku: sku.map(str::to_owned),
            entries,
            at_ms,
            detail,
            explained_by: None,
        });
    }

    /// The request a reply answers: the entry itself, or for a poll the command it polls.
    fn request_of(&self, e: &'a Entry) -> &'a Entry {
        if e.method == "GET" {
            e.of.and_then(|id| self.by_id.get(&id).copied()).unwrap_or(e)
        } else {
            e
        }
    }
}

/// Judge `history`.
pub fn check(history: &[Entry], ctx: &Context) -> Verdict {
    let mut c = Checker {
        history,
        by_id: history.iter().map(|e| (e.id, e)).collect(),
        counts: BTreeMap::new(),
        findings: Vec::new(),
    };
    let reused = offsets_unique(&mut c);
    one_reply_per_key(&mut c);
    every_command_answered(&mut c);
    replay(&mut c, ctx);
    reads(&mut c);
    hostile_refused(&mut c);
    explain(&mut c, ctx, &reused);
    let mut checks: Vec<CheckSummary> = c
        .counts
        .iter()
        .map(|(check, (invariant, checked))| CheckSummary {
            check: (*check).to_owned(),
            invariant: (*invariant).to_owned(),
            checked: *checked,
            violations: c.findings.iter().filter(|f| f.check == *check).count(),
        })
        .collect();
    checks.sort_by(|a, b| a.invariant.cmp(&b.invariant).then(a.check.cmp(&b.check)));
    Verdict { checks, findings: c.findings }
}

/// Each position holds one command: two replies at one position for different keys mean
/// the broker handed out an offset twice, losing what it had acknowledged there.
/// Returns the partitions where that happened, with the earliest time it was seen.
fn offsets_unique(c: &mut Checker<'_>) -> BTreeMap<i64, f64> {
    let mut at: BTreeMap<(i64, i64), (&Value, &Entry)> = BTreeMap::new();
    let mut reused: BTreeMap<i64, f64> = BTreeMap::new();
    let mut found = Vec::new();
    for e in c.history {
        let Some(reply) = e.reply() else { continue };
        let Some(pos) = position(reply) else { continue };
        c.count("offsets-unique", "broker");
        let who = |r: &Value| (r["tenant"].clone(), r["command_id"].clone());
        match at.get(&pos) {
            Some((first, entry)) if who(first) != who(reply) => {
                let when = entry.done_ms.min(e.done_ms);
                let slot = reused.entry(pos.0).or_insert(when);
                *slot = slot.min(when);
                found.push((pos, entry.id, e.id, e.sku.clone()));
            }
            Some(_) => {}
            None => {
                at.insert(pos, (reply, e));
            }
        }
    }
    for ((p, o), first, second, sku) in found {
        c.violate(
            "broker",
            "offsets-unique",
            sku.as_deref(),
            vec![first, second],
            format!("two commands were acknowledged at position {p}-{o}"),
        );
    }
    reused
}

/// The scope of an idempotency key: tenant, SKU, key.
fn scope(e: &Entry) -> Option<(String, String, String)> {
    Some((e.tenant.clone(), e.sku.clone()?, e.key.clone()?))
}

fn is_conflict(reply: &Value) -> bool {
    reply["outcome"]["type"] == "rejected" && reply["outcome"]["reason"] == "conflict"
}

/// Path without the query, and body: what makes two requests "the same request".
fn request_identity(e: &Entry) -> (String, Value) {
    let path = e.path.split('?').next().unwrap_or_default().to_owned();
    (path, e.body.clone().unwrap_or(Value::Null))
}

/// I3: per scope, every answer that is not a conflict is the same reply, and an identical
/// request is never answered with a conflict.
fn one_reply_per_key(c: &mut Checker<'_>) {
    let mut scopes: BTreeMap<(String, String, String), Vec<&Entry>> = BTreeMap::new();
    for e in c.history {
        let request = c.request_of(e);
        if request.is_command()
            && e.reply().is_some()
            && let Some(s) = scope(request)
        {
            scopes.entry(s).or_default().push(e);
        }
    }
    for ((_, sku, key), answers) in scopes {
        c.count("one-reply-per-key", "I3");
        let applied: Vec<&Entry> = answers
            .iter()
            .copied()
            .filter(|e| e.reply().is_some_and(|r| !is_conflict(r)))
            .collect();
        if let Some(first) = applied.first() {
            let reply = first.reply();
            if let Some(other) = applied.iter().find(|e| e.reply() != reply) {
                c.violate(
                    "I3",
                    "one-reply-per-key",
                    Some(&sku),
                    vec![first.id, other.id],
                    format!(
                        "key {key}: two different replies: {} and {}",
                        compact(reply),
                        compact(other.reply())
                    ),
                );
            }
            let original = request_identity(c.request_of(first));
            for e in answers.iter().filter(|e| e.reply().is_some_and(is_conflict)) {
                if request_identity(c.request_of(e)) == original {
                    c.violate(
                        "I3",
                        "one-reply-per-key",
                        Some(&sku),
                        vec![first.id, e.id],
                        format!("key {key}: an identical request was answered conflict"),
                    );
                }
            }
        }
    }
}

/// One request as sent: its key's scope, path (without the query) and body. Retries of
/// it get its reply; another body under the same key is another request (a conflict,
/// or the one applied if it came first).
pub fn identity(e: &Entry) -> Option<(String, String, String, String, String)> {
    let (path, body) = request_identity(e);
    Some((e.tenant.clone(), e.sku.clone()?, e.key.clone()?, path, body.to_string()))
}

/// I4: every request sent has a reply somewhere in the history (its own answer, a
/// poll, a retry, or the harness's resolution after the run).
fn every_command_answered(c: &mut Checker<'_>) {
    let answered: BTreeSet<_> = c
        .history
        .iter()
        .filter(|e| e.reply().is_some())
        .filter_map(|e| identity(c.request_of(e)))
        .collect();
    let mut seen = BTreeSet::new();
    let mut unanswered = Vec::new();
    for e in c.history.iter().filter(|e| e.is_command()) {
        if let Some(id) = identity(e)
            && seen.insert(id.clone())
            && !answered.contains(&id)
        {
            unanswered.push(e);
        }
    }
    c.count_n("every-command-answered", "I4", seen.len());
    for e in unanswered {
        let how = if e.accepted() {
            "accepted (202) and never answered"
        } else {
            "never answered, even after retries with its key"
        };
        c.violate(
            "I4",
            "every-command-answered",
            e.sku.as_deref(),
            vec![e.id],
            format!("{} {}: {how}", e.kind, e.key.as_deref().unwrap_or("")),
        );
    }
}

#[derive(Debug, Default, Clone, Copy, PartialEq)]
struct Row {
    on_hand: i128,
    reserved: i128,
    sold: i128,
}

#[derive(Debug, Clone)]
struct Hold {
    allocations: Vec<(String, i128)>,
    quantity: i128,
    expires_at: i64,
    active: bool,
    entry: u64,
}

#[derive(Debug, Default)]
struct Model {
    rows: BTreeMap<String, Row>,
    holds: BTreeMap<String, Hold>,
    last_at: i64,
}

impl Row {
    /// A row as an answer shows it (`on_hand`, `reserved`, `sold`).
    fn of(level: &Value) -> Self {
        Self {
            on_hand: int(&level["on_hand"]),
            reserved: int(&level["reserved"]),
            sold: int(&level["sold"]),
        }
    }
}

impl Model {
    fn expire(&mut self, now: i64) {
        for h in self.holds.values_mut().filter(|h| h.active && h.expires_at <= now) {
            h.active = false;
            for (w, q) in &h.allocations {
                self.rows.entry(w.clone()).or_default().reserved -= q;
            }
        }
    }

    fn available(&self) -> i128 {
        self.rows.values().map(|r| r.on_hand - r.reserved).sum()
    }
}

fn int(v: &Value) -> i128 {
    v.as_i64().map(i128::from).or_else(|| v.as_u64().map(i128::from)).unwrap_or(0)
}

/// An applied command: its reply, the entry that carried it, the request it answers.
type Applied<'a> = (&'a Value, &'a Entry, &'a Entry);

/// The model replay: every reply of a SKU in log order against the model (I1, I2, I7),
/// then the final reads.
fn replay(c: &mut Checker<'_>, ctx: &Context) {
    // Each applied command once, by position, with the request it answers.
    let mut by_sku: BTreeMap<String, BTreeMap<(i64, i64), Applied<'_>>> = BTreeMap::new();
    for e in c.history {
        let request = c.request_of(e);
        let (Some(reply), Some(sku)) = (e.reply(), request.sku.clone()) else { continue };
        if !request.is_command() {
            continue;
        }
        let Some(pos) = position(reply) else { continue };
        by_sku.entry(sku).or_default().entry(pos).or_insert((reply, e, request));
    }
    for (sku, replies) in &by_sku {
        let mut m = Model::default();
        for (reply, answer, request) in replies.values() {
            c.count("model-replay", "I1");
            let at = reply["at"].as_i64().unwrap_or(0);
            if at < m.last_at {
                c.violate(
                    "I6",
                    "log-time-monotonic",
                    Some(sku),
                    vec![answer.id],
                    format!("log time went back from {} to {at}", m.last_at),
                );
            }
            m.last_at = m.last_at.max(at);
            m.expire(at);
            apply(c, &mut m, sku, reply, answer, request, at);
        }
        final_reads(c, &mut m, sku, ctx);
    }
}

#[allow(clippy::too_many_lines)]
fn apply(
    c: &mut Checker<'_>,
    m: &mut Model,
    sku: &str,
    reply: &Value,
    answer: &Entry,
    request: &Entry,
    at: i64,
) {
    let outcome = &reply["outcome"];
    let id = answer.id;
    // Rejections do not name the reservation; the request's path does.
    let from_path =
        request.path.strip_prefix("/v1/reservations/").and_then(|p| p.split('/').next());
    let reservation = outcome["reservation"].as_str().or(from_path).unwrap_or_default().to_owned();
    match outcome["type"].as_str().unwrap_or_default() {
        "reserved" => {
            let body = request.body.clone().unwrap_or(Value::Null);
            let quantity = int(&outcome["quantity"]);
            let mut allocations = Vec::new();
            for a in outcome["allocations"].as_array().into_iter().flatten() {
                let (w, q) =
                    (a["warehouse"].as_str().unwrap_or_default().to_owned(), int(&a["quantity"]));
                let row = m.rows.entry(w.clone()).or_default();
                if q > row.on_hand - row.reserved {
                    c.violate(
                        "I1",
                        "no-oversell",
                        Some(sku),
                        vec![id],
                        format!(
                            "{reservation} took {q} from {w} where {} were available",
                            row.on_hand - row.reserved
                        ),
                    );
                }
                row.reserved += q;
                allocations.push((w, q));
            }
            let total: i128 = allocations.iter().map(|(_, q)| q).sum();
            let requested = int(&body["quantity"]);
            let partial = body["allow_partial"].as_bool().unwrap_or(false);
            let in_scope = allocations.iter().all(|(w, _)| {
                match (&body["warehouse"], &body["strategy"]["order"]) {
                    (Value::String(only), _) => w == only,
                    (_, Value::Array(order)) => order.iter().any(|o| o == w),
                    _ => true,
                }
            });
            if total != quantity
                || quantity < 1
                || quantity > requested
                || (!partial && quantity != requested)
                || !in_scope
            {
                c.violate("I1", "no-oversell", Some(sku), vec![id],
                    format!("{reservation}: asked {requested} (partial {partial}), granted {quantity} as {allocations:?}"));
            }
            let expires_at = outcome["expires_at"].as_i64().unwrap_or(0);
            m.holds.insert(
                reservation,
                Hold { allocations, quantity, expires_at, active: true, entry: id },
            );
        }
        kind @ ("released" | "purchased" | "extended") => {
            let Some(hold) = m.holds.get_mut(&reservation) else {
                c.violate(
                    "I7",
                    "holds-end-once",
                    Some(sku),
                    vec![id],
                    format!("{kind} {reservation}, which the history never granted"),
                );
                return;
            };
            c.count("holds-end-once", "I7");
            if !hold.active {
                let why = if hold.expires_at <= at {
                    format!("it expired at {} and this ran at {at}", hold.expires_at)
                } else {
                    "it had ended before".to_owned()
                };
                c.violate(
                    "I7",
                    "holds-end-once",
                    Some(sku),
                    vec![hold.entry, id],
                    format!("{kind} {reservation} although {why}"),
                );
                return;
            }
            match kind {
                "extended" => {
                    hold.expires_at = outcome["expires_at"].as_i64().unwrap_or(hold.expires_at)
                }
                _ => {
                    hold.active = false;
                    let mut to_sell =
                        if kind == "purchased" { int(&outcome["quantity"]) } else { 0 };
                    let returned = int(&outcome["returned"]);
                    if to_sell + returned != hold.quantity {
                        c.violate("I2", "conservation", Some(sku), vec![hold.entry, id],
                            format!("{kind} {reservation}: sold {to_sell} + returned {returned} != held {}", hold.quantity));
                    }
                    for (w, q) in &hold.allocations {
                        let sell = to_sell.min(*q);
                        to_sell -= sell;
                        let row = m.rows.entry(w.clone()).or_default();
                        row.reserved -= q;
                        row.on_hand -= sell;
                        row.sold += sell;
                    }
                }
            }
        }
        "stock_updated" => {
            c.count("conservation", "I2");
            let w = outcome["warehouse"].as_str().unwrap_or_default().to_owned();
            let body = request.body.clone().unwrap_or(Value::Null);
            let row = m.rows.entry(w.clone()).or_default();
            let path = request.path.split('?').next().unwrap_or_default();
            if path.ends_with("/restock") {
                row.on_hand += int(&body["quantity"]);
            } else if path.ends_with("/adjust") {
                row.on_hand += int(&body["delta"]);
            } else if path.ends_with("/set") {
                row.on_hand = int(&body["on_hand"]);
            }
            let level = &outcome["level"];
            let seen = Row::of(level);
            if seen != *row {
                c.violate(
                    "I2",
                    "conservation",
                    Some(sku),
                    vec![id],
                    format!(
                        "row {w} after {}: system {seen:?}, history implies {row:?}",
                        request.kind
                    ),
                );
                *row = seen;
            }
            if seen.reserved > seen.on_hand || seen.reserved < 0 {
                c.violate(
                    "I1",
                    "no-oversell",
                    Some(sku),
                    vec![id],
                    format!("row {w} shows {seen:?}"),
                );
            }
        }
        "rejected" => {
            match outcome["reason"].as_str().unwrap_or_default() {
                "reservation_expired" => {
                    if let Some(h) =
                        m.holds.get(&reservation).filter(|h| h.active && h.expires_at > at)
                    {
                        c.violate(
                            "I7",
                            "holds-end-once",
                            Some(sku),
                            vec![h.entry, id],
                            format!(
                                "{reservation} refused as expired at {at}, before its time {}",
                                h.expires_at
                            ),
                        );
                    }
                }
                "already_final" => {
                    if let Some(h) = m.holds.get(&reservation).filter(|h| h.active) {
                        c.violate("I7", "holds-end-once", Some(sku), vec![h.entry, id],
                        format!("{reservation} refused as already final while the history has it active"));
                    }
                }
                "insufficient_stock" => {
                    let body = request.body.clone().unwrap_or(Value::Null);
                    let spread = body["warehouse"].is_null()
                        && matches!(
                            body["strategy"]["type"].as_str(),
                            None | Some("fewest_splits" | "most_available")
                        );
                    if spread {
                        c.count("no-undersell", "I7");
                        let available = m.available();
                        let said = int(&outcome["available"]);
                        // With allow_partial, any unit available must have been held.
                        let partial = body["allow_partial"].as_bool().unwrap_or(false);
                        let needed = if partial { 1 } else { int(&body["quantity"]).max(1) };
                        if said != available || available >= needed {
                            c.violate("I7", "no-undersell", Some(sku), vec![id],
                            format!("refused for insufficient stock (said {said} available); the history implies {available} (expired holds' units not back?)"));
                        }
                    }
                }
                _ => {}
            }
        }
        _ => {}
    }
}

/// After the run: the settled read (taken once every hold's time plus the tick bound had
/// passed, before any further command) must show nothing reserved; the final read (after
/// the harness's probe command) must equal the model exactly.
fn final_reads(c: &mut Checker<'_>, m: &mut Model, sku: &str, ctx: &Context) {
    let reads: Vec<&Entry> = c
        .history
        .iter()
        .filter(|e| {
            (e.kind == "settled-read" || e.kind == "final-read")
                && e.sku.as_deref() == Some(sku)
                && e.status == Some(200)
        })
        .collect();
    if !reads.iter().any(|e| e.kind == "final-read") {
        c.count("conservation", "I2");
        let id = c.history.iter().rev().find(|e| e.sku.as_deref() == Some(sku)).map_or(0, |e| e.id);
        c.violate(
            "I4",
            "every-command-answered",
            Some(sku),
            vec![id],
            "no final read of this SKU succeeded".into(),
        );
    }
    for e in reads {
        let Some(body) = &e.response else { continue };
        let warehouses = body["warehouses"].as_object().cloned().unwrap_or_default();
        if e.kind == "settled-read" {
            c.count("expired-holds-return", "I7");
            let held: i128 = warehouses.values().map(|l| int(&l["reserved"])).sum();
            let active = m.holds.values().filter(|h| h.active).count();
            if held != 0 {
                c.violate("I7", "expired-holds-return", Some(sku), vec![e.id],
                    format!("{held} units still reserved {} ms after the last hold's time (model: {active} holds not yet seen expiring)", ctx.tick_bound_ms));
            }
        } else {
            c.count("conservation", "I2");
            m.expire(i64::MAX);
            // Every row either side knows: a row the history never created must not be
            // there with units in it.
            let mut names: BTreeSet<String> = m.rows.keys().cloned().collect();
            names.extend(warehouses.keys().cloned());
            for w in &names {
                let row = &m.rows.get(w).copied().unwrap_or_default();
                let level = warehouses.get(w).cloned().unwrap_or(Value::Null);
                let seen = Row::of(&level);
                if seen != *row {
                    c.violate(
                        "I2",
                        "conservation",
                        Some(sku),
                        vec![e.id],
                        format!("final row {w}: system {seen:?}, history implies {row:?}"),
                    );
                }
            }
        }
    }
}

/// Availability answers: consistent in themselves (I1), and reflecting every change of
/// the SKU up to `min_position` (read-your-writes: the answer's `position` is the last
/// change it shows, so it must not be older than the last change the history knows up
/// to `min_position`).
fn reads(c: &mut Checker<'_>) {
    let mut changes: BTreeMap<String, BTreeSet<(i64, i64)>> = BTreeMap::new();
    for e in c.history {
        let request = c.request_of(e);
        let (Some(reply), Some(sku)) = (e.reply(), &request.sku) else { continue };
        let changing = matches!(
            reply["outcome"]["type"].as_str(),
            Some("reserved" | "released" | "purchased" | "stock_updated")
        );
        if let (true, Some(p)) = (changing && request.is_command(), position(reply)) {
            changes.entry(sku.clone()).or_default().insert(p);
        }
    }
    for e in c.history.iter().filter(|e| {
        e.method == "GET" && e.status == Some(200) && e.path.starts_with("/v1/availability/")
    }) {
        let Some(body) = &e.response else { continue };
        c.count("availability-consistent", "I1");
        let warehouses = body["warehouses"].as_object().cloned().unwrap_or_default();
        let sum: i128 = warehouses.values().map(|l| int(&l["on_hand"]) - int(&l["reserved"])).sum();
        let bad_row = warehouses.iter().find(|(_, l)| int(&l["reserved"]) > int(&l["on_hand"]));
        if let Some((w, l)) = bad_row {
            c.violate(
                "I1",
                "availability-consistent",
                e.sku.as_deref(),
                vec![e.id],
                format!("row {w} shows {l}"),
            );
        } else if sum != int(&body["available"]) {
            c.violate(
                "I1",
                "availability-consistent",
                e.sku.as_deref(),
                vec![e.id],
                format!("available {} but the rows sum to {sum}", body["available"]),
            );
        }
        let min =
            e.path.split("min_position=").nth(1).map(|s| s.split('&').next().unwrap_or_default());
        let Some((p, o)) = min.and_then(|m| m.split_once('-')) else { continue };
        let (Ok(p), Ok(o)) = (p.parse::<i64>(), o.parse::<i64>()) else { continue };
        if o < 0 {
            continue;
        }
        c.count("read-your-writes", "I5");
        let last_change = e
            .sku
            .as_ref()
            .and_then(|s| changes.get(s))
            .and_then(|set| set.range((p, 0)..=(p, o)).next_back().copied());
        if let (Some((cp, co)), Some((rp, ro))) = (last_change, position(body))
            && (rp, ro) < (cp, co)
        {
            c.violate("I5", "read-your-writes", e.sku.as_deref(), vec![e.id],
                format!("asked for position {p}-{o}; the SKU changed at {cp}-{co}, the answer shows {rp}-{ro}"));
        }
    }
}

/// Hostile requests are refused (4xx, or no answer): never accepted, never a 500.
fn hostile_refused(c: &mut Checker<'_>) {
    for e in c.history.iter().filter(|e| e.hostile) {
        c.count("hostile-refused", "API");
        if let Some(status) = e.status
            && !(400..500).contains(&status)
            && status != 503
        {
            c.violate(
                "API",
                "hostile-refused",
                e.sku.as_deref(),
                vec![e.id],
                format!("{} {} answered {status}", e.method, e.path),
            );
        }
    }
}

/// Mark findings that a broker loss explains: the broker loses the tail of a partition's
/// log, so a finding on a partition that had acknowledged commands in the loss window
/// before a broker kill or restart, or on a partition where the broker was seen to reuse
/// an offset, is explained (after the first broker fault). Unanswered commands are only
/// on partitions a processor halted as a gap; accepted hostile requests never are.
fn explain(c: &mut Checker<'_>, ctx: &Context, reused: &BTreeMap<i64, f64>) {
    if ctx.broker_kills_ms.is_empty() {
        return;
    }
    // The partition each SKU lives on, from the replies.
    let mut sku_partition: BTreeMap<String, i64> = BTreeMap::new();
    for e in c.history {
        if let (Some(sku), Some((p, _))) = (&c.request_of(e).sku, e.reply().and_then(position)) {
            sku_partition.insert(sku.clone(), p);
        }
    }
    // Partitions whose log tail the broker may have lost: acknowledged commands on them
    // within the loss window before a broker fault.
    let exposed: BTreeSet<i64> = c
        .history
        .iter()
        .filter(|e| e.is_command() && e.status.is_some_and(|s| s < 500))
        .filter(|e| {
            ctx.broker_kills_ms
                .iter()
                .any(|k| e.done_ms <= *k && e.done_ms >= k - BROKER_LOSS_WINDOW_MS)
        })
        .filter_map(|e| e.sku.as_ref().and_then(|s| sku_partition.get(s)).copied())
        .collect();
    let first_fault =
        ctx.broker_kills_ms.iter().copied().fold(f64::INFINITY, f64::min) - BROKER_LOSS_WINDOW_MS;
    let partition_of = |f: &Finding| -> Option<i64> {
        f.entries
            .iter()
            .filter_map(|id| c.by_id.get(id))
            .find_map(|e| e.reply().and_then(position))
            .map(|(p, _)| p)
            .or_else(|| f.sku.as_ref().and_then(|s| sku_partition.get(s)).copied())
    };
    let partitions: Vec<Option<i64>> = c.findings.iter().map(partition_of).collect();
    for (f, partition) in c.findings.iter_mut().zip(partitions) {
        if f.at_ms < first_fault || f.invariant == "API" {
            continue;
        }
        // An unanswered command is excused only where a processor halted its partition
        // as a gap: the broker lost committed records, and the processor stops rather
        // than skip commands.
        if f.invariant == "I4" {
            if partition.is_some_and(|p| ctx.halted_gaps.contains(&p)) {
                f.explained_by = Some(HALTED.to_owned());
            }
            continue;
        }
        if partition.is_some_and(|p| reused.contains_key(&p)) || f.check == "offsets-unique" {
            f.explained_by = Some(OFFSET_REUSE.to_owned());
        } else if partition.is_some_and(|p| exposed.contains(&p)) {
            f.explained_by = Some(BROKER_LOSS.to_owned());
        }
    }
}

fn compact(v: Option<&Value>) -> String {
    let text = v.map(Value::to_string).unwrap_or_default();
    if text.chars().count() > 300 {
        format!("{}…", text.chars().take(300).collect::<String>())
    } else {
        text
    }
}
