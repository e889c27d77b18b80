//! Reads entries in the journal export format, as `journalctl --output=export` prints them:
//! each field `NAME=value` on a line of its own, or, for a value that holds a line break or
//! other control bytes, `NAME`, a line break, the value's length as 64-bit little-endian and
//! the value's bytes, then a line break; an empty line ends the entry.

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt};

/// One field of an entry: its name and its value's bytes.
pub type Field = (Box<str>, Vec<u8>);

/// What [`next_entry`] read.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// An entry's fields are in the buffer.
    Entry,
    /// An entry longer than the limit was read past; its fields were dropped.
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

/// Reads the next entry of `reader` into `fields` (emptied first). An entry whose fields
/// hold more than `max_bytes` bytes in all is read past without keeping them.
pub async fn next_entry<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    fields: &mut Vec<Field>,
    line: &mut Vec<u8>,
    max_bytes: usize,
) -> Result<Next, ExportError> {
    fields.clear();
    let mut held = 0usize;
    let mut too_long = false;
    loop {
        line.clear();
        if reader.read_until(b'\n', line).await? == 0 {
            return Ok(Next::End);
        }
        let Some(text) = line.strip_suffix(b"\n") else {
            return Ok(Next::End); // An unfinished last line: journalctl was stopped.
        };
        if text.is_empty() {
            if too_long {
                return Ok(Next::TooLong);
            }
            if fields.is_empty() {
                continue;
            }
            return Ok(Next::Entry);
        }
        let (name, value) = match memchr::memchr(b'=', text) {
            Some(at) => (text[..at].to_vec(), Some(text[at + 1..].to_vec())),
            None => {
                let room = max_bytes.saturating_sub(held);
                (text.to_vec(), read_binary_value(reader, room).await?)
            }
        };
        let value = match value {
            Some(value) if !too_long => value,
            _ => {
                too_long = true;
                fields.clear();
                continue;
            }
        };
        held += name.len() + value.len();
        if held > max_bytes {
            too_long = true;
            fields.clear();
            continue;
        }
        let name = String::from_utf8(name)
            .map_err(|_| ExportError::Malformed("a field name is not text"))?;
        fields.push((name.into_boxed_str(), value));
    }
}

/// A binary field's value: its length, its bytes and the line break after them; `None` for
/// a value longer than `room`, which is read past.
async fn read_binary_value<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    room: usize,
) -> Result<Option<Vec<u8>>, ExportError> {
    let len = reader.read_u64_le().await?;
    let value = match usize::try_from(len) {
        Ok(len) if len <= room => {
            let mut value = vec![0; len];
            reader.read_exact(&mut value).await?;
            Some(value)
        }
        _ => {
            let skipped =
                tokio::io::copy(&mut (&mut *reader).take(len), &mut tokio::io::sink()).await?;
            if skipped != len {
                return Err(ExportError::Malformed("a value ends early"));
            }
            None
        }
    };
    let mut end = [0u8; 1];
    reader.read_exact(&mut end).await?;
    if end[0] != b'\n' {
        return Err(ExportError::Malformed(
            "a value is not followed by a line break",
        ));
    }
    Ok(value)
}

#[cfg(test)]
mod tests;
