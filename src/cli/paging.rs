//! Listings answer in pages with a `next` cursor; client commands follow it to the end, so a
//! listing never stops silently at the first page.

use super::client::Client;
use anyhow::Result;
use serde_json::Value;

/// GETs every page of `path` (which may carry a query already), the rows under `key`, and
/// hands each page's rows to `each`. `cursor` is the parameter `next` fills (`after`, or
/// `since` for "changed since" listings) and `from` its first value, if any. Returns the last
/// page's answer (its `seq`).
pub fn each_page(
    client: &Client,
    path: &str,
    key: &str,
    (cursor, from): (&str, Option<i64>),
    mut each: impl FnMut(&[Value]) -> Result<()>,
) -> Result<Value> {
    let limit = crate::model::limits::MAX_PAGE;
    let sep = if path.contains('?') { '&' } else { '?' };
    let mut at = from;
    loop {
        let url = match at {
            Some(at) => format!("{path}{sep}limit={limit}&{cursor}={at}"),
            None => format!("{path}{sep}limit={limit}"),
        };
        let page: Value = client.get(&url)?;
        each(page[key].as_array().map(Vec::as_slice).unwrap_or_default())?;
        match page["next"].as_i64() {
            Some(next) => at = Some(next),
            None => return Ok(page),
        }
    }
}

/// The first `max` rows of a listing (all of them with None), following its pages by `cursor`;
/// and whether more rows follow.
pub fn first_rows(
    client: &Client,
    path: &str,
    key: &str,
    cursor: &str,
    max: Option<usize>,
) -> Result<(Vec<Value>, bool)> {
    let sep = if path.contains('?') { '&' } else { '?' };
    let (mut rows, mut at) = (Vec::new(), None::<i64>);
    loop {
        let want = max.map_or(crate::model::limits::MAX_PAGE as usize, |m| {
            (m - rows.len()).clamp(1, crate::model::limits::MAX_PAGE as usize)
        });
        let url = match at {
            Some(at) => format!("{path}{sep}limit={want}&{cursor}={at}"),
            None => format!("{path}{sep}limit={want}"),
        };
        let page: Value = client.get(&url)?;
        rows.extend_from_slice(page[key].as_array().map(Vec::as_slice).unwrap_or_default());
        let next = page["next"].as_i64();
        if max.is_some_and(|m| rows.len() >= m) || next.is_none() {
            return Ok((rows, next.is_some()));
        }
        at = next;
    }
}

/// Every row of every page of a listing in id order.
pub fn all_pages(client: &Client, path: &str, key: &str) -> Result<Vec<Value>> {
    let mut all = Vec::new();
    each_page(client, path, key, ("after", None), |rows| {
        all.extend_from_slice(rows);
        Ok(())
    })?;
    Ok(all)
}

/// Prints rows as one pretty JSON array while the pages come, without holding them all.
pub struct JsonArray {
    first: bool,
}

impl JsonArray {
    pub fn start() -> JsonArray {
        print!("[");
        JsonArray { first: true }
    }

    pub fn rows(&mut self, rows: &[Value]) -> Result<()> {
        for row in rows {
            let text = serde_json::to_string_pretty(row)?;
            print!(
                "{}\n  {}",
                if self.first { "" } else { "," },
                text.replace('\n', "\n  ")
            );
            self.first = false;
        }
        Ok(())
    }

    pub fn end(self) {
        println!("{}]", if self.first { "" } else { "\n" });
    }
}
