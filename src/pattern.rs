//! A regular expression as the config wrote it: compiled once, compared and shown by its text.
//! Bottom layer: imports nothing of the crate.

/// A compiled regular expression with the text it was written as.
#[derive(Clone, Debug)]
pub struct Pattern {
    pub text: String,
    pub regex: regex::bytes::Regex,
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Eq for Pattern {}
