//! Reading AWS JSON 1.1 answers: a forward-only reader that validates what it passes over and
//! decodes only the members it is asked about.

use std::borrow::Cow;

use crate::sink::wire::response::ScanError;

/// How deep an answer may nest before the reader gives up on it (real answers nest 3 deep).
const MAX_DEPTH: usize = 64;

/// A JSON value's kind, from its first byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Object,
    Array,
    String,
    Number,
    Bool,
    Null,
}

/// A forward-only reader over a JSON text that validates what it passes over and decodes
/// only the strings and numbers it is asked for.
pub(crate) struct Reader<'a> {
    text: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(text: &'a [u8]) -> Self {
        Reader { text, at: 0 }
    }

    pub(crate) fn offset(&self) -> usize {
        self.at
    }

    pub(crate) fn invalid(&self, reason: &'static str) -> ScanError {
        ScanError::InvalidJson {
            offset: self.at,
            reason,
        }
    }

    fn skip_whitespace(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.text.get(self.at) {
            self.at += 1;
        }
    }

    /// The kind of the next value, after any whitespace.
    pub(crate) fn peek_kind(&mut self) -> Result<Kind, ScanError> {
        self.skip_whitespace();
        match self.text.get(self.at) {
            None => Err(self.invalid("the text ends where a value should start")),
            Some(b'{') => Ok(Kind::Object),
            Some(b'[') => Ok(Kind::Array),
            Some(b'"') => Ok(Kind::String),
            Some(b'-' | b'0'..=b'9') => Ok(Kind::Number),
            Some(b't' | b'f') => Ok(Kind::Bool),
            Some(b'n') => Ok(Kind::Null),
            Some(_) => Err(self.invalid("a value cannot start with this byte")),
        }
    }

    /// Checks that nothing but whitespace follows.
    pub(crate) fn end(&mut self) -> Result<(), ScanError> {
        self.skip_whitespace();
        if self.at == self.text.len() {
            Ok(())
        } else {
            Err(self.invalid("more text follows the value"))
        }
    }

    fn eat(&mut self, byte: u8, reason: &'static str) -> Result<(), ScanError> {
        self.skip_whitespace();
        if self.text.get(self.at) == Some(&byte) {
            self.at += 1;
            Ok(())
        } else {
            Err(self.invalid(reason))
        }
    }

    /// Enters an object; then call [`Reader::next_member`] until it returns `None`.
    pub(crate) fn begin_object(&mut self) -> Result<(), ScanError> {
        self.eat(b'{', "an object should start here")
    }

    /// The next member's name (the reader is then at its value), or `None` at the object's end.
    /// `first` is true for the first call on an object.
    pub(crate) fn next_member(
        &mut self,
        first: &mut bool,
    ) -> Result<Option<Cow<'a, [u8]>>, ScanError> {
        self.skip_whitespace();
        match self.text.get(self.at) {
            Some(b'}') => {
                self.at += 1;
                return Ok(None);
            }
            Some(b',') if !*first => self.at += 1,
            _ if *first => {}
            _ => return Err(self.invalid("a comma or '}' should follow a member")),
        }
        *first = false;
        self.skip_whitespace();
        if self.text.get(self.at) != Some(&b'"') {
            return Err(self.invalid("a member name should start here"));
        }
        let name = self.string()?;
        self.eat(b':', "a colon should follow a member name")?;
        Ok(Some(name))
    }

    /// Enters an array; then call [`Reader::next_element`] until it returns false.
    pub(crate) fn begin_array(&mut self) -> Result<(), ScanError> {
        self.eat(b'[', "an array should start here")
    }

    /// Whether another element follows (the reader is then at it).
    pub(crate) fn next_element(&mut self, first: &mut bool) -> Result<bool, ScanError> {
        self.skip_whitespace();
        match self.text.get(self.at) {
            Some(b']') => {
                self.at += 1;
                return Ok(false);
            }
            Some(b',') if !*first => self.at += 1,
            _ if *first => {}
            _ => return Err(self.invalid("a comma or ']' should follow an element")),
        }
        *first = false;
        Ok(true)
    }

    /// Reads a string value, its escapes decoded; borrowed when it has none.
    pub(crate) fn string(&mut self) -> Result<Cow<'a, [u8]>, ScanError> {
        self.eat(b'"', "a string should start here")?;
        let start = self.at;
        let text = self.text;
        let close = memchr::memchr2(b'"', b'\\', &text[start..]).map(|at| start + at);
        match close {
            None => {
                self.at = text.len();
                Err(self.invalid("the text ends inside a string"))
            }
            Some(at) if text[at] == b'"' => {
                if text[start..at].iter().any(|&byte| byte < 0x20) {
                    return Err(self.invalid("a string holds an unescaped control character"));
                }
                self.at = at + 1;
                Ok(Cow::Borrowed(&text[start..at]))
            }
            Some(_) => {
                let mut decoded = Vec::new();
                self.decode_escaped(start, Some(&mut decoded))?;
                Ok(Cow::Owned(decoded))
            }
        }
    }

    /// Walks a string from `start` (just after its opening quote) to its end, decoding it
    /// into `into` when given.
    fn decode_escaped(
        &mut self,
        start: usize,
        mut into: Option<&mut Vec<u8>>,
    ) -> Result<(), ScanError> {
        let text = self.text;
        self.at = start;
        loop {
            let run_start = self.at;
            let Some(found) = memchr::memchr2(b'"', b'\\', &text[run_start..]) else {
                self.at = text.len();
                return Err(self.invalid("the text ends inside a string"));
            };
            let run = &text[run_start..run_start + found];
            if run.iter().any(|&byte| byte < 0x20) {
                return Err(self.invalid("a string holds an unescaped control character"));
            }
            if let Some(into) = into.as_deref_mut() {
                into.extend_from_slice(run);
            }
            self.at = run_start + found;
            if text[self.at] == b'"' {
                self.at += 1;
                return Ok(());
            }
            self.at += 1;
            let Some(&escape) = text.get(self.at) else {
                return Err(self.invalid("the text ends inside a string"));
            };
            self.at += 1;
            let plain = match escape {
                b'"' => b'"',
                b'\\' => b'\\',
                b'/' => b'/',
                b'b' => 0x08,
                b'f' => 0x0C,
                b'n' => b'\n',
                b'r' => b'\r',
                b't' => b'\t',
                b'u' => {
                    let ch = self.unicode_escape()?;
                    if let Some(into) = into.as_deref_mut() {
                        let mut utf8 = [0u8; 4];
                        into.extend_from_slice(ch.encode_utf8(&mut utf8).as_bytes());
                    }
                    continue;
                }
                _ => {
                    self.at -= 1;
                    return Err(self.invalid("a string holds an unknown escape"));
                }
            };
            if let Some(into) = into.as_deref_mut() {
                into.push(plain);
            }
        }
    }

    fn hex4(&mut self) -> Result<u16, ScanError> {
        let Some(digits) = self.text.get(self.at..self.at + 4) else {
            return Err(self.invalid("a \\u escape needs four hex digits"));
        };
        let mut value = 0u16;
        for &digit in digits {
            let nibble = match digit {
                b'0'..=b'9' => digit - b'0',
                b'a'..=b'f' => digit - b'a' + 10,
                b'A'..=b'F' => digit - b'A' + 10,
                _ => return Err(self.invalid("a \\u escape needs four hex digits")),
            };
            value = value << 4 | u16::from(nibble);
        }
        self.at += 4;
        Ok(value)
    }

    /// Decodes the digits after `\u`, joining a surrogate pair; a lone surrogate becomes
    /// U+FFFD, as it cannot be represented.
    fn unicode_escape(&mut self) -> Result<char, ScanError> {
        let unit = self.hex4()?;
        if (0xD800..0xDC00).contains(&unit) {
            if self.text.get(self.at..self.at + 2) == Some(b"\\u") {
                let resume = self.at;
                self.at += 2;
                let low = self.hex4()?;
                if (0xDC00..0xE000).contains(&low) {
                    let code =
                        0x10000 + ((u32::from(unit) - 0xD800) << 10) + (u32::from(low) - 0xDC00);
                    return Ok(char::from_u32(code).unwrap_or(char::REPLACEMENT_CHARACTER));
                }
                // Not a low surrogate: it is an escape of its own, read next.
                self.at = resume;
            }
            return Ok(char::REPLACEMENT_CHARACTER);
        }
        Ok(char::from_u32(u32::from(unit)).unwrap_or(char::REPLACEMENT_CHARACTER))
    }

    /// Reads a number that should be a count: a non-negative integer (an integral float such
    /// as `3.0` or `3e0` is taken too). Returns `None` for any other number.
    pub(crate) fn count(&mut self) -> Result<Option<u64>, ScanError> {
        self.skip_whitespace();
        let start = self.at;
        self.skip_number()?;
        let literal = &self.text[start..self.at];
        // The literal is ASCII by construction.
        let literal =
            std::str::from_utf8(literal).map_err(|_| self.invalid("a number is not ASCII"))?;
        if let Ok(n) = literal.parse::<u64>() {
            return Ok(Some(n));
        }
        match literal.parse::<f64>() {
            Ok(value) if value >= 0.0 && value.fract() == 0.0 && value < 1.8e19 => {
                Ok(Some(value as u64))
            }
            _ => Ok(None),
        }
    }

    fn skip_number(&mut self) -> Result<(), ScanError> {
        let text = self.text;
        let digits = |at: &mut usize| {
            let start = *at;
            while let Some(b'0'..=b'9') = text.get(*at) {
                *at += 1;
            }
            *at > start
        };
        let mut at = self.at;
        if text.get(at) == Some(&b'-') {
            at += 1;
        }
        if !digits(&mut at) {
            self.at = at;
            return Err(self.invalid("a number needs digits"));
        }
        if text.get(at) == Some(&b'.') {
            at += 1;
            if !digits(&mut at) {
                self.at = at;
                return Err(self.invalid("a number needs digits after its point"));
            }
        }
        if let Some(b'e' | b'E') = text.get(at) {
            at += 1;
            if let Some(b'+' | b'-') = text.get(at) {
                at += 1;
            }
            if !digits(&mut at) {
                self.at = at;
                return Err(self.invalid("a number needs digits in its exponent"));
            }
        }
        self.at = at;
        Ok(())
    }

    fn literal(&mut self, word: &'static [u8]) -> Result<(), ScanError> {
        if self.text.get(self.at..self.at + word.len()) == Some(word) {
            self.at += word.len();
            Ok(())
        } else {
            Err(self.invalid("an unknown word where a value should be"))
        }
    }

    /// Reads `null` if it is next; true when it was.
    pub(crate) fn null(&mut self) -> Result<bool, ScanError> {
        if self.peek_kind()? == Kind::Null {
            self.literal(b"null")?;
            Ok(true)
        } else {
            Ok(false)
        }
    }

    /// Passes over the next value, checking it is well formed.
    pub(crate) fn skip_value(&mut self) -> Result<(), ScanError> {
        self.skip_nested(0)
    }

    /// Passes over the next value by its structure alone: strings are jumped over to their
    /// closing quote and brackets counted, without checking what lies between. For the entries
    /// of an answer whose every record was accepted, where only their number matters; a text
    /// that ends before the value does is still an error.
    pub(crate) fn skim_value(&mut self) -> Result<(), ScanError> {
        match self.peek_kind()? {
            Kind::Object | Kind::Array => {}
            _ => return self.skip_value(),
        }
        let text = self.text;
        let mut depth = 0usize;
        // Outside strings an answer holds only punctuation, names' quotes and short numbers,
        // so a byte at a time is quick; strings are jumped over whole.
        while let Some(&byte) = text.get(self.at) {
            self.at += 1;
            match byte {
                b'"' => self.skim_string()?,
                b'{' | b'[' => {
                    depth += 1;
                    if depth > MAX_DEPTH {
                        return Err(ScanError::TooDeep { offset: self.at });
                    }
                }
                b'}' | b']' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        return Ok(());
                    }
                }
                _ => {}
            }
        }
        Err(self.invalid("the text ends inside a value"))
    }

    /// Jumps from just inside a string to just past its closing quote.
    fn skim_string(&mut self) -> Result<(), ScanError> {
        let text = self.text;
        loop {
            let Some(found) = memchr::memchr2(b'"', b'\\', &text[self.at..]) else {
                self.at = text.len();
                return Err(self.invalid("the text ends inside a string"));
            };
            self.at += found + 1;
            if text[self.at - 1] == b'"' {
                return Ok(());
            }
            // An escape: the byte after the backslash is never the string's end.
            self.at += 1;
        }
    }

    fn skip_nested(&mut self, depth: usize) -> Result<(), ScanError> {
        if depth >= MAX_DEPTH {
            return Err(ScanError::TooDeep { offset: self.at });
        }
        match self.peek_kind()? {
            Kind::Object => {
                self.begin_object()?;
                let mut first = true;
                while self.next_member(&mut first)?.is_some() {
                    self.skip_nested(depth + 1)?;
                }
                Ok(())
            }
            Kind::Array => {
                self.begin_array()?;
                let mut first = true;
                while self.next_element(&mut first)? {
                    self.skip_nested(depth + 1)?;
                }
                Ok(())
            }
            Kind::String => {
                self.at += 1;
                self.decode_escaped(self.at, None)
            }
            Kind::Number => self.skip_number(),
            Kind::Bool => {
                if self.text.get(self.at) == Some(&b't') {
                    self.literal(b"true")
                } else {
                    self.literal(b"false")
                }
            }
            Kind::Null => self.literal(b"null"),
        }
    }
}
