//! Cuts the bytes of one file into records: one line per record, the newline included, byte for
//! byte. A line longer than the record limit is cut, split or skipped as configured. A last line
//! without its newline waits for the newline, or for [`Framer::flush_partial`].

use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};

use crate::config::Oversize;
use crate::limits::Reservation;
use crate::record::{LineSpan, Lines, SourceFile};

/// How records are cut.
#[derive(Clone, Debug)]
pub(super) struct FrameOptions {
    /// Most bytes of one record, its newline included.
    pub(super) max_line_bytes: usize,
    pub(super) oversize: Oversize,
    /// Ends a record cut by [`Oversize::Truncate`].
    pub(super) terminator: Bytes,
}

#[cfg(test)]
impl FrameOptions {
    /// Plain lines of at most `max_line_bytes`, longer ones cut.
    pub(super) fn lines(max_line_bytes: usize) -> Self {
        Self {
            max_line_bytes,
            oversize: Oversize::Truncate,
            terminator: Bytes::from_static(b"\n"),
        }
    }
}

/// What one call to [`Framer::frame`] produced.
#[derive(Debug, Default)]
pub(super) struct Framed {
    pub(super) lines: Vec<Lines>,
    /// Lines longer than the record limit met in this call (cut, split or skipped).
    pub(super) oversize: u64,
}

/// An over-long line being skipped to its end: where it started, and its first bytes when it
/// is to be sent cut.
#[derive(Debug)]
struct OverLong {
    start: u64,
    head: Option<Bytes>,
}

#[derive(Debug)]
pub(super) struct Framer {
    max_line_bytes: usize,
    oversize: Oversize,
    terminator: Bytes,
    /// Bytes read but not framed yet: the start of a line whose newline has not arrived.
    buffer: BytesMut,
    /// File offset of `buffer[0]`.
    buffer_offset: u64,
    over_long: Option<OverLong>,
    /// The line at the start of the buffer was over-long and is being sent in pieces: counted.
    splitting: bool,
    /// Bytes at the start of the buffer already searched for a newline.
    scanned: usize,
}

impl Framer {
    pub(super) fn new(options: FrameOptions, offset: u64) -> Self {
        // Room for at least one byte of the line beside the terminator.
        let max_line_bytes = options
            .max_line_bytes
            .max(options.terminator.len() + 1)
            .max(2);
        Self {
            max_line_bytes,
            oversize: options.oversize,
            terminator: options.terminator,
            buffer: BytesMut::new(),
            buffer_offset: offset,
            over_long: None,
            splitting: false,
            scanned: 0,
        }
    }

    /// Offset where the first line not yet framed starts: all bytes before it are in records.
    pub(super) fn framed_offset(&self) -> u64 {
        match &self.over_long {
            Some(over_long) => over_long.start,
            None => self.buffer_offset,
        }
    }

    /// Offset of the next byte to read.
    pub(super) fn read_offset(&self) -> u64 {
        self.buffer_offset + self.buffer.len() as u64
    }

    /// Whether bytes were read that are not in a record yet (a line without its newline).
    pub(super) fn has_partial(&self) -> bool {
        self.read_offset() > self.framed_offset()
    }

    /// Forgets everything and starts again at `offset` (the file was truncated).
    pub(super) fn restart_at(&mut self, offset: u64) {
        self.buffer.clear();
        self.buffer_offset = offset;
        self.over_long = None;
        self.splitting = false;
        self.scanned = 0;
    }

    /// Hands out the buffer so `size` more bytes can be read into its end, at
    /// [`Framer::read_offset`] as it was before this call; give it back with [`Framer::frame`].
    pub(super) fn take_buffer(&mut self, size: usize) -> (BytesMut, usize) {
        let mut buffer = std::mem::take(&mut self.buffer);
        let filled = buffer.len();
        self.scanned = filled;
        buffer.resize(filled + size, 0);
        (buffer, filled)
    }

    /// Turns the bytes read but not framed (a last line without its newline) into a record as
    /// they are, so a line that never gets its newline is not lost.
    pub(super) fn flush_partial(&mut self, file: &Arc<SourceFile>) -> Framed {
        let mut framed = Framed::default();
        let end = self.read_offset();
        if let Some(over_long) = self.over_long.take() {
            framed
                .lines
                .push(self.over_long_record(file, over_long, end));
        } else if !self.buffer.is_empty() {
            let data = self.buffer.split().freeze();
            framed
                .lines
                .push(single(file, self.buffer_offset, data, end));
        }
        self.buffer.clear();
        self.buffer_offset = end;
        self.splitting = false;
        self.scanned = 0;
        framed
    }

