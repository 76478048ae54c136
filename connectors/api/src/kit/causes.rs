//! An error's message with its whole chain of causes, for log lines and
//! sink errors: many client errors (reqwest's among them) print only their
//! outermost layer, which hides the refused connection or failed handshake
//! an operator needs to see.
//!
//! Invariant: the text starts with the error's own `Display`, then each
//! cause in order, each after `": "`; nothing is dropped or reordered.

use std::error::Error;

/// `e`'s message followed by every cause (`outer: cause: root cause`).
pub fn with_causes(e: &dyn Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn every_cause_in_order() {
        let root = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert_eq!(with_causes(&Outer(root)), "outer: refused");
        let plain = std::io::Error::other("alone");
        assert_eq!(with_causes(&plain), "alone");
    }
}
