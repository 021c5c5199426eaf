//! The `X-Mux-Tags` header: `name=value,name=value`, each name and value
//! percent-encoded where it holds what a header value cannot carry safely (bytes
//! outside printable ASCII, and `%`, `,`, `=` and spaces, which the format itself
//! uses or trims).

use std::collections::BTreeMap;

use percent_encoding::{AsciiSet, CONTROLS, percent_decode_str, utf8_percent_encode};

use super::ServiceError;

/// What is percent-encoded in a tag name or value (non-ASCII always is).
const RESERVED: &AsciiSet = &CONTROLS.add(b' ').add(b'%').add(b',').add(b'=');

/// The header's name, for messages.
const HEADER: &str = "X-Mux-Tags";

/// Renders tags as the header carries them (`None` when there are none).
pub(crate) fn render(tags: &BTreeMap<String, String>) -> Option<String> {
    if tags.is_empty() {
        return None;
    }
    let pairs: Vec<String> = tags
        .iter()
        .map(|(name, value)| {
            format!(
                "{}={}",
                utf8_percent_encode(name, RESERVED),
                utf8_percent_encode(value, RESERVED)
            )
        })
        .collect();
    Some(pairs.join(","))
}

/// Parses the header; errors say which pair is wrong and how to write it.
pub(crate) fn parse(header: &str) -> Result<BTreeMap<String, String>, ServiceError> {
    let mut tags = BTreeMap::new();
    for pair in header.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((name, value)) = pair.split_once('=') else {
            return Err(ServiceError::invalid(format!(
                "tag \"{pair}\" in {HEADER} is not name=value: write name=value pairs separated by commas, percent-encoding '%', ',', '=', spaces and non-ASCII"
            )));
        };
        let name = decode(name.trim(), pair)?;
        let value = decode(value.trim(), pair)?;
        if name.is_empty() {
            return Err(ServiceError::invalid(format!(
                "tag \"{pair}\" in {HEADER} has an empty name: every tag needs one"
            )));
        }
        if tags.insert(name.clone(), value).is_some() {
            return Err(ServiceError::invalid(format!(
                "tag \"{name}\" appears twice in {HEADER}: give each tag once"
            )));
        }
    }
    Ok(tags)
}

fn decode(text: &str, pair: &str) -> Result<String, ServiceError> {
    let bytes: Vec<u8> = percent_decode_str(text).collect();
    if text.contains('%') && !well_formed_escapes(text) {
        return Err(ServiceError::invalid(format!(
            "tag \"{pair}\" in {HEADER} has a '%' that does not start an escape like %2C: write a literal '%' as %25"
        )));
    }
    String::from_utf8(bytes).map_err(|_| {
        ServiceError::invalid(format!(
            "tag \"{pair}\" in {HEADER} is not UTF-8 once percent-decoded"
        ))
    })
}

/// Whether every `%` is followed by two hex digits.
fn well_formed_escapes(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.iter().enumerate().all(|(i, &b)| {
        b != b'%'
            || (bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_round_trip_through_the_header() {
        let tags = BTreeMap::from([
            ("class".to_owned(), "pii".to_owned()),
            ("note".to_owned(), "a,b=c 100% é".to_owned()),
        ]);
        let header = render(&tags).unwrap();
        assert_eq!(header, "class=pii,note=a%2Cb%3Dc%20100%25%20%C3%A9");
        assert!(http_header_safe(&header));
        assert_eq!(parse(&header).unwrap(), tags);
        assert_eq!(render(&BTreeMap::new()), None);
    }

    fn http_header_safe(text: &str) -> bool {
        text.bytes().all(|b| b.is_ascii_graphic())
    }

    #[test]
    fn malformed_headers_are_refused_with_the_reason() {
        for (header, reason) in [
            ("class", "is not name=value"),
            ("=pii", "empty name"),
            ("a=1,a=2", "appears twice"),
            ("a=%zz", "does not start an escape"),
            ("a=%FF", "not UTF-8"),
        ] {
            let e = parse(header).unwrap_err();
            assert_eq!(e.kind(), "invalid_input");
            assert!(e.message().contains(reason), "{header}: {}", e.message());
        }
        assert_eq!(parse(" a = 1 , ,b=").unwrap().len(), 2);
    }
}
