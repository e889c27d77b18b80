//! How an error is shown in a log line: its chain of causes in one line, each once, never a
//! `Debug` dump. Bottom layer: imports nothing of the crate.

use std::error::Error as StdError;

/// The errors of `error`'s chain, outermost first. An `io::Error` wrapping another error hides
/// it from `source()` (it returns the inner error's source), so the walk looks inside.
pub fn chain<'a>(
    error: &'a (dyn StdError + 'static),
) -> impl Iterator<Item = &'a (dyn StdError + 'static)> {
    std::iter::successors(Some(error), |&current: &&'a (dyn StdError + 'static)| {
        match current.downcast_ref::<std::io::Error>() {
            Some(io) => io.get_ref().map(|inner| inner as &(dyn StdError + 'static)),
            None => current.source(),
        }
    })
}

/// The first error of type `T` in `error`'s chain.
pub fn find_in_chain<'a, T: StdError + 'static>(
    error: &'a (dyn StdError + 'static),
) -> Option<&'a T> {
    chain(error).find_map(|e| e.downcast_ref::<T>())
}

/// `error` and its causes in one line, `outer: inner: innermost`, without repeating a message
/// that a wrapper already printed.
pub fn chain_text(error: &(dyn StdError + 'static)) -> String {
    let mut line = String::new();
    for cause in chain(error) {
        let text = cause.to_string();
        if text.is_empty() || line.ends_with(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line.replace('\n', " ")
}

/// An error and its sources in one readable line, each cause once: `dispatch failure: io error:
/// Connection refused (os error 111)`; never a `Debug` dump.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let text = chain_text(error);
    if text.is_empty() {
        "no detail given".to_owned()
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn the_chain_looks_inside_io_errors() {
        let inner = std::io::Error::other(Outer(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "refused",
        )));
        let error = Outer(inner);
        assert_eq!(chain_text(&error), "outer: refused");
        assert!(find_in_chain::<Outer>(&error).is_some());
        // Outer, the io::Error, the Outer inside it, the refused io::Error, its message.
        assert_eq!(chain(&error).count(), 5);
    }
}
