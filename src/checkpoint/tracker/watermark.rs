//! The ordered-acknowledgement watermark of one reading: the offset before which every byte
//! was delivered, and the ranges delivered beyond it, taken in once the gap before them is.

use std::collections::BTreeMap;

#[derive(Debug)]
pub(super) struct Watermark {
    /// Every byte before this offset was delivered.
    offset: u64,
    /// Delivered ranges beyond the watermark, by start.
    ahead: BTreeMap<u64, u64>,
}

impl Watermark {
    /// A watermark at `offset`, with nothing delivered beyond it.
    pub(super) fn at(offset: u64) -> Self {
        Watermark {
            offset,
            ahead: BTreeMap::new(),
        }
    }

    /// Every byte before this offset was delivered.
    pub(super) fn offset(&self) -> u64 {
        self.offset
    }

    /// Notes `start..end` as delivered; returns how many bytes the watermark advanced: none
    /// for a range behind it, or ahead of a range not yet delivered.
    pub(super) fn deliver(&mut self, start: u64, end: u64) -> u64 {
        if end <= self.offset {
            return 0;
        }
        if start > self.offset {
            self.ahead.insert(start, end);
            return 0;
        }
        let before = self.offset;
        self.offset = end;
        while let Some(entry) = self.ahead.first_entry() {
            if *entry.key() > self.offset {
                break;
            }
            let end = entry.remove();
            self.offset = self.offset.max(end);
        }
        self.offset - before
    }
}
