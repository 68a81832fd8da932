//! Plain aligned tables for the command line: a header row, then one row per record,
//! columns separated by two spaces and padded to the widest cell.

/// The table as text, each line ending in a newline (the last column is not padded).
pub(super) fn render(headers: &[&str], rows: &[Vec<String>]) -> String {
    let columns = headers.len();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut text = String::new();
        for (i, cell) in cells.take(columns).enumerate() {
            text.push_str(cell);
            if i + 1 < columns {
                let pad = widths[i].saturating_sub(cell.chars().count()) + 2;
                text.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(&mut headers.iter().copied());
    for row in rows {
        line(&mut row.iter().map(String::as_str));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_line_up_under_their_headers() {
        let text = render(
            &["ID", "NAME", "N"],
            &[
                vec!["1".into(), "Zoë Müller".into(), "3".into()],
                vec!["12345".into(), "Al".into(), "".into()],
            ],
        );
        assert_eq!(
            text,
            "ID     NAME        N\n1      Zoë Müller  3\n12345  Al\n"
        );
    }
}
