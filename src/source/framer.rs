//! Cuts the bytes of one file into records: one line per record, the newline included, byte for
//! byte. A line longer than the record limit is cut to fit and given a newline; the rest of it
//! is skipped. A last line without its newline waits for the newline.

use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};

use crate::record::{LineSpan, Lines, SourceFile};

/// What one call to [`Framer::frame`] produced.
#[derive(Debug, Default)]
pub struct Framed {
    pub lines: Vec<Lines>,
    /// Lines cut to the record limit in this call.
    pub truncated: u64,
}

#[derive(Debug)]
pub struct Framer {
    /// Most bytes of one record, its newline included.
    max_line_bytes: usize,
    /// Bytes read but not framed yet: the start of a line whose newline has not arrived.
    buffer: BytesMut,
    /// File offset of `buffer[0]`.
    buffer_offset: u64,
    /// While skipping the rest of an over-long line: its first bytes and where it started.
    over_long: Option<(Bytes, u64)>,
    /// Bytes at the start of the buffer already searched for a newline.
    scanned: usize,
}

impl Framer {
    pub fn new(max_line_bytes: usize, offset: u64) -> Self {
        Self {
            max_line_bytes: max_line_bytes.max(2),
            buffer: BytesMut::new(),
            buffer_offset: offset,
            over_long: None,
            scanned: 0,
        }
    }

    /// Offset where the first line not yet framed starts: all bytes before it are in records.
    pub fn framed_offset(&self) -> u64 {
        match &self.over_long {
            Some((_, start)) => *start,
            None => self.buffer_offset,
        }
    }

    /// Offset of the next byte to read.
    pub fn read_offset(&self) -> u64 {
        self.buffer_offset + self.buffer.len() as u64
    }

    /// Forgets everything and starts again at `offset` (the file was truncated).
    pub fn restart_at(&mut self, offset: u64) {
        self.buffer.clear();
        self.buffer_offset = offset;
        self.over_long = None;
        self.scanned = 0;
    }

    /// Hands out the buffer so `size` more bytes can be read into its end, at
    /// [`Framer::read_offset`] as it was before this call; give it back with [`Framer::frame`].
    pub fn take_buffer(&mut self, size: usize) -> (BytesMut, usize) {
        let mut buffer = std::mem::take(&mut self.buffer);
        let filled = buffer.len();
        self.scanned = filled;
        buffer.resize(filled + size, 0);
        (buffer, filled)
    }

    /// Takes back the buffer from [`Framer::take_buffer`] holding `filled` valid bytes, and
    /// returns the complete records it now holds.
    pub fn frame(&mut self, mut buffer: BytesMut, filled: usize, file: &Arc<SourceFile>) -> Framed {
        buffer.truncate(filled);
        let scanned = self.scanned.min(filled);
        self.scanned = 0;
        self.buffer = buffer;
        let mut framed = Framed::default();
        let mut scan_from = scanned;

        if let Some((head, start)) = self.over_long.take() {
            match memchr::memchr(b'\n', &self.buffer) {
                None => {
                    // Still inside the over-long line: drop what was read, keep its head.
                    self.buffer_offset += self.buffer.len() as u64;
                    self.buffer.clear();
                    self.over_long = Some((head, start));
                    return framed;
                }
                Some(newline) => {
                    let end = newline + 1;
                    let file_end = self.buffer_offset + end as u64;
                    framed
                        .lines
                        .push(truncated_record(file, start, &head, file_end));
                    framed.truncated += 1;
                    let _ = self.buffer.split_to(end);
                    self.buffer_offset = file_end;
                    scan_from = 0;
                }
            }
        }

        let mut pieces: Vec<Piece> = Vec::new();
        let mut line_start = 0;
        for newline in memchr::memchr_iter(b'\n', &self.buffer[scan_from..]) {
            let end = scan_from + newline + 1;
            if end - line_start <= self.max_line_bytes {
                pieces.push(Piece::Line {
                    start: line_start,
                    end,
                });
            } else {
                pieces.push(Piece::OverLong {
                    start: line_start,
                    end,
                });
            }
            line_start = end;
        }
        if line_start > 0 {
            let complete = if line_start * 4 < self.buffer.capacity() {
                // A few lines in a large buffer get an allocation of their own, so records
                // waiting for delivery never pin a mostly empty read buffer.
                let copied = Bytes::copy_from_slice(&self.buffer[..line_start]);
                self.buffer.advance(line_start);
                copied
            } else {
                self.buffer.split_to(line_start).freeze()
            };
            let complete_offset = self.buffer_offset;
            self.buffer_offset += line_start as u64;
            framed.truncated += emit(
                &complete,
                complete_offset,
                &pieces,
                self.max_line_bytes,
                file,
                &mut framed.lines,
            );
        }
        if self.buffer.len() >= self.max_line_bytes {
            // No room left for a newline: this line will be cut. Keep its head, skip the rest.
            let head = Bytes::copy_from_slice(&self.buffer[..self.max_line_bytes - 1]);
            self.over_long = Some((head, self.buffer_offset));
            self.buffer_offset += self.buffer.len() as u64;
            self.buffer.clear();
        }
        framed
    }
}

