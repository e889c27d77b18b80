//! Turns framed lines into records where a record is not simply one line: header lines skipped
//! at the start of a file, a footer line that ends the file, and multi-line records that begin
//! at a line matching a pattern. Works on the framer's output, so every byte of the file stays
//! covered by exactly one record or skipped span, in order.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use regex::bytes::Regex;

use crate::limits::Reservation;

use super::framer::skipped;
use crate::config::Oversize;
use crate::record::{LineSpan, Lines, SourceFile};

#[derive(Clone, Debug)]
pub(super) struct AssembleOptions {
    pub(super) skip_header_lines: usize,
    pub(super) footer: Option<Regex>,
    pub(super) multiline_start: Option<Regex>,
    pub(super) max_record_bytes: usize,
    pub(super) oversize: Oversize,
    pub(super) terminator: Bytes,
}

impl AssembleOptions {
    /// Whether lines need more than framing.
    pub(super) fn is_needed(&self) -> bool {
        self.skip_header_lines > 0 || self.footer.is_some() || self.multiline_start.is_some()
    }
}

/// What one call produced.
#[derive(Debug, Default)]
pub(super) struct Assembled {
    pub(super) lines: Vec<Lines>,
    /// Multi-line records longer than the limit (cut, split or skipped).
    pub(super) oversize: u64,
    /// The footer line was met in this call.
    pub(super) footer_found: bool,
}

/// A multi-line record still open: more lines may join it.
#[derive(Debug)]
struct Pending {
    file: Arc<SourceFile>,
    start: u64,
    end: u64,
    parts: Vec<Bytes>,
    len: usize,
    /// Over the limit: what is left of it is not sent.
    dropping: bool,
}

impl Pending {
    fn new(file: &Arc<SourceFile>, start: u64, line: Bytes, end: u64) -> Self {
        Self {
            file: Arc::clone(file),
            start,
            end,
            len: line.len(),
            dropping: false,
            parts: vec![line],
        }
    }
}

#[derive(Debug)]
pub(super) struct Assembler {
    options: AssembleOptions,
    header_left: usize,
    footer_found: bool,
    pending: Option<Pending>,
}

impl Assembler {
    /// An assembler for a reading that starts at `offset`.
    pub(super) fn new(options: AssembleOptions, offset: u64) -> Self {
        let mut assembler = Self {
            header_left: 0,
            footer_found: false,
            pending: None,
            options,
        };
        assembler.restart_at(offset);
        assembler
    }

    /// Forgets any open record; header lines are skipped again when reading starts at 0.
    pub(super) fn restart_at(&mut self, offset: u64) {
        self.header_left = if offset == 0 {
            self.options.skip_header_lines
        } else {
            0
        };
        self.footer_found = false;
        self.pending = None;
    }

    /// Where the open multi-line record starts: resuming there loses none of it.
    pub(super) fn pending_start(&self) -> Option<u64> {
        self.pending.as_ref().map(|pending| pending.start)
    }

    /// Sends the open multi-line record as it is (its file went idle or is being released).
    pub(super) fn flush(&mut self) -> Assembled {
        let mut out = Assembled::default();
        if let Some(pending) = self.pending.take() {
            out.lines.push(self.finish(pending));
        }
        out
    }

    /// Processes blocks from the framer, in file order.
    pub(super) fn process(&mut self, blocks: Vec<Lines>) -> Assembled {
        let mut out = Assembled::default();
        for block in blocks {
            self.process_block(block, &mut out);
        }
        out
    }

    fn process_block(&mut self, block: Lines, out: &mut Assembled) {
        // Spans passed through unchanged are gathered into a block sharing the same buffer.
        let mut kept: Vec<LineSpan> = Vec::new();
        let mut kept_start = block.file_start;
        let mut start = block.file_start;
        for span in &block.spans {
            let data = &block.data[span.data_start as usize..span.data_end as usize];
            let ends_line = data.is_empty() || data.last() == Some(&b'\n');
            let disposition = if self.footer_found {
                Disposition::Skip
            } else if self.header_left > 0 {
                if ends_line {
                    self.header_left -= 1;
                }
                Disposition::Skip
            } else if self
                .options
                .footer
                .as_ref()
                .is_some_and(|footer| footer.is_match(line_text(data)))
            {
                self.footer_found = true;
                out.footer_found = true;
                Disposition::Footer
            } else if self.options.multiline_start.is_some() {
                Disposition::Multiline
            } else {
                Disposition::Keep
            };
            match disposition {
                Disposition::Keep => {
                    if kept.is_empty() {
                        kept_start = start;
                    }
                    kept.push(*span);
                }
                Disposition::Skip | Disposition::Footer | Disposition::Multiline => {
                    flush_kept(&block, &mut kept, kept_start, &mut out.lines);
                    if disposition == Disposition::Footer {
                        if let Some(pending) = self.pending.take() {
                            out.lines.push(self.finish(pending));
                        }
                    }
                    if disposition == Disposition::Multiline {
                        let bytes = block
                            .data
                            .slice(span.data_start as usize..span.data_end as usize);
                        self.multiline(&block.file, start, bytes, span.file_end, out);
                    } else if let Some(pending) = self.pending.as_mut() {
                        // Skipped lines inside an open record are covered by it.
                        pending.end = span.file_end;
                    } else {
                        out.lines.push(skipped(&block.file, start, span.file_end));
                    }
                }
            }
            start = span.file_end;
        }
        flush_kept(&block, &mut kept, kept_start, &mut out.lines);
    }

