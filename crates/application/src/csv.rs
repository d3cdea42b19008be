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
}

impl<'a> Records<'a> {
    #[must_use]
    pub fn new(text: &'a str) -> Self {
        Self {
            rest: text.strip_prefix('\u{feff}').unwrap_or(text),
            line: 1,
        }
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
                    fields.push(std::mem::take(&mut field));
                    at_field_start = true;
                }
                '\r' if chars.peek().is_some_and(|(_, n)| *n == '\n') => {}
                '\n' => {
                    self.line += 1;
                    fields.push(std::mem::take(&mut field));
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
        fields.push(field);
        self.rest = "";
        Some(Ok(fields))
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
}
