//! Bulk stock loads: one stock-keeping command per line of CSV or NDJSON.
//!
//! CSV: `restock,sku,warehouse,units[,command_id]`, `adjust,sku,warehouse,delta[,command_id]`
//! or `set,sku,warehouse,on_hand,expected_version[,command_id]`; a first line starting
//! with `op,` is a header and skipped.
//! NDJSON: `{"op": "restock", "sku": ..., "warehouse": ..., "quantity": n}`,
//! `{"op": "adjust", ..., "delta": n}`, `{"op": "set", ..., "on_hand": n, "expected_version": v}`,
//! each with an optional `command_id`.
//!
//! Without a command id a line gets `<source>:<line number>`, so loading the same file
//! again is idempotent: the processor answers the old replies instead of restocking twice.

use serde::Deserialize;
use topics::{
    Adjust, Command, CommandId, Quantity, Request, Restock, SetStock, Sku, TenantId, WarehouseId,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    Ndjson,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
enum Line {
    Restock {
        sku: String,
        warehouse: String,
        quantity: u32,
        command_id: Option<String>,
    },
    Adjust {
        sku: String,
        warehouse: String,
        delta: i64,
        command_id: Option<String>,
    },
    Set {
        sku: String,
        warehouse: String,
        on_hand: u64,
        expected_version: u64,
        command_id: Option<String>,
    },
}

/// The request for line `number` (1-based) of `source`, or why the line is refused.
/// `Ok(None)`: a blank line or the CSV header.
pub fn parse_line(
    format: Format,
    tenant: &TenantId,
    source: &str,
    number: usize,
    text: &str,
) -> Result<Option<Request>, String> {
    let text = text.trim();
    if text.is_empty() || (format == Format::Csv && number == 1 && text.starts_with("op,")) {
        return Ok(None);
    }
    let line = match format {
        Format::Ndjson => serde_json::from_str::<Line>(text).map_err(|e| e.to_string())?,
        Format::Csv => csv_line(text)?,
    };
    let (command, id) = command(line)?;
    let id = id.unwrap_or_else(|| format!("{source}:{number}"));
    let command_id = CommandId::new(&id).map_err(|e| format!("command id {id:?}: {e}"))?;
    Ok(Some(Request { tenant: tenant.clone(), command_id, command }))
}

fn csv_line(text: &str) -> Result<Line, String> {
    let f: Vec<&str> = text.split(',').map(str::trim).collect();
    let num = |i: usize, what: &str| -> Result<i64, String> {
        f.get(i)
            .ok_or(format!("missing {what}"))?
            .parse::<i64>()
            .map_err(|e| format!("{what}: {e}"))
    };
    let (sku, warehouse) = (
        f.get(1).ok_or("missing sku")?.to_string(),
        f.get(2).ok_or("missing warehouse")?.to_string(),
    );
    let id = |i: usize| f.get(i).filter(|s| !s.is_empty()).map(|s| s.to_string());
    match f[0] {
        "restock" => {
            let quantity =
                u32::try_from(num(3, "quantity")?).map_err(|e| format!("quantity: {e}"))?;
            Ok(Line::Restock { sku, warehouse, quantity, command_id: id(4) })
        }
        "adjust" => Ok(Line::Adjust { sku, warehouse, delta: num(3, "delta")?, command_id: id(4) }),
        "set" => Ok(Line::Set {
            sku,
            warehouse,
            on_hand: u64::try_from(num(3, "on_hand")?).map_err(|e| format!("on_hand: {e}"))?,
            expected_version: u64::try_from(num(4, "expected_version")?)
                .map_err(|e| format!("expected_version: {e}"))?,
            command_id: id(5),
        }),
        other => Err(format!("unknown op {other:?} (restock, adjust, set)")),
    }
}

fn command(line: Line) -> Result<(Command, Option<String>), String> {
    let ids = |sku: &str, w: &str| -> Result<(Sku, WarehouseId), String> {
        Ok((
            Sku::new(sku).map_err(|e| format!("sku: {e}"))?,
            WarehouseId::new(w).map_err(|e| format!("warehouse: {e}"))?,
        ))
    };
    Ok(match line {
        Line::Restock { sku, warehouse, quantity, command_id } => {
            let (sku, warehouse) = ids(&sku, &warehouse)?;
            let quantity = Quantity::new(quantity).ok_or("quantity must be at least 1")?;
            (Command::Restock(Restock { sku, warehouse, quantity }), command_id)
        }
        Line::Adjust { sku, warehouse, delta, command_id } => {
            let (sku, warehouse) = ids(&sku, &warehouse)?;
            (Command::Adjust(Adjust { sku, warehouse, delta }), command_id)
        }
        Line::Set { sku, warehouse, on_hand, expected_version, command_id } => {
            let (sku, warehouse) = ids(&sku, &warehouse)?;
            (Command::SetStock(SetStock { sku, warehouse, on_hand, expected_version }), command_id)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant() -> TenantId {
        TenantId::new("t").unwrap()
    }

    #[test]
    fn csv_and_ndjson_lines_become_stock_commands_with_stable_ids() {
        let r = parse_line(Format::Csv, &tenant(), "stock.csv", 2, "restock,sku-1,main,5")
            .unwrap()
            .unwrap();
        assert_eq!(r.command_id.as_str(), "stock.csv:2");
        assert!(matches!(r.command, Command::Restock(ref c) if c.quantity.get() == 5));
        let r = parse_line(
            Format::Ndjson,
            &tenant(),
            "s",
            1,
            r#"{"op":"adjust","sku":"a","warehouse":"w","delta":-2,"command_id":"x"}"#,
        )
        .unwrap()
        .unwrap();
        assert_eq!(r.command_id.as_str(), "x");
        assert!(matches!(r.command, Command::Adjust(ref c) if c.delta == -2));
        assert_eq!(
            parse_line(Format::Csv, &tenant(), "s", 1, "op,sku,warehouse,amount").unwrap(),
            None
        );
    }

    #[test]
    fn bad_lines_say_why() {
        let bad = |f, t| parse_line(f, &tenant(), "s", 3, t).unwrap_err();
        assert!(bad(Format::Csv, "restock,sku-1,main,0").contains("at least 1"));
        assert!(bad(Format::Csv, "restock,sku 1,main,3").contains("sku"));
        assert!(bad(Format::Csv, "move,sku-1,main,3").contains("unknown op"));
        assert!(bad(Format::Csv, "restock,sku-1").contains("missing warehouse"));
        assert!(
            bad(Format::Ndjson, r#"{"op":"restock","sku":"a","warehouse":"w","quantity":1,"x":1}"#)
                .contains("unknown field")
        );
    }
}
