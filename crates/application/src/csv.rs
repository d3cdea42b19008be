//! A small RFC 4180 reader: comma-separated, `"`-quoted fields with `""` escapes and
//! line breaks inside quotes, CRLF or LF records, an optional UTF-8 byte order mark.
//! It reads record by record, so a large file is never held twice.

/// A structural problem: the rest of the file cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct CsvError {
    pub line: usize,
    pub message: &'static str,
}

/// Records of a CSV text.
pub struct Records<'a> {
    rest: &'a str,
    line: usize,
    max_fields: usize,
}

impl<'a> Records<'a> {
    #[must_use]
    pub fn new(text: &'a str) -> Self {
        Self {
            rest: text.strip_prefix('\u{feff}').unwrap_or(text),
            line: 1,
            max_fields: usize::MAX,
        }
    }

    /// Keeps at most `max` fields of each record and reads past the rest: a line of
    /// millions of commas must not become millions of strings.
    #[must_use]
    pub const fn keeping(mut self, max: usize) -> Self {
        self.max_fields = max;
        self
    }
}

impl Iterator for Records<'_> {
    type Item = Result<Vec<String>, CsvError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let start_line = self.line;
        let mut fields = Vec::new();
        let mut field = String::new();
        let mut chars = self.rest.char_indices().peekable();
        let mut quoted = false;
        let mut at_field_start = true;
        while let Some((i, c)) = chars.next() {
            if quoted {
                match c {
                    '"' if chars.peek().is_some_and(|(_, n)| *n == '"') => {
                        chars.next();
                        field.push('"');
                    }
                    '"' => quoted = false,
                    '\n' => {
                        self.line += 1;
                        field.push(c);
                    }
                    _ => field.push(c),
                }
                continue;
            }
            match c {
                '"' if at_field_start => {
                    quoted = true;
                    at_field_start = false;
                }
                ',' => {
                    self.keep(&mut fields, &mut field);
                    at_field_start = true;
                }
                '\r' if chars.peek().is_some_and(|(_, n)| *n == '\n') => {}
                '\n' => {
                    self.line += 1;
                    self.keep(&mut fields, &mut field);
                    self.rest = &self.rest[i + 1..];
                    return Some(Ok(fields));
                }
                _ => {
                    field.push(c);
                    at_field_start = false;
                }
            }
        }
        if quoted {
            self.rest = "";
            return Some(Err(CsvError {
                line: start_line,
                message: "a quoted field is never closed",
            }));
        }
        self.keep(&mut fields, &mut field);
        self.rest = "";
        Some(Ok(fields))
    }
}

impl Records<'_> {
    fn keep(&self, fields: &mut Vec<String>, field: &mut String) {
        if fields.len() < self.max_fields {
            fields.push(std::mem::take(field));
        } else {
            field.clear();
        }
    }
}

/// Whether a spreadsheet could run the cell as a formula. `+` and `-` start phone numbers
/// and negative numbers too: followed only by digits, spaces and `()./+-x`, they cannot
/// name a function or a cell (`-2+3+cmd|' /C calc'!A0` can).
fn runs_as_formula(raw: &str) -> bool {
    match raw.as_bytes().first() {
        Some(b'=' | b'@' | b'\t' | b'\r') => true,
        Some(b'+' | b'-') => !raw
            .bytes()
            .all(|b| b.is_ascii_digit() || b" ()./+-xX".contains(&b)),
        _ => false,
    }
}

/// Whether an exported cell needs a leading `'` so that a spreadsheet shows it instead of
/// running it. A value already starting with `'` before a formula gets one more, so that
/// [`unguarded`] gives every value back as it was.
#[must_use]
pub fn needs_formula_guard(raw: &str) -> bool {
    runs_as_formula(raw.trim_start_matches('\''))
}

/// A cell without the `'` an export put before it: an exported file imports unchanged.
#[must_use]
pub fn unguarded(cell: &str) -> &str {
    match cell.strip_prefix('\'') {
        Some(rest) if needs_formula_guard(rest) => rest,
        _ => cell,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Vec<Vec<String>> {
        Records::new(text).collect::<Result<_, _>>().unwrap()
    }

    #[test]
    fn reads_rfc_4180() {
        assert_eq!(
            read("\u{feff}a,b,c\r\n1,\"x, y\",\"say \"\"hi\"\"\"\n\"two\nlines\",,last"),
            [
                vec!["a", "b", "c"],
                vec!["1", "x, y", "say \"hi\""],
                vec!["two\nlines", "", "last"]
            ]
        );
        assert_eq!(
            read("a,b\n"),
            [vec!["a", "b"]],
            "a final line break ends the last record"
        );
        assert_eq!(read("é,ü\n"), [vec!["é", "ü"]]);
        assert!(read("").is_empty());
    }

    #[test]
    fn an_unclosed_quote_is_reported_with_its_line() {
        let mut records = Records::new("a\nb\n\"open,\nstill open");
        assert!(records.next().unwrap().is_ok());
        assert!(records.next().unwrap().is_ok());
        assert_eq!(
            records.next().unwrap(),
            Err(CsvError {
                line: 3,
                message: "a quoted field is never closed"
            })
        );
        assert!(records.next().is_none());
    }

    #[test]
    fn a_guarded_cell_reads_back_as_the_value_it_guards() {
        for raw in [
            "=SUM(A1)",
            "@cmd",
            "+A1",
            "-2+3+cmd|' /C calc'!A0",
            "'=already quoted",
            "''=twice",
            "'plain",
            "'",
            "'-5",
            "+44 20",
            "-12.5",
            "plain",
            "",
        ] {
            let exported = if needs_formula_guard(raw) {
                format!("'{raw}")
            } else {
                raw.to_owned()
            };
            assert_eq!(
                unguarded(&exported),
                raw,
                "{raw:?} exported as {exported:?}"
            );
        }
        assert!(needs_formula_guard("'=x"));
        assert!(!needs_formula_guard("+1 (555) 010-0199 x12"));
        assert_eq!(
            unguarded("'+44 20"),
            "'+44 20",
            "an apostrophe the export never writes stays"
        );
    }

    #[test]
    fn fields_past_the_kept_ones_are_read_over_not_stored() {
        let records: Vec<Vec<String>> = Records::new("a,b,c\n1,\"2,x\",3,4\n5")
            .keeping(2)
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(records, [vec!["a", "b"], vec!["1", "2,x"], vec!["5"]]);
        let commas = ",".repeat(100_000);
        let mut wide = Records::new(&commas).keeping(3);
        assert_eq!(wide.next().unwrap().unwrap().len(), 3);
        assert!(wide.next().is_none());
    }
}
