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

/// Parses the header (the grammar the OpenAPI document states as a pattern); errors say which pair is wrong and how to write it.
pub(crate) fn parse(header: &str) -> Result<BTreeMap<String, String>, ServiceError> {
    const HOW: &str = "write name=value pairs separated by commas, percent-encoding '%', ',', '=', spaces and non-ASCII (e.g. note=a%2Cb)";
    let ows: &[char] = &[' ', '\t'];
    if header.trim_matches(ows).is_empty() {
        return Err(ServiceError::invalid(format!(
            "{HEADER} is empty: leave the header out for no tags"
        )));
    }
    let mut tags = BTreeMap::new();
    for pair in header.split(',').map(|p| p.trim_matches(ows)) {
        let Some((name, value)) = pair.split_once('=') else {
            return Err(ServiceError::invalid(format!(
                "tag \"{pair}\" in {HEADER} is not name=value: {HOW}"
            )));
        };
        if name.is_empty() {
            return Err(ServiceError::invalid(format!(
                "tag \"{pair}\" in {HEADER} has an empty name: every tag needs one"
            )));
        }
        let name = decode(name, pair, HOW)?;
        let value = decode(value, pair, HOW)?;
        if tags.insert(name.clone(), value).is_some() {
            return Err(ServiceError::invalid(format!(
                "tag \"{name}\" appears twice in {HEADER}: give each tag once"
            )));
        }
    }
    Ok(tags)
}

/// Decodes a name or a value: visible ASCII other than `%`, `,`, `=`, and `%XX`
/// escapes that decode to UTF-8.
fn decode(text: &str, pair: &str, how: &str) -> Result<String, ServiceError> {
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let escape = b == b'%'
            && bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
            && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit);
        if escape {
            i += 3;
            continue;
        }
        if !b.is_ascii_graphic() || matches!(b, b'%' | b',' | b'=') {
            let what = if b == b'%' {
                "a '%' that does not start an escape like %2C".to_owned()
            } else {
                format!("'{}'", (b as char).escape_debug())
            };
            return Err(ServiceError::invalid(format!(
                "tag \"{pair}\" in {HEADER} has {what} where an escape is needed: {how}"
            )));
        }
        i += 1;
    }
    String::from_utf8(percent_decode_str(text).collect()).map_err(|_| {
        ServiceError::invalid(format!(
            "tag \"{pair}\" in {HEADER} is not UTF-8 once percent-decoded"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The header's grammar as a regular expression (what the OpenAPI document states):
    /// `name=value` pairs separated by commas (spaces or tabs around them allowed), names
    /// non-empty, both made of visible ASCII other than `%`, `,` and `=`, or `%XX` escapes.
    const PATTERN: &str = r"^[ \t]*([!-$&-+\-.-<>-~]|%[0-9A-Fa-f]{2})+=([!-$&-+\-.-<>-~]|%[0-9A-Fa-f]{2})*([ \t]*,[ \t]*([!-$&-+\-.-<>-~]|%[0-9A-Fa-f]{2})+=([!-$&-+\-.-<>-~]|%[0-9A-Fa-f]{2})*)*[ \t]*$";

    #[test]
    fn the_documented_pattern_is_the_parsers_grammar() {
        use utoipa::OpenApi;
        let doc = serde_json::to_value(crate::openapi::ApiDoc::openapi()).unwrap();
        let mut documented = 0;
        for path in doc["paths"].as_object().unwrap().values() {
            for operation in path.as_object().unwrap().values() {
                for p in operation["parameters"].as_array().into_iter().flatten() {
                    if p["name"] == "x-mux-tags" {
                        assert_eq!(p["schema"]["pattern"], PATTERN);
                        documented += 1;
                    }
                }
            }
        }
        // Tags pick the route, so every keyed read and write takes them.
        assert_eq!(
            documented, 6,
            "PUT, GET, HEAD, DELETE, list and history take tags"
        );
    }

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
            ("a=b=c", "'='"),
            ("a=b c", "' '"),
            ("", "is empty"),
            ("a=1,,b=2", "is not name=value"),
        ] {
            let e = parse(header).unwrap_err();
            assert_eq!(e.kind(), "invalid_input");
            assert!(e.message().contains(reason), "{header}: {}", e.message());
        }
        assert_eq!(parse(" a=1 ,\tb=").unwrap().len(), 2);
    }
}