    fn multiline(
        &mut self,
        file: &Arc<SourceFile>,
        start: u64,
        line: Bytes,
        end: u64,
        out: &mut Assembled,
    ) {
        let begins_record = self
            .options
            .multiline_start
            .as_ref()
            .is_some_and(|pattern| !line.is_empty() && pattern.is_match(line_text(&line)));
        if begins_record {
            if let Some(pending) = self.pending.take() {
                out.lines.push(self.finish(pending));
            }
        }
        let max = self.options.max_record_bytes;
        let Some(pending) = self.pending.as_mut() else {
            self.pending = Some(Pending::new(file, start, line, end));
            return;
        };
        if pending.dropping {
            pending.end = end;
            return;
        }
        if pending.len + line.len() <= max {
            pending.len += line.len();
            pending.parts.push(line);
            pending.end = end;
            return;
        }
        out.oversize += 1;
        match self.options.oversize {
            Oversize::Split => {
                // The record so far goes as one piece; this line starts the next piece.
                if let Some(full) = self.pending.take() {
                    out.lines.push(self.finish(full));
                }
                self.pending = Some(Pending::new(file, start, line, end));
            }
            Oversize::Truncate => {
                let room = max.saturating_sub(self.options.terminator.len());
                let mut cut = BytesMut::with_capacity(max);
                for part in &pending.parts {
                    cut.extend_from_slice(part);
                }
                cut.extend_from_slice(&line);
                cut.truncate(room);
                cut.extend_from_slice(&self.options.terminator);
                pending.len = cut.len();
                pending.parts = vec![cut.freeze()];
                pending.end = end;
                pending.dropping = true;
            }
            Oversize::Skip => {
                pending.parts.clear();
                pending.len = 0;
                pending.end = end;
                pending.dropping = true;
            }
        }
    }

