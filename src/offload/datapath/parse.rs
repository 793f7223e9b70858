//! The parser of `dpctl/dump-flows [-m]` lines: a cursor over one line, recursive descent over
//! OVS's attribute syntax, bounded depth, errors with a column.

use thiserror::Error;

use super::{DpAction, DpFlow, DpKey, DpStats, Form, Offloaded};

/// The deepest attribute nesting accepted. OVS prints at most about 6 levels
/// (`tnl_push(...,header(...,gre((flags=..))))` inside `clone(...)` inside `sample(...)`);
/// the bound keeps a hostile line from exhausting the stack.
pub const MAX_DEPTH: usize = 32;

/// The longest line accepted, in bytes. A real line is a few hundred bytes to a few KiB
/// (geneve options, long action lists); anything far beyond is not a dump.
pub const MAX_LINE: usize = 256 * 1024;

/// A line that is not a datapath flow, with where it went wrong.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("line {line}, column {column}: {kind}")]
pub struct ParseError {
    /// 1-based line number in the text given.
    pub line: usize,
    /// 1-based column (in characters).
    pub column: usize,
    pub kind: ErrorKind,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ErrorKind {
    #[error("expected {0}")]
    Expected(&'static str),
    #[error("unexpected {0:?}")]
    Unexpected(char),
    #[error("'{open}' opened at column {column} is not closed")]
    Unclosed { open: char, column: usize },
    #[error("attributes nested deeper than {MAX_DEPTH}")]
    TooDeep,
    #[error("line longer than {MAX_LINE} bytes")]
    TooLong,
    #[error("{field}: {value:?} is not a number")]
    BadNumber { field: &'static str, value: String },
    #[error("{field}: {value:?} is not one of {allowed}")]
    BadValue { field: &'static str, value: String, allowed: &'static str },
    #[error("no {0} part")]
    Missing(&'static str),
    #[error("{0} given twice")]
    Duplicate(&'static str),
}

/// Parses a whole dump: every flow line, skipping blank lines and OVS's
/// `flow-dump from the main thread:` / `flow-dump from pmd on cpu core: N` headings. Stops at
/// the first bad line.
pub fn parse_dump(text: &str) -> Result<Vec<DpFlow>, ParseError> {
    parse_lines(text).map(|(_, r)| r).collect()
}

/// Parses a dump line by line: `(line number, flow or error)` for each flow line, so a caller
/// can report a bad line and go on with the rest.
pub fn parse_lines(text: &str) -> impl Iterator<Item = (usize, Result<DpFlow, ParseError>)> + '_ {
    text.lines().enumerate().filter_map(|(i, raw)| {
        let line = raw.trim_end_matches('\r');
        let t = line.trim();
        if t.is_empty() || t.starts_with("flow-dump from ") {
            return None;
        }
        Some((i + 1, parse_flow(line).map_err(|e| ParseError { line: i + 1, ..e })))
    })
}

/// Parses one flow line (the error's `line` is 1).
pub fn parse_flow(line: &str) -> Result<DpFlow, ParseError> {
    if line.len() > MAX_LINE {
        return Err(ParseError { line: 1, column: 1, kind: ErrorKind::TooLong });
    }
    let mut c = Cursor { s: line, pos: 0 };
    c.skip_spaces();
    c.flow()
}

// === the cursor ===

struct Cursor<'a> {
    s: &'a str,
    /// Byte offset; only ever moved over ASCII bytes or whole tokens, so always on a char
    /// boundary.
    pos: usize,
}

/// Bytes that end a name or a value.
fn is_delim(b: u8) -> bool {
    matches!(b, b',' | b'(' | b')' | b'{' | b'}' | b'=')
}

impl<'a> Cursor<'a> {
    fn err(&self, kind: ErrorKind) -> ParseError {
        self.err_at(self.pos, kind)
    }

    fn err_at(&self, pos: usize, kind: ErrorKind) -> ParseError {
        let pos = pos.min(self.s.len());
        let column = self.s.get(..pos).map_or(pos, |p| p.chars().count()) + 1;
        ParseError { line: 1, column, kind }
    }

    fn peek(&self) -> Option<u8> {
        self.s.as_bytes().get(self.pos).copied()
    }

    fn rest(&self) -> &'a str {
        self.s.get(self.pos..).unwrap_or("")
    }

    fn at_end(&self) -> bool {
        self.pos >= self.s.len()
    }

    fn skip_spaces(&mut self) {
        while self.peek() == Some(b' ') {
            self.pos += 1;
        }
    }

    /// The error for what is at the cursor: the character, or the end of the line.
    /// `open`: the bracket being closed and its byte offset, for the error at the end.
    fn unexpected(&self, open: Option<(char, usize)>) -> ParseError {
        match self.rest().chars().next() {
            Some(ch) => self.err(ErrorKind::Unexpected(ch)),
            None => match open {
                Some((o, at)) => {
                    let column = self.err_at(at, ErrorKind::TooDeep).column;
                    self.err(ErrorKind::Unclosed { open: o, column })
                }
                None => self.err(ErrorKind::Expected("more")),
            },
        }
    }

    /// A name or value: everything up to a delimiter (spaces allowed inside: OVS prints
    /// `hash(Unknown hash algorithm(5))` and `action24(01 02)`), but never the `, ` that ends
    /// a part of the line.
    fn token(&mut self) -> &'a str {
        let start = self.pos;
        let b = self.s.as_bytes();
        while let Some(&x) = b.get(self.pos) {
            if is_delim(x) {
                break;
            }
            self.pos += 1;
        }
        self.s.get(start..self.pos).unwrap_or("")
    }

    /// True at the `, ` that separates the parts of a line (the key list, `packets:`, ...).
    fn at_part_break(&self) -> bool {
        self.rest().starts_with(", ")
    }

    // === the line ===

    fn flow(&mut self) -> Result<DpFlow, ParseError> {
        let mut ufid = None;
        if let Some(r) = self.rest().strip_prefix("ufid:") {
            let end = r.find(", ").ok_or_else(|| self.err_at(self.s.len(), ErrorKind::Missing("match")))?;
            let u = &r[..end];
            if u.is_empty() || !u.chars().all(|ch| ch.is_ascii_hexdigit() || ch == '-') {
                return Err(self.err_at(self.pos + 5, ErrorKind::Expected("a UUID after ufid:")));
            }
            ufid = Some(u.to_string());
            self.pos += 5 + end + 2;
        }
        if self.at_end() || self.at_part_break() {
            return Err(self.err(ErrorKind::Missing("match")));
        }
        let keys = self.list(None, 0, true)?;
        let mut flow = DpFlow {
            ufid,
            offloaded: Offloaded::No,
            dp: None,
            keys,
            actions: Vec::new(),
            stats: DpStats::default(),
            dp_extra_info: None,
            extra: Vec::new(),
        };
        let (mut packets, mut bytes, mut used, mut actions) = (false, false, false, false);
        while !self.at_end() {
            if !self.at_part_break() {
                return Err(self.unexpected(None));
            }
            self.pos += 2;
            let label_start = self.pos;
            let label = self.label().ok_or_else(|| self.err_at(label_start, ErrorKind::Expected("label:")))?;
            let once = |seen: &mut bool, c: &Cursor<'_>, what: &'static str| {
                if std::mem::replace(seen, true) {
                    Err(c.err_at(label_start, ErrorKind::Duplicate(what)))
                } else {
                    Ok(())
                }
            };
            match label {
                "packets" => {
                    once(&mut packets, self, "packets")?;
                    flow.stats.packets = self.number("packets")?;
                }
                "bytes" => {
                    once(&mut bytes, self, "bytes")?;
                    flow.stats.bytes = self.number("bytes")?;
                }
                "used" => {
                    once(&mut used, self, "used")?;
                    flow.stats.used = self.used()?;
                }
                "flags" => {
                    let v = self.raw_part();
                    if flow.stats.tcp_flags.replace(v.to_string()).is_some() {
                        return Err(self.err_at(label_start, ErrorKind::Duplicate("flags")));
                    }
                }
                "offloaded" => {
                    let at = self.pos;
                    let v = self.raw_part();
                    let o = match v {
                        "yes" => Offloaded::Yes,
                        "partial" => Offloaded::Partial,
                        _ => {
                            return Err(self.err_at(
                                at,
                                ErrorKind::BadValue {
                                    field: "offloaded",
                                    value: v.to_string(),
                                    allowed: "yes, partial",
                                },
                            ))
                        }
                    };
                    if flow.offloaded != Offloaded::No {
                        return Err(self.err_at(label_start, ErrorKind::Duplicate("offloaded")));
                    }
                    flow.offloaded = o;
                }
                "dp" => {
                    let at = self.pos;
                    let v = self.raw_part();
                    if v.is_empty() {
                        return Err(self.err_at(at, ErrorKind::Expected("a layer after dp:")));
                    }
                    if flow.dp.replace(v.to_string()).is_some() {
                        return Err(self.err_at(label_start, ErrorKind::Duplicate("dp")));
                    }
                }
                "actions" => {
                    once(&mut actions, self, "actions")?;
                    if self.at_end() || self.at_part_break() {
                        return Err(self.err(ErrorKind::Expected("actions after actions:")));
                    }
                    let list = self.list(None, 0, true)?;
                    // An empty action list prints as `drop`.
                    flow.actions = if list.len() == 1 && list[0].form == Form::Bare && list[0].name == "drop" {
                        Vec::new()
                    } else {
                        list.into_iter().map(DpAction::from).collect()
                    };
                }
                "dp-extra-info" => {
                    let v = self.raw_part();
                    if flow.dp_extra_info.replace(v.to_string()).is_some() {
                        return Err(self.err_at(label_start, ErrorKind::Duplicate("dp-extra-info")));
                    }
                }
                other => {
                    let other = other.to_string();
                    let v = self.raw_part();
                    flow.extra.push((other, v.to_string()));
                }
            }
        }
        for (seen, what) in [(packets, "packets:"), (bytes, "bytes:"), (actions, "actions:")] {
            if !seen {
                return Err(self.err(ErrorKind::Missing(what)));
            }
        }
        Ok(flow)
    }

    /// `label:` (letters, digits, `_`, `-`), consumed with its colon.
    fn label(&mut self) -> Option<&'a str> {
        let r = self.rest();
        let n = r.bytes().take_while(|b| b.is_ascii_alphanumeric() || *b == b'_' || *b == b'-').count();
        if n == 0 || r.as_bytes().get(n) != Some(&b':') {
            return None;
        }
        self.pos += n + 1;
        r.get(..n)
    }