enum Piece {
    Line { start: usize, end: usize },
    OverLong { start: usize, end: usize },
}

/// Turns the pieces of `complete` (which starts at file offset `offset`) into `Lines` blocks:
/// runs of ordinary lines share the buffer; each over-long line becomes its own cut record.
fn emit(
    complete: &Bytes,
    offset: u64,
    pieces: &[Piece],
    max_line_bytes: usize,
    file: &Arc<SourceFile>,
    out: &mut Vec<Lines>,
) -> u64 {
    let mut truncated = 0;
    let mut run_start: Option<usize> = None;
    let mut spans: Vec<LineSpan> = Vec::new();
    let flush = |run_start: &mut Option<usize>,
                 spans: &mut Vec<LineSpan>,
                 run_end: usize,
                 out: &mut Vec<Lines>| {
        if let Some(start) = run_start.take() {
            out.push(Lines {
                file: Arc::clone(file),
                file_start: offset + start as u64,
                data: complete.slice(start..run_end),
                spans: std::mem::take(spans),
            });
        }
    };
    for piece in pieces {
        match *piece {
            Piece::Line { start, end } => {
                let base = *run_start.get_or_insert(start);
                spans.push(LineSpan {
                    data_start: (start - base) as u32,
                    data_end: (end - base) as u32,
                    file_end: offset + end as u64,
                });
            }
            Piece::OverLong { start, end } => {
                flush(&mut run_start, &mut spans, start, out);
                let head = complete.slice(start..start + max_line_bytes - 1);
                out.push(truncated_record(
                    file,
                    offset + start as u64,
                    &head,
                    offset + end as u64,
                ));
                truncated += 1;
            }
        }
    }
    let run_end = pieces.last().map_or(0, |piece| match *piece {
        Piece::Line { end, .. } | Piece::OverLong { end, .. } => end,
    });
    flush(&mut run_start, &mut spans, run_end, out);
    truncated
}