    /// Takes back the buffer from [`Framer::take_buffer`] holding `filled` valid bytes, and
    /// returns the complete records it now holds.
    pub(super) fn frame(
        &mut self,
        mut buffer: BytesMut,
        filled: usize,
        file: &Arc<SourceFile>,
    ) -> Framed {
        buffer.truncate(filled);
        let scanned = self.scanned.min(filled);
        self.scanned = 0;
        self.buffer = buffer;
        let mut framed = Framed::default();
        let mut scan_from = scanned;

        if let Some(over_long) = self.over_long.take() {
            match memchr::memchr(b'\n', &self.buffer) {
                None => {
                    // Still inside the over-long line: drop what was read.
                    self.buffer_offset += self.buffer.len() as u64;
                    self.buffer.clear();
                    self.over_long = Some(over_long);
                    return framed;
                }
                Some(newline) => {
                    let end = newline + 1;
                    let file_end = self.buffer_offset + end as u64;
                    // Counted when it was found over-long.
                    framed
                        .lines
                        .push(self.over_long_record(file, over_long, file_end));
                    let _ = self.buffer.split_to(end);
                    self.buffer_offset = file_end;
                    scan_from = 0;
                }
            }
        }

        // Set once records share the buffer's allocation: what is left of it must not keep
        // that allocation alive while this file waits for its next read.
        let mut shared = false;
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
            let complete = if line_start * 8 < self.buffer.capacity() * 7 {
                // Lines that do not nearly fill the buffer get an allocation of their own, so
                // records waiting for delivery never pin a partly empty read buffer: the
                // memory budget counts record bytes, and they are then what is held.
                let copied = Bytes::copy_from_slice(&self.buffer[..line_start]);
                self.buffer.advance(line_start);
                copied
            } else {
                shared = true;
                self.buffer.split_to(line_start).freeze()
            };
            let complete_offset = self.buffer_offset;
            self.buffer_offset += line_start as u64;
            framed.oversize +=
                self.emit(&complete, complete_offset, &pieces, file, &mut framed.lines);
            if std::mem::take(&mut self.splitting)
                && matches!(pieces.first(), Some(Piece::OverLong { .. }))
            {
                framed.oversize -= 1; // Counted when its first piece was sent.
            }
        }
        if self.buffer.len() >= self.max_line_bytes {
            // No room left for a newline: this line is over-long.
            if !self.splitting {
                framed.oversize += 1;
            }
            match self.oversize {
                Oversize::Split => {
                    self.splitting = true;
                    while self.buffer.len() >= self.max_line_bytes {
                        let start = self.buffer_offset;
                        shared = true;
                        let piece = self.buffer.split_to(self.max_line_bytes).freeze();
                        self.buffer_offset += piece.len() as u64;
                        framed
                            .lines
                            .push(single(file, start, piece, self.buffer_offset));
                    }
                }
                Oversize::Truncate | Oversize::Skip => {
                    let head = (self.oversize == Oversize::Truncate)
                        .then(|| Bytes::copy_from_slice(&self.buffer[..self.head_len()]));
                    self.over_long = Some(OverLong {
                        start: self.buffer_offset,
                        head,
                    });
                    self.buffer_offset += self.buffer.len() as u64;
                    self.buffer.clear();
                }
            }
        }
        if shared || self.buffer.len() * 4 <= self.buffer.capacity() {
            // What is left (an unfinished line, or nothing) gets a buffer of its own: it would
            // otherwise keep the whole read buffer from being freed once its records are
            // delivered, for as long as the file waits for its next read or stays idle.
            self.buffer = BytesMut::from(&self.buffer[..]);
        }
        framed
    }

    /// Bytes of an over-long line kept when it is cut: the rest of the limit is the terminator.
    fn head_len(&self) -> usize {
        self.max_line_bytes - self.terminator.len()
    }

    /// The record for an over-long line that spanned reads: cut, or skipped.
    fn over_long_record(&self, file: &Arc<SourceFile>, over_long: OverLong, end: u64) -> Lines {
        match over_long.head {
            Some(head) => self.cut_record(file, over_long.start, &head, end),
            None => skipped(file, over_long.start, end),
        }
    }

    fn cut_record(&self, file: &Arc<SourceFile>, start: u64, head: &[u8], end: u64) -> Lines {
        let mut data = Vec::with_capacity(head.len() + self.terminator.len());
        data.extend_from_slice(head);
        data.extend_from_slice(&self.terminator);
        single(file, start, Bytes::from(data), end)
    }

    /// Turns the pieces of `complete` (which starts at file offset `offset`) into `Lines`
    /// blocks: runs of lines share the buffer; a cut line becomes a record of its own. Returns
    /// how many lines were over-long.
    fn emit(
        &self,
        complete: &Bytes,
        offset: u64,
        pieces: &[Piece],
        file: &Arc<SourceFile>,
        out: &mut Vec<Lines>,
    ) -> u64 {
        let mut oversize = 0;
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
                    reserved: Reservation::none(),
                });
            }
        };
        let span = |base: usize, start: usize, end: usize, file_end: usize| LineSpan {
            data_start: (start - base) as u32,
            data_end: (end - base) as u32,
            file_end: offset + file_end as u64,
        };
        for piece in pieces {
            match *piece {
                Piece::Line { start, end } => {
                    let base = *run_start.get_or_insert(start);
                    spans.push(span(base, start, end, end));
                }
                Piece::OverLong { start, end } => {
                    oversize += 1;
                    match self.oversize {
                        Oversize::Truncate => {
                            flush(&mut run_start, &mut spans, start, out);
                            let head = &complete[start..start + self.head_len()];
                            out.push(self.cut_record(
                                file,
                                offset + start as u64,
                                head,
                                offset + end as u64,
                            ));
                        }
                        Oversize::Split => {
                            let base = *run_start.get_or_insert(start);
                            let mut from = start;
                            while from < end {
                                let to = (from + self.max_line_bytes).min(end);
                                spans.push(span(base, from, to, to));
                                from = to;
                            }
                        }
                        Oversize::Skip => {
                            // Covered, so its range is acknowledged, but carries no data.
                            let base = *run_start.get_or_insert(start);
                            spans.push(span(base, start, start, end));
                        }
                    }
                }
            }
        }
        let run_end = pieces.last().map_or(0, |piece| match *piece {
            Piece::Line { end, .. } | Piece::OverLong { end, .. } => end,
        });
        flush(&mut run_start, &mut spans, run_end, out);
        oversize
    }
}

