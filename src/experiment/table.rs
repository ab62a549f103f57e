//! Result tables and their CSV form.
//!
//! Results are compared byte for byte across thread counts and machines, so
//! every float is written with a fixed number of decimals chosen by the
//! experiment (never `{}` with its shortest-round-trip digits, which differ
//! for values that differ in the last bit), and undefined values are empty.

use std::io::Write;

/// One cell of a table.
#[derive(Clone, Debug, PartialEq)]
pub enum Cell {
    Text(String),
    Int(i64),
    /// A float written with this many decimals; NaN and infinities are empty.
    Fixed(f64, usize),
    Empty,
}

impl Cell {
    pub fn text(value: impl Into<String>) -> Cell {
        Cell::Text(value.into())
    }

    /// An unsigned count; values beyond `i64::MAX` saturate (never reached:
    /// every count in a run is bounded far below).
    pub fn count(value: u64) -> Cell {
        Cell::Int(i64::try_from(value).unwrap_or(i64::MAX))
    }

    pub fn fixed(value: f64, decimals: usize) -> Cell {
        Cell::Fixed(value, decimals)
    }

    fn render(&self) -> String {
        match self {
            Cell::Text(s) => s.clone(),
            Cell::Int(i) => i.to_string(),
            Cell::Fixed(v, decimals) if v.is_finite() => {
                let s = format!("{v:.decimals$}");
                // "-0.000" and "0.000" are the same number; write one form.
                if s.starts_with('-') && s[1..].bytes().all(|b| b == b'0' || b == b'.') {
                    s[1..].to_string()
                } else {
                    s
                }
            }
            Cell::Fixed(..) | Cell::Empty => String::new(),
        }
    }
}

/// A named table: written as `<name>.csv`.
#[derive(Clone, Debug, PartialEq)]
pub struct Table {
    /// File stem, e.g. `contention` for `contention.csv`.
    pub name: String,
    /// One line for the file list in `summary.md`.
    pub description: String,
    pub columns: Vec<String>,
    rows: Vec<Vec<Cell>>,
}

impl Table {
    pub fn new(name: &str, description: &str, columns: &[&str]) -> Table {
        Table {
            name: name.to_string(),
            description: description.to_string(),
            columns: columns.iter().map(|c| (*c).to_string()).collect(),
            rows: Vec::new(),
        }
    }

    /// Appends a row; its length must match the columns (a bug otherwise).
    pub fn push(&mut self, row: Vec<Cell>) {
        assert_eq!(
            row.len(),
            self.columns.len(),
            "table `{}`: row has {} cells for {} columns",
            self.name,
            row.len(),
            self.columns.len()
        );
        self.rows.push(row);
    }

    pub fn rows(&self) -> &[Vec<Cell>] {
        &self.rows
    }

    pub fn file_name(&self) -> String {
        format!("{}.csv", self.name)
    }

    /// Writes the table as CSV (header, then rows in order, `\n` endings).
    pub fn write_csv<W: Write>(&self, out: W) -> csv::Result<()> {
        let mut writer = csv::WriterBuilder::new()
            .terminator(csv::Terminator::Any(b'\n'))
            .from_writer(out);
        writer.write_record(&self.columns)?;
        for row in &self.rows {
            writer.write_record(row.iter().map(Cell::render))?;
        }
        writer.flush()?;
        Ok(())
    }

    /// The CSV text (for tests and snapshots).
    pub fn to_csv_string(&self) -> String {
        let mut bytes = Vec::new();
        // Writing to a Vec cannot fail, and every cell is valid UTF-8.
        let _ = self.write_csv(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_use_fixed_decimals_and_undefined_is_empty() {
        let mut t = Table::new("t", "test", &["a", "b", "c", "d"]);
        t.push(vec![
            Cell::text("x,y"),
            Cell::fixed(1.0 / 3.0, 3),
            Cell::fixed(f64::NAN, 3),
            Cell::fixed(-0.0001, 3),
        ]);
        t.push(vec![
            Cell::count(7),
            Cell::Int(-2),
            Cell::Empty,
            Cell::fixed(2.5, 0),
        ]);
        assert_eq!(
            t.to_csv_string(),
            "a,b,c,d\n\"x,y\",0.333,,0.000\n7,-2,,2\n"
        );
    }

    #[test]
    #[should_panic(expected = "row has 1 cells for 2 columns")]
    fn short_rows_are_a_bug() {
        Table::new("t", "test", &["a", "b"]).push(vec![Cell::Empty]);
    }
}
