//! Firehose line packing: several whole lines in one Firehose record, newline-separated, so the
//! objects Firehose writes hold the same lines while far fewer records (each billed as at least
//! 5 KiB) are sent.

use bytes::Bytes;

/// Lines packed into one record.
#[derive(Debug, Default)]
pub struct Pack {
    lines: Vec<Bytes>,
    len: usize,
}

/// Bytes `line` takes in a pack: a line without its newline gets one.
fn packed_len(line: &[u8]) -> usize {
    line.len() + usize::from(!line.ends_with(b"\n"))
}

impl Pack {
    pub fn len(&self) -> usize {
        self.lines.len()
    }

    /// The packed record's size.
    pub fn encoded_len(&self) -> usize {
        self.len
    }

    pub fn encoded_len_with(&self, line: &[u8]) -> usize {
        self.len + packed_len(line)
    }

    pub fn add(&mut self, line: Bytes) {
        self.len += packed_len(&line);
        self.lines.push(line);
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.len);
        for line in &self.lines {
            out.extend_from_slice(line);
            if !line.ends_with(b"\n") {
                out.push(b'\n');
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_joined_with_exactly_one_newline_each() {
        let mut pack = Pack::default();
        for line in [&b"a\n"[..], b"no newline", b"\n", b"c\r\n"] {
            let predicted = pack.encoded_len_with(line);
            pack.add(Bytes::copy_from_slice(line));
            assert_eq!(pack.encoded_len(), predicted);
        }
        assert_eq!(pack.encode(), b"a\nno newline\n\nc\r\n");
        assert_eq!(pack.encode().len(), pack.encoded_len());
        assert_eq!(pack.len(), 4);
    }
}