    /// The rest of a part, up to the next `, ` (`dp-extra-info:miniflow_bits(4,1)`: OVS puts
    /// no `, ` inside a part, so brackets need no counting, and an unbalanced one cannot swallow
    /// the parts after it).
    fn raw_part(&mut self) -> &'a str {
        let r = self.rest();
        let n = r.find(", ").unwrap_or(r.len());
        self.pos += n;
        r.get(..n).unwrap_or("")
    }

    fn number(&mut self, field: &'static str) -> Result<u64, ParseError> {
        let at = self.pos;
        let v = self.raw_part();
        v.parse().map_err(|_| self.err_at(at, ErrorKind::BadNumber { field, value: v.to_string() }))
    }

    /// `never` or seconds with an `s` (`0.312s`; OVS prints `%.3f`).
    fn used(&mut self) -> Result<Option<f64>, ParseError> {
        let at = self.pos;
        let v = self.raw_part();
        if v == "never" {
            return Ok(None);
        }
        v.strip_suffix('s')
            .and_then(|n| n.parse::<f64>().ok())
            .filter(|x| x.is_finite())
            .map(Some)
            .ok_or_else(|| self.err_at(at, ErrorKind::BadNumber { field: "used", value: v.to_string() }))
    }

    // === attributes ===

    /// A comma list of attributes, closed by `close` (consumed) or, at the top of a line
    /// (`top`), ended by the end of the line or a `, `.
    fn list(&mut self, close: Option<u8>, depth: usize, top: bool) -> Result<Vec<DpKey>, ParseError> {
        if depth > MAX_DEPTH {
            return Err(self.err(ErrorKind::TooDeep));
        }
        // The opening bracket was the byte just before the list.
        let open = close.map(|c| (if c == b')' { '(' } else { '{' }, self.pos.saturating_sub(1)));
        let mut items: Vec<DpKey> = Vec::new();
        if close.is_some() && self.peek() == close {
            self.pos += 1;
            return Ok(items);
        }
        loop {
            items.push(self.item(depth)?);
            match self.peek() {
                Some(b',') if top && self.at_part_break() => return Ok(items),
                Some(b',') => {
                    self.pos += 1;
                    if !top {
                        // Only OVS's error strings put a space after a comma inside brackets.
                        self.skip_spaces();
                    }
                }
                Some(x) if Some(x) == close => {
                    self.pos += 1;
                    return Ok(items);
                }
                // Geneve options: `{...}{...}` with no comma between.
                Some(b'{') if items.last().is_some_and(|k| k.form == Form::Braces) => {}
                None if close.is_none() => return Ok(items),
                _ => return Err(self.unexpected(open)),
            }
        }
    }

    fn item(&mut self, depth: usize) -> Result<DpKey, ParseError> {
        match self.peek() {
            Some(b'{') => {
                self.pos += 1;
                let nested = self.list(Some(b'}'), depth + 1, false)?;
                return Ok(DpKey { name: String::new(), value: None, mask: None, nested, form: Form::Braces });
            }
            Some(b'(') => {
                self.pos += 1;
                let nested = self.list(Some(b')'), depth + 1, false)?;
                return Ok(DpKey { name: String::new(), value: None, mask: None, nested, form: Form::Parens });
            }
            _ => {}
        }
        let start = self.pos;
        let name = self.token();
        if name.is_empty() {
            return Err(self.unexpected(None));
        }
        match self.peek() {
            Some(b'(') => {
                self.pos += 1;
                let mut nested = self.list(Some(b')'), depth + 1, false)?;
                // `name(value[/mask])`: one plain word inside is the attribute's value.
                if nested.len() == 1 && nested[0].form == Form::Bare {
                    let word = nested.remove(0).name;
                    let (value, mask) = split_mask(&word);
                    return Ok(DpKey { name: name.to_string(), value: Some(value), mask, nested, form: Form::Call });
                }
                Ok(DpKey { name: name.to_string(), value: None, mask: None, nested, form: Form::Call })
            }
            Some(b'=') => {
                self.pos += 1;
                let v = self.token();
                if self.peek() == Some(b'=') || self.peek() == Some(b'(') {
                    return Err(self.unexpected(None));
                }
                let (value, mask) = split_mask(v);
                Ok(DpKey { name: name.to_string(), value: Some(value), mask, nested: Vec::new(), form: Form::Assign })
            }
            _ => {
                if name.starts_with(' ') || name.ends_with(' ') {
                    return Err(self.err_at(start, ErrorKind::Expected("an attribute (no space around it)")));
                }
                Ok(DpKey::bare(name))
            }
        }
    }
}

/// `value/mask` -> (value, Some(mask)); the first `/` splits (no OVS value contains one).
fn split_mask(word: &str) -> (String, Option<String>) {
    match word.split_once('/') {
        Some((v, m)) => (v.to_string(), Some(m.to_string())),
        None => (word.to_string(), None),
    }
}
