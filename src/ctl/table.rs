//! Aligned text columns for `natbridge ctl`'s human output, and the unit
//! formatting the columns share.

/// Rows of cells, printed with every column as wide as its widest cell.
pub struct Table {
    rows: Vec<Vec<String>>,
    /// Columns aligned right (numbers), by index.
    right: Vec<usize>,
}

impl Table {
    /// A table whose first row is `header` (pass `&[]` for none).
    pub fn new(header: &[&str]) -> Table {
        let rows = if header.is_empty() {
            Vec::new()
        } else {
            vec![header.iter().map(|h| (*h).to_owned()).collect()]
        };
        Table {
            rows,
            right: Vec::new(),
        }
    }

    pub fn right_align(mut self, columns: &[usize]) -> Table {
        self.right = columns.to_vec();
        self
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The lines, without trailing spaces, each ending in a newline.
    pub fn render(&self) -> String {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let mut widths = vec![0; columns];
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for row in &self.rows {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                if i > 0 {
                    line.push_str("  ");
                }
                let pad = widths[i] - cell.chars().count();
                if self.right.contains(&i) {
                    line.extend(std::iter::repeat_n(' ', pad));
                    line.push_str(cell);
                } else {
                    line.push_str(cell);
                    line.extend(std::iter::repeat_n(' ', pad));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// `1.5 KiB`-style sizes: byte counts of relayed media run to gigabytes.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// `1h02m`-style durations from seconds.
pub fn duration(s: u64) -> String {
    let (d, h, m, s) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    if d > 0 {
        format!("{d}d{h:02}h")
    } else if h > 0 {
        format!("{h}h{m:02}m")
    } else if m > 0 {
        format!("{m}m{s:02}s")
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_line_up() {
        let mut t = Table::new(&["ID", "USER", "BYTES"]).right_align(&[2]);
        t.row(vec!["7".into(), "alice".into(), "10 B".into()]);
        t.row(vec!["12".into(), "bo".into(), "1.5 KiB".into()]);
        assert_eq!(
            t.render(),
            "ID  USER     BYTES\n7   alice     10 B\n12  bo     1.5 KiB\n"
        );
    }

    #[test]
    fn units() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(3 * 1024 * 1024 * 1024), "3.0 GiB");
        assert_eq!(duration(5), "5s");
        assert_eq!(duration(125), "2m05s");
        assert_eq!(duration(3720), "1h02m");
        assert_eq!(duration(90_000), "1d01h");
    }
}
