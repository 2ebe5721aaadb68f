//! The pure machine under callgrind: instructions per command, which, unlike time, do not
//! depend on the machine or on what else runs on it. `scripts/callgrind-machine` runs it:
//!
//! ```sh
//! valgrind --tool=callgrind --toggle-collect='*apply_all*' \
//!     target/release/examples/instructions spread 20000
//! ```
//!
//! Only `apply_all` is counted (building the workload is not); divide by the count.
//!
//! A third argument applies the commands in batches of that size the way the processor
//! does: after each batch the changes are taken and timers and idempotency records leave
//! memory (`PartitionState::evict` with the processor's default cache bound), without the
//! store behind it (the workload never needs them again). 0, the default, keeps the whole
//! state in memory as the criterion benchmark does.

use state::{LogEntry, Machine, MachineConfig};

// The allocator the skuflow binary uses.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The processor's default cache bound (`processor::config::DEFAULT_CACHE_ROWS`).
const CACHE_ROWS: usize = 100_000;

#[path = "../benches/workload/mod.rs"]
mod workload;
use workload::{Shape, Workload, workload};

#[inline(never)]
fn apply_all(machine: &Machine, w: &mut Workload, batch: usize) -> usize {
    let mut replies = 0;
    for (i, (position, at, command)) in w.log.iter().enumerate() {
        let applied = machine
            .apply(&mut w.state, LogEntry { position: *position, at: *at, command })
            .expect("the workload applies");
        replies += usize::from(std::hint::black_box(applied).reply.is_some());
        if batch > 0 && (i + 1) % batch == 0 {
            std::hint::black_box(w.state.take_changes());
            w.state.evict(CACHE_ROWS);
        }
    }
    replies
}

fn main() {
    let mut args = std::env::args().skip(1);
    let shape = match args.next().as_deref() {
        Some("hot") => Shape::Hot,
        Some("spread") | None => Shape::Spread,
        Some(other) => panic!("shape is spread or hot, not {other}"),
    };
    let n: usize = args.next().map_or(20_000, |s| s.parse().expect("a count"));
    let batch: usize = args.next().map_or(0, |s| s.parse().expect("a batch size"));
    let machine = Machine::new(MachineConfig::default());
    let mut w = workload(&machine, shape, n);
    let replies = apply_all(&machine, &mut w, batch);
    println!("{n} commands, {replies} replies");
}
