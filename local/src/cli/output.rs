//! Human output: compact tables and `field  value` listings of the API's JSON.

use serde_json::Value;

/// Longest cell printed in a table column; longer values end in `…`.
const MAX_CELL: usize = 60;

/// A column: its header and how to get the cell from a row.
pub struct Column {
    pub header: &'static str,
    pub cell: fn(&Value) -> String,
}

pub const fn col(header: &'static str, cell: fn(&Value) -> String) -> Column {
    Column { header, cell }
}

/// Any JSON value as one short line: `-` for null, arrays comma-joined,
/// timestamps without fractions.
pub fn text(value: &Value) -> String {
    match value {
        Value::Null => "-".into(),
        Value::String(s) => short_time(s).unwrap_or_else(|| s.clone()),
        Value::Bool(b) => if *b { "yes" } else { "no" }.into(),
        Value::Number(n) => n.to_string(),
        Value::Array(items) if items.is_empty() => "-".into(),
        Value::Array(items) if items.iter().all(|v| !v.is_object() && !v.is_array()) => {
            items.iter().map(text).collect::<Vec<_>>().join(",")
        }
        Value::Object(map) if map.is_empty() => "-".into(),
        other => other.to_string(),
    }
}

/// `2026-01-15T12:00:00.123Z` → `2026-01-15 12:00:00Z`.
fn short_time(s: &str) -> Option<String> {
    if s.len() < 20 || s.as_bytes().get(10) != Some(&b'T') {
        return None;
    }
    let parsed = chrono::DateTime::parse_from_rfc3339(s).ok()?;
    Some(parsed.with_timezone(&chrono::Utc).format("%Y-%m-%d %H:%M:%SZ").to_string())
}

fn clip(s: &str) -> String {
    let s = s.replace(['\n', '\r', '\t'], " ");
    if s.chars().count() <= MAX_CELL {
        s
    } else {
        let mut clipped: String = s.chars().take(MAX_CELL - 1).collect();
        clipped.push('…');
        clipped
    }
}

/// Rows under a header, columns padded to their widest cell.
pub fn table(rows: &[Value], columns: &[Column]) -> String {
    let cells: Vec<Vec<String>> =
        rows.iter().map(|row| columns.iter().map(|c| clip(&(c.cell)(row))).collect()).collect();
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| cells.iter().map(|r| r[i].chars().count()).chain([c.header.len()]).max().unwrap_or(0))
        .collect();
    let line = |values: Vec<String>| {
        let last = values.len().saturating_sub(1);
        values
            .into_iter()
            .enumerate()
            .map(|(i, v)| if i == last { v } else { format!("{v:<width$}", width = widths[i]) })
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let mut out = line(columns.iter().map(|c| c.header.to_string()).collect());
    for row in cells {
        out.push('\n');
        out.push_str(&line(row));
    }
    out
}

/// An object's fields, one per line: `name  value`. Fields in `skip` are left out.
pub fn fields(object: &Value, skip: &[&str]) -> String {
    let Some(map) = object.as_object() else { return text(object) };
    let width = map.keys().filter(|k| !skip.contains(&k.as_str())).map(|k| k.len()).max().unwrap_or(0);
    map.iter()
        .filter(|(k, _)| !skip.contains(&k.as_str()))
        .map(|(k, v)| format!("{k:<width$}  {}", text(v)))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn given_rows_then_columns_line_up() {
        let rows = [json!({"id": "a", "n": 1}), json!({"id": "longer", "n": null})];
        let columns = [col("ID", |r| text(&r["id"])), col("N", |r| text(&r["n"]))];
        assert_eq!(table(&rows, &columns), "ID      N\na       1\nlonger  -");
    }

    #[test]
    fn given_values_then_text_is_compact() {
        assert_eq!(text(&json!(["a", "b"])), "a,b");
        assert_eq!(text(&json!("2026-01-15T12:00:00.123456Z")), "2026-01-15 12:00:00Z");
        assert_eq!(text(&json!({"k": "v"})), r#"{"k":"v"}"#);
        assert_eq!(text(&json!(true)), "yes");
        assert_eq!(clip(&"x".repeat(100)).chars().count(), MAX_CELL);
    }
}
