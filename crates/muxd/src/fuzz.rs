//! Hooks for the fuzz targets (`crates/mux-fuzz`, `fuzz/`), behind the `fuzzing`
//! feature: not part of the API.

use crate::service::tags;

/// Parses an `X-Mux-Tags` header as a request does. Panics when tags it accepts do
/// not render back to a header that parses to the same tags.
pub fn tags_header(header: &str) {
    if let Ok(parsed) = tags::parse(header)
        && let Some(rendered) = tags::render(&parsed)
    {
        let again = tags::parse(&rendered).unwrap_or_else(|e| {
            panic!("rendered tags {rendered:?} (from {header:?}) do not parse: {e:?}")
        });
        assert_eq!(again, parsed, "tags change through render: {rendered:?}");
    }
}
