//! Reads entries in the journal export format, as `journalctl --output=export` prints them:
//! each field `NAME=value` on a line of its own, or, for a value that holds a line break or
//! other control bytes, `NAME`, a line break, the value's length as 64-bit little-endian and
//! the value's bytes, then a line break; an empty line ends the entry.
//!
//! Memory stays bounded whatever journalctl prints: only the start of a value longer than the
//! record limit is kept (the rest could not be sent anyway), and an entry holding more than
//! [`Limits::entry_bytes`] in all is read past.

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt};

/// Room for a field's name on its line, beyond its value.
const NAME_ROOM: usize = 1024;

/// One field of an entry.
#[derive(Debug, PartialEq, Eq)]
pub struct Field {
    pub name: Box<str>,
    pub value: Vec<u8>,
    /// The value was longer than [`Limits::value_bytes`]: only its start is here.
    pub cut: bool,
}

/// How much of an entry is kept.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// The most bytes kept of one value.
    pub value_bytes: usize,
    /// The most bytes of names and values kept of one entry; a larger entry is read past.
    pub entry_bytes: usize,
}

/// What [`next_entry`] read.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// An entry's fields are in the buffer.
    Entry,
    /// An entry larger than the limit was read past; its fields were dropped.
    TooLong,
    /// The output ended (an unfinished last entry is dropped).
    End,
}

/// Why the output could not be read as entries.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("reading journalctl's output failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("journalctl's output is not in the export format: {0}")]
    Malformed(&'static str),
}

/// How a line was read.
enum LineRead {
    /// A whole line; `cut` if only its start was kept.
    Whole { cut: bool },
    /// The output ended, at a line's start or inside one.
    End,
}

/// Reads the next entry of `reader` into `fields` (emptied first).
pub async fn next_entry<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    fields: &mut Vec<Field>,
    line: &mut Vec<u8>,
    limits: Limits,
) -> Result<Next, ExportError> {
    fields.clear();
    let mut held = 0usize;
    let mut too_long = false;
    loop {
        line.clear();
        let cut = match read_line(reader, line, limits.value_bytes + NAME_ROOM).await? {
            LineRead::End => return Ok(Next::End),
            LineRead::Whole { cut } => cut,
        };
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        if line.is_empty() && !cut {
            if too_long {
                return Ok(Next::TooLong);
            }
            if fields.is_empty() {
                continue;
            }
            return Ok(Next::Entry);
        }
        let field = match memchr::memchr(b'=', line) {
            Some(at) => {
                let value = &line[at + 1..];
                let kept = value.len().min(limits.value_bytes);
                Field {
                    name: name_of(&line[..at]),
                    value: value[..kept].to_vec(),
                    cut: cut || kept < value.len(),
                }
            }
            None if cut => return Err(ExportError::Malformed("a field name is too long")),
            None => {
                let (value, cut) = read_binary_value(reader, limits.value_bytes).await?;
                Field {
                    name: name_of(line),
                    value,
                    cut,
                }
            }
        };
        held += field.name.len() + field.value.len();
        if held > limits.entry_bytes {
            too_long = true;
            *fields = Vec::new();
        }
        if !too_long {
            fields.push(field);
        }
    }
}

fn name_of(bytes: &[u8]) -> Box<str> {
    String::from_utf8_lossy(bytes).into()
}

/// Reads a line into `line`, keeping at most `cap` bytes of it and reading past the rest.
async fn read_line<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    line: &mut Vec<u8>,
    cap: usize,
) -> Result<LineRead, ExportError> {
    let mut cut = false;
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            return Ok(LineRead::End);
        }
        let (taken, ended) = match memchr::memchr(b'\n', available) {
            Some(at) => (at + 1, true),
            None => (available.len(), false),
        };
        let kept = taken.min(cap.saturating_sub(line.len()));
        line.extend_from_slice(&available[..kept]);
        cut |= kept < taken;
        reader.consume(taken);
        if ended {
            return Ok(LineRead::Whole { cut });
        }
    }
}

/// A binary field's value (its length, its bytes and the line break after them): at most
/// `cap` bytes of it, and whether it was longer.
async fn read_binary_value<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    cap: usize,
) -> Result<(Vec<u8>, bool), ExportError> {
    let len = reader.read_u64_le().await?;
    let kept = usize::try_from(len).unwrap_or(usize::MAX).min(cap);
    let mut value = vec![0; kept];
    reader.read_exact(&mut value).await?;
    let rest = len - kept as u64;
    if rest > 0 {
        let skipped =
            tokio::io::copy(&mut (&mut *reader).take(rest), &mut tokio::io::sink()).await?;
        if skipped != rest {
            return Err(ExportError::Malformed("a value ends early"));
        }
    }
    let mut end = [0u8; 1];
    reader.read_exact(&mut end).await?;
    if end[0] != b'\n' {
        return Err(ExportError::Malformed(
            "a value is not followed by a line break",
        ));
    }
    Ok((value, rest > 0))
}

#[cfg(test)]
mod tests;