enum Piece {
    Line { start: usize, end: usize },
    OverLong { start: usize, end: usize },
}

/// A block holding one record: `data`, covering the file from `start` to `end`.
fn single(file: &Arc<SourceFile>, start: u64, data: Bytes, end: u64) -> Lines {
    let len = data.len() as u32;
    Lines {
        file: Arc::clone(file),
        file_start: start,
        data,
        spans: vec![LineSpan {
            data_start: 0,
            data_end: len,
            file_end: end,
        }],
        reserved: Reservation::none(),
    }
}

/// A block covering the file from `start` to `end` with nothing to send: acknowledged as soon
/// as the records before it are.
pub(super) fn skipped(file: &Arc<SourceFile>, start: u64, end: u64) -> Lines {
    single(file, start, Bytes::new(), end)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::record::FileId;

    /// A file to frame lines of; the assembler's tests use it too.
    pub(in crate::source) fn file() -> Arc<SourceFile> {
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
        frame_with(FrameOptions::lines(max_line), chunks)
    }

    fn records_of(lines: &[Lines], records: &mut Vec<FramedRecord>) {
        for lines in lines {
            let mut start = lines.file_start;
            for span in &lines.spans {
                let data = lines.data[span.data_start as usize..span.data_end as usize].to_vec();
                records.push((start, span.file_end, data));
                start = span.file_end;
            }
        }
    }

    fn frame_with(options: FrameOptions, chunks: &[&[u8]]) -> (Vec<FramedRecord>, Framer, u64) {
        let file = file();
        let mut framer = Framer::new(options, 0);
        let mut records = Vec::new();
        let mut truncated = 0;
        for chunk in chunks {
            let (mut buffer, filled) = framer.take_buffer(chunk.len());
            buffer[filled..filled + chunk.len()].copy_from_slice(chunk);
            let framed = framer.frame(buffer, filled + chunk.len(), &file);
            truncated += framed.oversize;
            records_of(&framed.lines, &mut records);
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
        let mut framer = Framer::new(FrameOptions::lines(100), 0);
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

    fn options(max: usize, oversize: Oversize, terminator: &'static [u8]) -> FrameOptions {
        FrameOptions {
            max_line_bytes: max,
            oversize,
            terminator: Bytes::from_static(terminator),
        }
    }

    #[test]
    fn split_sends_an_over_long_line_as_pieces_that_together_are_the_line() {
        let input: &[&[u8]] = &[b"ab\n0123456789\ncd\n", b"xxxxxxx", b"yyy\n"];
        let (records, framer, oversize) = frame_with(options(4, Oversize::Split, b"\n"), input);
        let expected: Vec<FramedRecord> = vec![
            (0, 3, b"ab\n".to_vec()),
            (3, 7, b"0123".to_vec()),
            (7, 11, b"4567".to_vec()),
            (11, 14, b"89\n".to_vec()),
            (14, 17, b"cd\n".to_vec()),
            (17, 21, b"xxxx".to_vec()),
            (21, 25, b"xxxy".to_vec()),
            (25, 28, b"yy\n".to_vec()),
        ];
        assert_eq!(records, expected);
        assert_eq!(oversize, 2);
        assert_eq!(framer.framed_offset(), 28);
        // Contiguous ranges: the checkpoint can follow every piece.
        assert!(records.windows(2).all(|pair| pair[0].1 == pair[1].0));
    }

    #[test]
    fn skip_sends_nothing_of_an_over_long_line_but_covers_its_range() {
        let input: &[&[u8]] = &[b"ab\n0123456789\ncd\nxxxx", b"xxxxx", b"x\nok\n"];
        let (records, _, oversize) = frame_with(options(5, Oversize::Skip, b"\n"), input);
        let expected: Vec<FramedRecord> = vec![
            (0, 3, b"ab\n".to_vec()),
            (3, 14, Vec::new()),
            (14, 17, b"cd\n".to_vec()),
            (17, 28, Vec::new()),
            (28, 31, b"ok\n".to_vec()),
        ];
        assert_eq!(records, expected);
        assert_eq!(oversize, 2);
    }

    #[test]
    fn truncate_ends_a_cut_line_with_the_terminator() {
        let input: &[&[u8]] = &[b"0123456789\nab\n", b"0123456", b"789\n"];
        let (records, _, _) = frame_with(options(6, Oversize::Truncate, b"~|"), input);
        let expected: Vec<FramedRecord> = vec![
            (0, 11, b"0123~|".to_vec()),
            (11, 14, b"ab\n".to_vec()),
            (14, 25, b"0123~|".to_vec()),
        ];
        assert_eq!(records, expected);
    }

    #[test]
    fn flush_partial_sends_a_last_line_without_its_newline() {
        let file = file();
        let mut framer = Framer::new(FrameOptions::lines(100), 0);
        let (mut buffer, filled) = framer.take_buffer(9);
        buffer[filled..filled + 9].copy_from_slice(b"one\ntwo t");
        let framed = framer.frame(buffer, filled + 9, &file);
        assert_eq!(framed.lines.len(), 1);
        assert!(framer.has_partial());
        let mut records = Vec::new();
        records_of(&framer.flush_partial(&file).lines, &mut records);
        assert_eq!(records, vec![(4, 9, b"two t".to_vec())]);
        assert!(!framer.has_partial());
        assert_eq!(framer.framed_offset(), 9);
        // Nothing to flush: nothing sent.
        assert!(framer.flush_partial(&file).lines.is_empty());
        // An over-long partial line is flushed cut.
        let mut framer = Framer::new(options(5, Oversize::Truncate, b"\n"), 0);
        let (mut buffer, filled) = framer.take_buffer(8);
        buffer[filled..filled + 8].copy_from_slice(b"01234567");
        framer.frame(buffer, filled + 8, &file);
        let mut records = Vec::new();
        records_of(&framer.flush_partial(&file).lines, &mut records);
        assert_eq!(records, vec![(0, 8, b"0123\n".to_vec())]);
    }
}