fn truncated_record(file: &Arc<SourceFile>, start: u64, head: &[u8], file_end: u64) -> Lines {
    let mut data = Vec::with_capacity(head.len() + 1);
    data.extend_from_slice(head);
    data.push(b'\n');
    let len = data.len() as u32;
    Lines {
        file: Arc::clone(file),
        file_start: start,
        data: Bytes::from(data),
        spans: vec![LineSpan {
            data_start: 0,
            data_end: len,
            file_end,
        }],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::FileId;

    fn file() -> Arc<SourceFile> {
        Arc::new(SourceFile {
            key: 1,
            flow: Arc::from("test"),
            id: FileId {
                device: 1,
                inode: 2,
            },
            head: None,
            path: "/tmp/x.log".into(),
        })
    }

    /// A framed record: where it starts and ends in the file, and its bytes.
    type FramedRecord = (u64, u64, Vec<u8>);

    /// Feeds `chunks` one by one and returns every record, the framer and the lines cut.
    fn frame_all(max_line: usize, chunks: &[&[u8]]) -> (Vec<FramedRecord>, Framer, u64) {
        let file = file();
        let mut framer = Framer::new(max_line, 0);
        let mut records = Vec::new();
        let mut truncated = 0;
        for chunk in chunks {
            let (mut buffer, filled) = framer.take_buffer(chunk.len());
            buffer[filled..filled + chunk.len()].copy_from_slice(chunk);
            let framed = framer.frame(buffer, filled + chunk.len(), &file);
            truncated += framed.truncated;
            for lines in framed.lines {
                let mut start = lines.file_start;
                for span in &lines.spans {
                    let data =
                        lines.data[span.data_start as usize..span.data_end as usize].to_vec();
                    records.push((start, span.file_end, data));
                    start = span.file_end;
                }
            }
        }
        (records, framer, truncated)
    }

    #[test]
    fn lines_keep_their_bytes_and_newlines() {
        let input: &[u8] = b"a\r\n\n\0nul\xff\xfe\nlast";
        let (records, framer, truncated) = frame_all(100, &[input]);
        assert_eq!(
            records,
            vec![
                (0, 3, b"a\r\n".to_vec()),
                (3, 4, b"\n".to_vec()),
                (4, 11, b"\0nul\xff\xfe\n".to_vec()),
            ]
        );
        assert_eq!(truncated, 0);
        assert_eq!(framer.framed_offset(), 11);
        assert_eq!(framer.read_offset(), 15);
    }

    #[test]
    fn a_line_split_across_reads_is_framed_once_its_newline_arrives() {
        let (records, framer, _) = frame_all(100, &[b"hel", b"lo", b"\nwor", b"ld\n"]);
        assert_eq!(
            records,
            vec![(0, 6, b"hello\n".to_vec()), (6, 12, b"world\n".to_vec())]
        );
        assert_eq!(framer.framed_offset(), 12);
    }

    #[test]
    fn a_line_of_exactly_the_limit_is_kept_whole() {
        let (records, _, truncated) = frame_all(4, &[b"abc\nabcd\n"]);
        assert_eq!(records[0], (0, 4, b"abc\n".to_vec()));
        assert_eq!(records[1], (4, 9, b"abc\n".to_vec()));
        assert_eq!(truncated, 1);
    }

    #[test]
    fn an_over_long_line_within_one_read_is_cut_and_ends_in_a_newline() {
        let (records, _, truncated) = frame_all(5, &[b"ab\n0123456789\ncd\n"]);
        assert_eq!(
            records,
            vec![
                (0, 3, b"ab\n".to_vec()),
                (3, 14, b"0123\n".to_vec()),
                (14, 17, b"cd\n".to_vec())
            ]
        );
        assert_eq!(truncated, 1);
    }

    #[test]
    fn an_over_long_line_across_many_reads_is_cut_once_and_covers_its_whole_range() {
        let (records, framer, truncated) =
            frame_all(5, &[b"x\n0123", b"4567", b"89", b"ab\nnext\n"]);
        assert_eq!(
            records,
            vec![
                (0, 2, b"x\n".to_vec()),
                (2, 15, b"0123\n".to_vec()),
                (15, 20, b"next\n".to_vec())
            ]
        );
        assert_eq!(truncated, 1);
        assert_eq!(framer.framed_offset(), 20);
    }

    #[test]
    fn framed_offset_stays_at_the_start_of_an_over_long_line_until_it_ends() {
        let (_, framer, _) = frame_all(5, &[b"ok\n0123456789"]);
        assert_eq!(framer.framed_offset(), 3);
        assert_eq!(framer.read_offset(), 13);
    }

    #[test]
    fn restart_forgets_the_partial_line() {
        let file = file();
        let mut framer = Framer::new(100, 0);
        let (mut buffer, filled) = framer.take_buffer(3);
        buffer[filled..filled + 3].copy_from_slice(b"abc");
        framer.frame(buffer, filled + 3, &file);
        framer.restart_at(0);
        let (mut buffer, filled) = framer.take_buffer(2);
        assert_eq!(filled, 0);
        buffer[..2].copy_from_slice(b"z\n");
        let framed = framer.frame(buffer, 2, &file);
        assert_eq!(&framed.lines[0].data[..], b"z\n");
    }
}
