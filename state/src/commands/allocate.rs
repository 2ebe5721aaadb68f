//! Spreading a requested quantity over a SKU's warehouses.

use std::collections::BTreeMap;

use topics::{Allocation, Rejection, StockLevel, Strategy, WarehouseId};

/// What a reserve asks of the allocator.
pub(super) struct Ask<'a> {
    pub requested: u32,
    pub warehouse: Option<&'a WarehouseId>,
    pub strategy: &'a Strategy,
    pub allow_partial: bool,
}

/// Allocations summing to the requested quantity (or, when partial is allowed, to
/// everything available if that is less), never taking more than a row has available.
pub(super) fn allocate(
    rows: &BTreeMap<WarehouseId, StockLevel>,
    ask: &Ask<'_>,
) -> Result<Vec<Allocation>, Rejection> {
    let candidates = candidates(rows, ask)?;
    // Saturating: rows are bounded so that a SKU's total fits in a u64 (MachineConfig).
    let total = candidates.iter().fold(0u64, |t, (_, avail)| t.saturating_add(*avail));
    let requested = u64::from(ask.requested);
    if total == 0 || (total < requested && !ask.allow_partial) {
        return Err(Rejection::InsufficientStock { requested: ask.requested, available: total });
    }
    let mut left = requested.min(total);
    let mut out = Vec::new();
    for (warehouse, avail) in candidates {
        if left == 0 {
            break;
        }
        let take = left.min(avail);
        if take > 0 {
            // `take <= requested`, which is a u32.
            out.push(Allocation { warehouse: warehouse.clone(), quantity: take as u32 });
            left -= take;
        }
    }
    Ok(out)
}

/// The warehouses to take from, in the order to take from them, with what each has.
fn candidates<'r>(
    rows: &'r BTreeMap<WarehouseId, StockLevel>,
    ask: &Ask<'_>,
) -> Result<Vec<(&'r WarehouseId, u64)>, Rejection> {
    let row = |wh: &WarehouseId| {
        rows.get_key_value(wh)
            .map(|(k, l)| (k, l.available()))
            .ok_or_else(|| Rejection::UnknownWarehouse { warehouse: wh.clone() })
    };
    if let Some(wh) = ask.warehouse {
        return Ok(vec![row(wh)?]);
    }
    let mut by_size: Vec<(&WarehouseId, u64)> =
        rows.iter().map(|(k, l)| (k, l.available())).collect();
    by_size.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    match ask.strategy {
        Strategy::Priority { order } => order.iter().map(row).collect(),
        Strategy::MostAvailable => Ok(by_size),
        Strategy::FewestSplits => {
            let requested = u64::from(ask.requested);
            // Smallest warehouse that can serve it all; ties by id. `by_size` is sorted
            // by size descending then id, so the last fitting entry of the smallest size
            // group is wanted: scan for the minimal size, first id within it.
            let best = by_size
                .iter()
                .filter(|(_, avail)| *avail >= requested)
                .min_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.cmp(b.0)));
            Ok(match best {
                Some(single) => vec![*single],
                None => by_size,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(spec: &[(&str, u64)]) -> BTreeMap<WarehouseId, StockLevel> {
        spec.iter()
            .map(|(w, n)| {
                (WarehouseId::new(*w).unwrap(), StockLevel { on_hand: *n, ..Default::default() })
            })
            .collect()
    }

    fn got(r: Result<Vec<Allocation>, Rejection>) -> Vec<(String, u32)> {
        r.unwrap().into_iter().map(|a| (a.warehouse.to_string(), a.quantity)).collect()
    }

    fn ask(requested: u32, strategy: &Strategy) -> Ask<'_> {
        Ask { requested, warehouse: None, strategy, allow_partial: false }
    }

    #[test]
    fn fewest_splits_prefers_the_smallest_warehouse_that_fits() {
        let r = rows(&[("a", 10), ("b", 4), ("c", 5)]);
        assert_eq!(got(allocate(&r, &ask(4, &Strategy::FewestSplits))), [("b".into(), 4)]);
        assert_eq!(
            got(allocate(&r, &ask(12, &Strategy::FewestSplits))),
            [("a".into(), 10), ("c".into(), 2)]
        );
    }

    #[test]
    fn most_available_takes_the_largest_first() {
        let r = rows(&[("a", 3), ("b", 9)]);
        assert_eq!(got(allocate(&r, &ask(4, &Strategy::MostAvailable))), [("b".into(), 4)]);
    }

    #[test]
    fn priority_follows_the_given_order_and_ignores_others() {
        let r = rows(&[("a", 3), ("b", 9), ("c", 100)]);
        let order = Strategy::Priority {
            order: vec![WarehouseId::new("a").unwrap(), WarehouseId::new("b").unwrap()],
        };
        assert_eq!(got(allocate(&r, &ask(5, &order))), [("a".into(), 3), ("b".into(), 2)]);
        assert_eq!(
            allocate(&r, &ask(13, &order)),
            Err(Rejection::InsufficientStock { requested: 13, available: 12 })
        );
    }

    #[test]
    fn partial_takes_what_there_is_but_never_zero() {
        let r = rows(&[("a", 3)]);
        let mut a = ask(5, &Strategy::FewestSplits);
        a.allow_partial = true;
        assert_eq!(got(allocate(&r, &a)), [("a".into(), 3)]);
        let empty = rows(&[("a", 0)]);
        assert_eq!(
            allocate(&empty, &a),
            Err(Rejection::InsufficientStock { requested: 5, available: 0 })
        );
    }

    #[test]
    fn a_named_warehouse_must_exist() {
        let r = rows(&[("a", 3)]);
        let x = WarehouseId::new("x").unwrap();
        let mut a = ask(1, &Strategy::FewestSplits);
        a.warehouse = Some(&x);
        assert_eq!(allocate(&r, &a), Err(Rejection::UnknownWarehouse { warehouse: x.clone() }));
    }
}
