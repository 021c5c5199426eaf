//! Keeping SAS signatures out of every text mux shows: `Debug` of configs, error
//! messages, and the SDK errors kept as sources.

use std::fmt;

/// `text` (a query string, a URL, or any message that may quote one) with the value of
/// every `sig=` parameter replaced by `***`.
///
/// The name is matched case-insensitively wherever it occurs; the value runs up to the
/// next `&`, `)`, whitespace, quote, `<`, `>`, `#`, `\\` or the end of the text (none of
/// which a signature, base64 or percent-encoded, contains).
pub(crate) fn redact_sas(text: &str) -> String {
    const NAME: &[u8] = b"sig=";
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut i = 0;
    while i + NAME.len() <= bytes.len() {
        if !bytes[i..i + NAME.len()].eq_ignore_ascii_case(NAME) {
            i += 1;
            continue;
        }
        let value = i + NAME.len();
        let end = bytes[value..]
            .iter()
            .position(|&b| {
                b.is_ascii_whitespace()
                    || matches!(b, b'&' | b')' | b'"' | b'\'' | b'<' | b'>' | b'#' | b'\\')
            })
            .map_or(bytes.len(), |n| value + n);
        // `sig=` is ASCII, so `value` and `end` are character boundaries.
        out.push_str(&text[copied..value]);
        if end > value {
            out.push_str("***");
        }
        copied = end;
        i = end.max(value);
    }
    out.push_str(&text[copied..]);
    out
}

/// The text of an error and of its causes with every SAS signature blanked
/// ([`redact_sas`]), standing in for an SDK error as the source of a mux
/// error.
///
/// The SDK's errors cannot be kept as they are: a connection or I/O error wraps a
/// `reqwest::Error` whose `Display` names the request URL, query included, and with an
/// account key or a SAS that query holds a valid signature. mux's `Error` prints its
/// whole source chain, so the chain is flattened here into sanitised text, and this error
/// has no source of its own.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Redacted(String);

impl Redacted {
    /// The sanitised text of `e` and its causes, `": "`-separated; a cause whose text
    /// repeats the previous one (the SDK's error displays as its inner error) is shown
    /// once.
    pub(crate) fn of(e: &(dyn std::error::Error + 'static)) -> Redacted {
        let mut parts: Vec<String> = Vec::new();
        let mut current = Some(e);
        while let Some(err) = current {
            let text = err.to_string();
            if !text.is_empty() && parts.last() != Some(&text) {
                parts.push(text);
            }
            current = err.source();
        }
        Redacted(redact_sas(&parts.join(": ")))
    }
}

impl fmt::Display for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl std::error::Error for Redacted {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_signatures_in_any_text() {
        for (text, expected) in [
            ("sv=1&sig=abc%3D&se=2", "sv=1&sig=***&se=2"),
            ("https://a/c?sv=1&SIG=abc+/=", "https://a/c?sv=1&SIG=***"),
            (
                "error sending request for url (http://h/c?restype=container&sig=a%2Bb%3D): refused",
                "error sending request for url (http://h/c?restype=container&sig=***): refused",
            ),
            (
                "query: Some(\"sv=1&sig=abc\")",
                "query: Some(\"sv=1&sig=***\")",
            ),
            ("sig=abc sig=def\tsig=", "sig=*** sig=***\tsig="),
            ("no signature here", "no signature here"),
            ("é sig=é", "é sig=***"),
        ] {
            assert_eq!(redact_sas(text), expected, "{text}");
        }
    }
}
