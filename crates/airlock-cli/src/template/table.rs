//! Columns as Go's `text/tabwriter` aligns them, with the settings the docker CLI's
//! `table` formats use (minimum width 10, padding 3, spaces): a cell ends at a tab, and a
//! column's width is taken over the run of adjacent lines that have a cell in it.

/// `text` with its tab-ended cells padded into columns.
pub fn align(text: &str) -> String {
    const MIN_WIDTH: usize = 10;
    const PADDING: usize = 3;
    let lines: Vec<Vec<&str>> = text.split('\n').map(|l| l.split('\t').collect()).collect();
    let mut out = String::with_capacity(text.len() * 2);
    let mut widths = Vec::new();
    block(
        &lines,
        0,
        lines.len(),
        &mut widths,
        MIN_WIDTH,
        PADDING,
        &mut out,
    );
    out
}

fn width(cell: &str) -> usize {
    cell.chars().count()
}

/// Lay out lines `from..to` whose first `widths.len()` columns are already sized: find
/// each run of lines with a cell in the next column, size it, and recurse.
fn block(
    lines: &[Vec<&str>],
    from: usize,
    to: usize,
    widths: &mut Vec<usize>,
    min_width: usize,
    padding: usize,
    out: &mut String,
) {
    let column = widths.len();
    let mut start = from;
    let mut this = from;
    while this < to {
        if column + 1 >= lines[this].len() {
            this += 1;
            continue;
        }
        write_lines(lines, start, this, widths, out);
        start = this;
        let mut w = min_width;
        while this < to && column + 1 < lines[this].len() {
            w = w.max(width(lines[this][column]) + padding);
            this += 1;
        }
        widths.push(w);
        block(lines, start, this, widths, min_width, padding, out);
        widths.pop();
        start = this;
    }
    write_lines(lines, start, to, widths, out);
}

fn write_lines(lines: &[Vec<&str>], from: usize, to: usize, widths: &[usize], out: &mut String) {
    for (i, line) in lines.iter().enumerate().take(to).skip(from) {
        for (j, cell) in line.iter().enumerate() {
            out.push_str(cell);
            if j < widths.len() && j + 1 < line.len() {
                out.push_str(&" ".repeat(widths[j].saturating_sub(width(cell))));
            }
        }
        // The text's last line has no newline after it (it is empty when the text ended
        // with one).
        if i + 1 < lines.len() {
            out.push('\n');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::align;

    #[test]
    fn columns_take_the_widest_cell_plus_padding_and_at_least_ten() {
        assert_eq!(
            align("REPOSITORY\tTAG\nbusybox\tlatest\n"),
            "REPOSITORY   TAG\nbusybox      latest\n"
        );
        assert_eq!(align("A\tB\tC\n"), "A         B         C\n");
    }

    #[test]
    fn a_line_without_the_column_ends_its_block() {
        // The second column's width is taken separately above and below the line with
        // no tab, as tabwriter does.
        assert_eq!(
            align("a\tbbbbbbbbbbbbbbb\tc\nno tabs\nx\ty\tz\n"),
            "a         bbbbbbbbbbbbbbb   c\nno tabs\nx         y         z\n"
        );
    }
}
