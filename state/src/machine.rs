//! The reservation state machine: one log entry in, its effects out, as data.
//!
//! Order of work for every entry (the same on every replay):
//! 1. log time moves to `max(log time, entry time)` — never backwards;
//! 2. timers due by then fire in time order: holds expire and return their units,
//!    finished reservations and old command ids are forgotten;
//! 3. a request is answered from its idempotency record if its id is known (the stored
//!    reply if the payload matches, `conflict` if not), otherwise applied and remembered.
//!
//! No clock, no randomness, no IO: everything comes from the entry and the state.

use topics::{
    Event, LogCommand, LogTime, Outcome, Position, Rejection, Reply, Request, Sku, WarehouseId,
};

use crate::commands;
use crate::config::MachineConfig;
use crate::context::Ctx;
use crate::partition::{DedupKey, DedupRecord, PartitionState, Timer, TimerKey};

/// A command as the log delivers it.
#[derive(Debug, Clone, Copy)]
pub struct LogEntry<'a> {
    pub position: Position,
    /// The record's timestamp in the commands topic.
    pub at: LogTime,
    pub command: &'a LogCommand,
}

/// What one entry produced. Published in this order: reply, events; availability of
/// the touched SKUs is published once per batch.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Effects {
    pub reply: Option<Reply>,
    pub events: Vec<Event>,
    /// SKUs whose stock changed, in first-touched order, without repeats.
    pub touched: Vec<Sku>,
}

/// Errors that are never a client's fault: the caller fed the machine something it must
/// never see, or the machine broke one of its own invariants. After an error the state
/// passed in may be half changed: the caller must drop it, never persist it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    #[error("offset {offset} is not after the last applied offset {applied}")]
    OffsetNotAfterApplied { offset: i64, applied: i64 },
    #[error("invariant broken by the record at offset {offset}, row {sku}/{warehouse}: {what}")]
    InvariantBroken { offset: i64, sku: Sku, warehouse: WarehouseId, what: String },
}

#[derive(Debug, Clone, Default)]
pub struct Machine {
    config: MachineConfig,
}

impl Machine {
    pub fn new(config: MachineConfig) -> Self {
        Self { config }
    }

    pub fn apply(
        &self,
        state: &mut PartitionState,
        entry: LogEntry<'_>,
    ) -> Result<Effects, ApplyError> {
        if let Some(applied) = state.applied
            && entry.position.offset <= applied
        {
            return Err(ApplyError::OffsetNotAfterApplied {
                offset: entry.position.offset,
                applied,
            });
        }
        let now = state.log_time.max(entry.at);
        state.log_time = now;
        state.applied = Some(entry.position.offset);
        let mut ctx = Ctx::new(state, &self.config, now, entry.position);
        fire_due_timers(&mut ctx);
        let reply = match entry.command {
            LogCommand::Tick => None,
            LogCommand::Request(request) => Some(answer(&mut ctx, request)),
        };
        let (events, touched) = ctx.finish().map_err(|b| ApplyError::InvariantBroken {
            offset: entry.position.offset,
            sku: b.sku,
            warehouse: b.warehouse,
            what: b.what,
        })?;
        Ok(Effects { reply, events, touched })
    }
}

impl Machine {
    /// Move the applied offset past a record that could not be applied (it went to the
    /// dead-letter topic). Log time does not move: the record's time is not trusted.
    pub fn skip(&self, state: &mut PartitionState, position: Position) -> Result<(), ApplyError> {
        check_after_applied(state, position)?;
        state.applied = Some(position.offset);
        Ok(())
    }
}

fn check_after_applied(state: &PartitionState, position: Position) -> Result<(), ApplyError> {
    match state.applied {
        Some(applied) if position.offset <= applied => {
            Err(ApplyError::OffsetNotAfterApplied { offset: position.offset, applied })
        }
        _ => Ok(()),
    }
}

fn answer(ctx: &mut Ctx<'_>, request: &Request) -> Reply {
    let key = DedupKey {
        tenant: request.tenant.clone(),
        sku: request.command.sku().clone(),
        command_id: request.command_id.clone(),
    };
    if let Some(seen) = ctx.state.dedup(&key) {
        if seen.command == request.command {
            return seen.reply.clone();
        }
        return reply(ctx, request, Outcome::Rejected(Rejection::Conflict));
    }
    let outcome = commands::apply(ctx, &request.tenant, &request.command);
    let reply = reply(ctx, request, outcome);
    let record = DedupRecord { command: request.command.clone(), reply: reply.clone() };
    ctx.state.put_dedup(key.clone(), record);
    let forget =
        Timer::ForgetCommand { tenant: key.tenant, sku: key.sku, command_id: key.command_id };
    let at = ctx.now.plus_ms(ctx.config.dedup_window_ms);
    ctx.state.add_timer(TimerKey::forget_command(at, ctx.position.offset), forget);
    reply
}

fn reply(ctx: &Ctx<'_>, request: &Request, outcome: Outcome) -> Reply {
    Reply {
        tenant: request.tenant.clone(),
        command_id: request.command_id.clone(),
        position: ctx.position,
        at: ctx.now,
        outcome,
    }
}

fn fire_due_timers(ctx: &mut Ctx<'_>) {
    while let Some((key, timer)) = ctx.state.pop_due_timer(ctx.now) {
        match timer {
            Timer::Expire { reservation } => commands::expire(ctx, &reservation, key.at),
            Timer::ForgetReservation { reservation } => ctx.state.remove_reservation(&reservation),
            Timer::ForgetCommand { tenant, sku, command_id } => {
                ctx.state.remove_dedup(DedupKey { tenant, sku, command_id })
            }
        }
    }
}