    fn finish(&self, pending: Pending) -> Lines {
        let data = match pending.parts.len() {
            0 => Bytes::new(),
            1 => pending.parts.into_iter().next().unwrap_or_default(),
            _ => {
                let mut joined = BytesMut::with_capacity(pending.len);
                for part in &pending.parts {
                    joined.extend_from_slice(part);
                }
                joined.freeze()
            }
        };
        let len = data.len() as u32;
        Lines {
            file: pending.file,
            file_start: pending.start,
            data,
            spans: vec![LineSpan {
                data_start: 0,
                data_end: len,
                file_end: pending.end,
            }],
            reserved: Reservation::none(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Disposition {
    Keep,
    Skip,
    Footer,
    Multiline,
}

/// A line without its line ending, as patterns see it.
fn line_text(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Pushes the spans kept from `block` as one block of their own.
fn flush_kept(block: &Lines, kept: &mut Vec<LineSpan>, kept_start: u64, out: &mut Vec<Lines>) {
    if kept.is_empty() {
        return;
    }
    out.push(Lines {
        file: Arc::clone(&block.file),
        file_start: kept_start,
        data: block.data.clone(),
        spans: std::mem::take(kept),
        reserved: Reservation::none(),
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::framer::tests::file;
    use crate::source::framer::{FrameOptions, Framer};

    fn options() -> AssembleOptions {
        AssembleOptions {
            skip_header_lines: 0,
            footer: None,
            multiline_start: None,
            max_record_bytes: 1000,
            oversize: Oversize::Truncate,
            terminator: Bytes::from_static(b"\n"),
        }
    }

    type Record = (u64, u64, String);

    /// Frames `chunks` and assembles them; then flushes. Returns the records and skipped ranges.
    fn run(options: AssembleOptions, chunks: &[&str]) -> Vec<Record> {
        let file = file();
        let mut framer = Framer::new(FrameOptions::lines(1000), 0);
        let mut assembler = Assembler::new(options, 0);
        let mut records = Vec::new();
        let mut collect = |lines: Vec<Lines>| {
            for block in lines {
                let mut start = block.file_start;
                for span in &block.spans {
                    let data = &block.data[span.data_start as usize..span.data_end as usize];
                    records.push((
                        start,
                        span.file_end,
                        String::from_utf8_lossy(data).into_owned(),
                    ));
                    start = span.file_end;
                }
            }
        };
        for chunk in chunks {
            let (mut buffer, filled) = framer.take_buffer(chunk.len());
            buffer[filled..].copy_from_slice(chunk.as_bytes());
            let framed = framer.frame(buffer, filled + chunk.len(), &file);
            collect(assembler.process(framed.lines).lines);
        }
        collect(assembler.flush().lines);
        records
    }

    fn assert_contiguous(records: &[Record]) {
        assert!(
            records.windows(2).all(|pair| pair[0].1 == pair[1].0),
            "{records:?}"
        );
    }

    #[test]
    fn a_record_begins_at_each_matching_line() {
        let mut options = options();
        options.multiline_start = Regex::new(r"^\d{4}-").ok();
        let records = run(
            options,
            &[
                "orphan\n2024-01 start\n  at one\n",
                "  at two\n2024-02 next\n",
                "2024-03 last\n  tail\n",
            ],
        );
        let texts: Vec<&str> = records.iter().map(|r| r.2.as_str()).collect();
        assert_eq!(
            texts,
            vec![
                "orphan\n",
                "2024-01 start\n  at one\n  at two\n",
                "2024-02 next\n",
                "2024-03 last\n  tail\n"
            ]
        );
        assert_contiguous(&records);
        assert_eq!(records[0].0, 0);
    }

    #[test]
    fn the_open_record_holds_back_the_resume_offset() {
        let mut options = options();
        options.multiline_start = Regex::new("^START").ok();
        let file = file();
        let mut framer = Framer::new(FrameOptions::lines(1000), 0);
        let mut assembler = Assembler::new(options, 0);
        let (mut buffer, filled) = framer.take_buffer(21);
        buffer[filled..].copy_from_slice(b"START a\nmore\nSTART b\n");
        let framed = framer.frame(buffer, 21, &file);
        let out = assembler.process(framed.lines);
        assert_eq!(out.lines.len(), 1);
        assert_eq!(assembler.pending_start(), Some(13));
    }

    #[test]
    fn header_lines_are_skipped_but_covered() {
        let mut options = options();
        options.skip_header_lines = 2;
        let records = run(options, &["#h1\n#h2\nrow1\nrow2\n"]);
        assert_eq!(
            records,
            vec![
                (0, 4, String::new()),
                (4, 8, String::new()),
                (8, 13, "row1\n".into()),
                (13, 18, "row2\n".into())
            ]
        );
    }

    #[test]
    fn nothing_from_the_footer_on_is_sent() {
        let mut options = options();
        options.footer = Regex::new("^#END$").ok();
        let records = run(options, &["a\nb\r\n#END\r\nc\n"]);
        let sent: Vec<&str> = records
            .iter()
            .filter(|r| !r.2.is_empty())
            .map(|r| r.2.as_str())
            .collect();
        assert_eq!(sent, vec!["a\n", "b\r\n"]);
        assert_contiguous(&records);
        assert_eq!(records.last().map(|r| r.1), Some(13));
    }

    #[test]
    fn an_over_long_multiline_record_is_cut_split_or_skipped() {
        let chunks = ["S 1\n", "aaaa\n", "bbbb\n", "S 2\n"];
        let with = |oversize| {
            let mut options = options();
            options.multiline_start = Regex::new("^S").ok();
            options.max_record_bytes = 10;
            options.oversize = oversize;
            options.terminator = Bytes::from_static(b"|");
            run(options, &chunks)
        };
        let texts = |records: Vec<Record>| {
            assert_contiguous(&records);
            records.into_iter().map(|r| r.2).collect::<Vec<_>>()
        };
        assert_eq!(
            texts(with(Oversize::Truncate)),
            vec!["S 1\naaaa\n|", "S 2\n"]
        );
        assert_eq!(
            texts(with(Oversize::Split)),
            vec!["S 1\naaaa\n", "bbbb\n", "S 2\n"]
        );
        assert_eq!(texts(with(Oversize::Skip)), vec!["", "S 2\n"]);
    }
}
