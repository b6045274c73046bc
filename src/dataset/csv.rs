//! A CSV table with a header, read whole into columns, each typed once: **numeric** when every
//! non-null cell parses as a finite `f64` (surrounding spaces allowed), else **categorical**.
//!
//! Nulls are the cells pandas' `read_csv` reads as NaN by default (`keep_default_na=True`),
//! compared exactly, case-sensitively: the empty cell and
//! `#N/A`, `#N/A N/A`, `#NA`, `-1.#IND`, `-1.#QNAN`, `-NaN`, `-nan`, `1.#IND`, `1.#QNAN`,
//! `<NA>`, `N/A`, `NA`, `NULL`, `NaN`, `None`, `n/a`, `nan`, `null`.

use std::collections::HashSet;

/// The cells pandas reads as NaN by default (pandas `_libs.parsers.STR_NA_VALUES`).
pub const NULLS: &[&str] = &[
    "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
    "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null",
];

pub fn is_null(cell: &str) -> bool {
    NULLS.contains(&cell)
}

/// A column's cells, typed. `None` is a null cell.
#[derive(Clone, Debug, PartialEq)]
pub enum Values {
    Numeric(Vec<Option<f64>>),
    Categorical(Vec<Option<String>>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Column {
    pub name: String,
    pub values: Values,
}

impl Column {
    /// Cell `row` as text (numbers as written by Rust's shortest round-trip form); None if null.
    pub fn text(&self, row: usize) -> Option<String> {
        match &self.values {
            Values::Numeric(v) => v[row].map(|x| x.to_string()),
            Values::Categorical(v) => v[row].clone(),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Table {
    pub columns: Vec<Column>,
    pub rows: usize,
}

impl Table {
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    pub fn names(&self) -> Vec<&str> {
        self.columns.iter().map(|c| c.name.as_str()).collect()
    }

    /// The rows at `indices`, in that order, columns keeping their types.
    pub fn take(&self, indices: &[usize]) -> Table {
        let columns = self
            .columns
            .iter()
            .map(|c| Column {
                name: c.name.clone(),
                values: match &c.values {
                    Values::Numeric(v) => Values::Numeric(indices.iter().map(|&i| v[i]).collect()),
                    Values::Categorical(v) => {
                        Values::Categorical(indices.iter().map(|&i| v[i].clone()).collect())
                    }
                },
            })
            .collect();
        Table {
            columns,
            rows: indices.len(),
        }
    }
}

/// Cells (rows × columns) of a table, at most: a table is held in memory as typed columns
/// (16 to 40 bytes a cell however short its text), so a body of 256 MiB of commas would
/// otherwise take gigabytes. While it is read, a column is one text and its cells' ends.
pub const MAX_CELLS: usize = 5_000_000;
/// Columns of a table, at most.
pub const MAX_COLUMNS: usize = 10_000;

fn numeric(cell: &str) -> Option<f64> {
    cell.trim().parse::<f64>().ok().filter(|x| x.is_finite())
}

/// Parses `data` (UTF-8 CSV, comma-separated, `"` quoting, first line the header). Errors name
/// the line: ragged rows, an empty file, a blank or repeated column name, bad UTF-8. Blank
/// lines are skipped (the csv crate does, as pandas' `skip_blank_lines=True`).
pub fn parse(data: &[u8]) -> Result<Table, String> {
    parse_within(data, usize::MAX, usize::MAX)
}

/// [`parse`] of an upload: at most [`MAX_CELLS`] cells and [`MAX_COLUMNS`] columns, refused as
/// it is read. Tables stored before these limits are read back by [`parse`].
pub fn parse_upload(data: &[u8]) -> Result<Table, String> {
    parse_within(data, MAX_CELLS, MAX_COLUMNS)
}

fn parse_within(data: &[u8], max_cells: usize, max_columns: usize) -> Result<Table, String> {
    if data.iter().all(u8::is_ascii_whitespace) {
        return Err("the CSV is empty: it needs a header line and at least one row".into());
    }
    let mut reader = ::csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_reader(data);
    let header = reader.headers().map_err(describe)?.clone();
    let mut seen = HashSet::new();
    for (i, name) in header.iter().enumerate() {
        if name.trim().is_empty() {
            return Err(format!(
                "line 1: column {} has no name; every column needs one",
                i + 1
            ));
        }
        if !seen.insert(name) {
            return Err(format!("line 1: the column name {name:?} appears twice"));
        }
    }
    let width = header.len();
    if width > max_columns {
        return Err(format!(
            "line 1: {width} columns is over the limit of {max_columns}"
        ));
    }
    let mut cells: Vec<Cells> = (0..width).map(|_| Cells::default()).collect();
    let mut count = 0usize;
    for record in reader.records() {
        let record = record.map_err(describe)?;
        let line = record.position().map(|p| p.line()).unwrap_or(0);
        count = count.saturating_add(width);
        if count > max_cells {
            return Err(format!(
                "line {line}: the table has more than {max_cells} cells (rows × columns), the limit"
            ));
        }
        if record.len() != width {
            return Err(format!(
                "line {line}: {} fields, but the header has {width} ({})",
                record.len(),
                header.iter().collect::<Vec<_>>().join(",")
            ));
        }
        for (col, cell) in cells.iter_mut().zip(record.iter()) {
            col.text.push_str(cell);
            col.ends.push(col.text.len());
        }
    }
    let rows = cells.first().map_or(0, |c| c.ends.len());
    if rows == 0 {
        return Err("the CSV has a header but no rows".into());
    }
    let columns = header
        .iter()
        .zip(cells)
        .map(|(name, cells)| Column {
            name: name.to_string(),
            values: type_column(cells),
        })
        .collect();
    Ok(Table { columns, rows })
}

/// The header and the records at `rows` (in that order) of a CSV `parse` accepted, written
/// back as CSV: cells keep their text exactly (numbers are not reformatted).
pub fn select_rows(data: &[u8], rows: &[usize]) -> Result<Vec<u8>, String> {
    let mut reader = ::csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_reader(data);
    let header = reader.headers().map_err(describe)?.clone();
    let records = reader
        .records()
        .collect::<Result<Vec<_>, _>>()
        .map_err(describe)?;
    let mut out = ::csv::Writer::from_writer(Vec::new());
    out.write_record(&header).map_err(|e| e.to_string())?;
    for &r in rows {
        let record = records
            .get(r)
            .ok_or_else(|| format!("row {r} is out of range ({} rows)", records.len()))?;
        out.write_record(record).map_err(|e| e.to_string())?;
    }
    out.into_inner().map_err(|e| e.to_string())
}

/// A column's cells as read: their text end to end, and where each ends.
#[derive(Default)]
struct Cells {
    text: String,
    ends: Vec<usize>,
}

impl Cells {
    fn iter(&self) -> impl Iterator<Item = &str> {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts.zip(&self.ends).map(|(a, &b)| &self.text[a..b])
    }
}

fn type_column(cells: Cells) -> Values {
    let all_numeric = cells.iter().all(|c| is_null(c) || numeric(c).is_some());
    if all_numeric {
        Values::Numeric(
            cells
                .iter()
                .map(|c| if is_null(c) { None } else { numeric(c) })
                .collect(),
        )
    } else {
        Values::Categorical(
            cells
                .iter()
                .map(|c| (!is_null(c)).then(|| c.to_string()))
                .collect(),
        )
    }
}

fn describe(e: ::csv::Error) -> String {
    let line = e.position().map(|p| p.line());
    let what = match e.kind() {
        ::csv::ErrorKind::Utf8 { .. } => "the CSV is not valid UTF-8".to_string(),
        ::csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => format!("{len} fields, but the header has {expected_len}"),
        _ => e.to_string(),
    };
    match line {
        Some(l) => format!("line {l}: {what}"),
        None => what,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A table of many short cells is refused as it is read, naming the line, before its
    /// cells are typed; so is a header of too many columns.
    #[test]
    fn tables_over_the_cell_limit_are_refused_as_they_are_read() {
        let mut csv = b"a,y\n".to_vec();
        for _ in 0..(MAX_CELLS / 2 + 1) {
            csv.extend_from_slice(b",\n");
        }
        let e = parse_upload(&csv).unwrap_err();
        assert_eq!(
            e,
            format!(
                "line {}: the table has more than {MAX_CELLS} cells (rows × columns), the limit",
                MAX_CELLS / 2 + 2
            )
        );
        assert_eq!(parse_upload(b"a,y\n,\n").unwrap().rows, 1);
        // A table stored before the limits still reads back.
        assert_eq!(parse(&csv).unwrap().rows, MAX_CELLS / 2 + 1);
        let wide: Vec<String> = (0..=MAX_COLUMNS).map(|i| format!("c{i}")).collect();
        let e = parse_upload(format!("{}\n", wide.join(",")).as_bytes()).unwrap_err();
        assert!(
            e.contains("10001 columns is over the limit of 10000"),
            "{e}"
        );
    }

    #[test]
    fn types_columns_and_reads_nulls_like_pandas() {
        let t = parse(b"x,y,z\n1, 2.5 ,a\nNA,-3e2,\n4,,b\n").unwrap();
        assert_eq!(t.rows, 3);
        assert_eq!(t.names(), ["x", "y", "z"]);
        assert_eq!(
            t.columns[0].values,
            Values::Numeric(vec![Some(1.0), None, Some(4.0)])
        );
        assert_eq!(
            t.columns[1].values,
            Values::Numeric(vec![Some(2.5), Some(-300.0), None])
        );
        assert_eq!(
            t.columns[2].values,
            Values::Categorical(vec![Some("a".into()), None, Some("b".into())])
        );
    }

    #[test]
    fn one_word_makes_a_column_categorical_and_inf_is_not_a_number() {
        let t = parse(b"a,b\n1,inf\n2,3\nx,4\n").unwrap();
        assert!(matches!(t.columns[0].values, Values::Categorical(_)));
        assert!(matches!(t.columns[1].values, Values::Categorical(_)));
    }

    #[test]
    fn quoted_fields_and_blank_lines() {
        let t = parse(b"name,v\n\"a, b\",1\n\n\"c\"\"d\",2\n").unwrap();
        assert_eq!(t.rows, 2);
        assert_eq!(t.columns[0].text(0).as_deref(), Some("a, b"));
        assert_eq!(t.columns[0].text(1).as_deref(), Some("c\"d"));
    }

    #[test]
    fn errors_name_the_line() {
        let cases: &[(&[u8], &str)] = &[
            (b"", "the CSV is empty"),
            (b"  \n", "the CSV is empty"),
            (b"a,b\n", "header but no rows"),
            (
                b"a,b\n1,2\n3\n",
                "line 3: 1 fields, but the header has 2 (a,b)",
            ),
            (b"a,b\n1,2\n3,4,5\n", "line 3: 3 fields"),
            (b"a,a\n1,2\n", "line 1: the column name \"a\" appears twice"),
            (b"a,,c\n1,2,3\n", "line 1: column 2 has no name"),
            (b"a\n\xff\n", "line 2: the CSV is not valid UTF-8"),
        ];
        for (input, want) in cases {
            let err = parse(input).unwrap_err();
            assert!(err.contains(want), "{input:?}: {err:?} lacks {want:?}");
        }
    }

    #[test]
    fn select_rows_keeps_the_text_of_cells() {
        let data = b"x,s\n1.50,\"a, b\"\n\n2,b\n3e0,c\n";
        let out = select_rows(data, &[2, 0]).unwrap();
        assert_eq!(out, b"x,s\n3e0,c\n1.50,\"a, b\"\n");
        assert!(select_rows(data, &[3])
            .unwrap_err()
            .contains("out of range"));
    }

    #[test]
    fn take_keeps_types_and_order() {
        let t = parse(b"x,s\n1,a\n2,b\n3,c\n").unwrap();
        let sub = t.take(&[2, 0]);
        assert_eq!(sub.rows, 2);
        assert_eq!(
            sub.columns[0].values,
            Values::Numeric(vec![Some(3.0), Some(1.0)])
        );
        assert_eq!(sub.column("s").unwrap().text(0).as_deref(), Some("c"));
    }
}
