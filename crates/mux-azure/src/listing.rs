//! Listing: List Blobs with `include=metadata`, one request per page and no per-entry
//! reads. The cursor is a key; the next page resumes at the marker remembered when the
//! cursor was handed out, else at the service's `startFrom`, else by paging from the
//! start of the prefix.

use std::sync::atomic::Ordering;

use azure_storage_blob::models::{
    BlobContainerClientListBlobsOptions, ListBlobsIncludeItem, ListBlobsResponse,
};
use futures_util::StreamExt;
use mux_core::{Error, ErrorKind, Key, ListEntry, ListPage, ListRequest, Result};

use crate::blob_name::{dotted_segment, escape, escape_prefix, unescape};
use crate::core::AzureCore;
use crate::error::{map_err, status};
use crate::layout::{decode_meta, has_mux_metadata};

/// Azure's largest List Blobs page.
const MAX_LIST_PAGE: usize = 5000;

impl AzureCore {
    pub(crate) async fn list_page(&self, request: &ListRequest) -> Result<ListPage> {
        let limit = request.effective_limit()?;
        let scan = request.prefix.scan_start();
        if let Some(segment) = dotted_segment(scan) {
            return Err(Error::invalid_input(format!(
                "listing prefix {scan} has a path segment ending in `.` ({segment:?}) before \
                 its last one; Azure drops dots at the end of path segments (\"no path \
                 segments should end with a dot\"), so no key under it can be stored"
            )));
        }
        let service_prefix = format!("{}{}", self.root, escape_prefix(scan));
        // The cursor is a key; Azure's marker is opaque. To continue after the cursor,
        // in order of preference: the marker remembered when the cursor was handed out,
        // the service's `startFrom` (inclusive), or paging from the start of the prefix
        // and dropping the keys up to the cursor here.
        let cursor = request.cursor.as_ref().filter(|c| c.as_str() > scan);
        let start_from = cursor.map(|c| format!("{}{}", self.root, escape(c.as_str())));
        let remembered = cursor.and_then(|c| self.markers.recall(&service_prefix, c.as_str()));
        let mut resumed = remembered.is_some();
        // Whether this page starts at (or just before) the cursor.
        let mut positioned = resumed;
        let mut marker = remembered.flatten();
        let mut entries = Vec::new();
        let mut more = false;
        // The last key the service listed in this call (skipped ones included).
        let mut previous: Option<String> = None;
        'pages: loop {
            let use_start_from = start_from.is_some()
                && !positioned
                && marker.is_none()
                && self.start_from.load(Ordering::Relaxed);
            let scanning = start_from.is_some() && !positioned && !use_start_from;
            let page_size = if scanning {
                MAX_LIST_PAGE
            } else {
                (limit + 1).min(MAX_LIST_PAGE)
            };
            let options = BlobContainerClientListBlobsOptions {
                include: Some(vec![ListBlobsIncludeItem::Metadata]),
                marker: marker.clone(),
                maxresults: Some(page_size as i32),
                prefix: (!service_prefix.is_empty()).then(|| service_prefix.clone()),
                start_from: if use_start_from {
                    start_from.clone()
                } else {
                    None
                },
                ..Default::default()
            };
            let page = match self.fetch_list_page(options).await {
                Ok(page) => page,
                Err(e) if use_start_from && status(&e) == Some(400) => {
                    tracing::info!(
                        backend = %self.name,
                        "the service rejected List Blobs startFrom; skipping to cursors client-side"
                    );
                    self.start_from.store(false, Ordering::Relaxed);
                    previous = None;
                    continue;
                }
                Err(e) if resumed && entries.is_empty() && status(&e) == Some(400) => {
                    // A remembered marker the service no longer takes: start over.
                    resumed = false;
                    positioned = false;
                    marker = None;
                    previous = None;
                    continue;
                }
                Err(e) => return Err(map_err(e)),
            };
            if use_start_from {
                let first = page.blob_items.first().and_then(|b| b.name.as_deref());
                if first.is_some_and(|first| Some(first) < start_from.as_deref()) {
                    // The service ignored `startFrom` (the emulator does): stop sending it.
                    tracing::debug!(backend = %self.name, "the service ignores List Blobs startFrom");
                    self.start_from.store(false, Ordering::Relaxed);
                } else {
                    positioned = true;
                }
            }
            for item in page.blob_items {
                let Some(name) = item.name.as_deref() else {
                    continue;
                };
                let Some(key) = name.strip_prefix(self.root.as_str()).and_then(unescape) else {
                    tracing::warn!(blob = name, "skipping a blob whose name is not a mux key");
                    continue;
                };
                check_order(previous.as_deref(), &key)?;
                previous = Some(key.clone());
                if request.prefix.is_past(&key) {
                    break 'pages;
                }
                if !request.wants(&key) {
                    continue;
                }
                let Ok(key) = Key::new(key) else {
                    tracing::warn!(blob = name, "skipping a blob whose name is not a mux key");
                    continue;
                };
                if entries.len() == limit {
                    more = true;
                    break 'pages;
                }
                let metadata = item.metadata.and_then(|m| m.values).unwrap_or_default();
                if !has_mux_metadata(&metadata) {
                    tracing::warn!(blob = name, "skipping a blob without mux metadata");
                    continue;
                }
                let meta = decode_meta(key.as_str(), metadata)?;
                let size = item
                    .properties
                    .and_then(|p| p.content_length)
                    .unwrap_or_default();
                entries.push(ListEntry { key, meta, size });
            }
            match page.next_marker.filter(|m| !m.is_empty()) {
                Some(next) => marker = Some(next),
                None => break,
            }
        }
        let next_cursor = if more {
            entries.last().map(|e: &ListEntry| e.key.clone())
        } else {
            None
        };
        // The first key after the cursor is on the page `marker` fetched: the next call
        // can start there instead of at the beginning of the prefix.
        if let Some(next) = &next_cursor {
            self.markers
                .remember(&service_prefix, next.as_str(), marker);
        }
        Ok(ListPage {
            entries,
            next_cursor,
        })
    }

    async fn fetch_list_page(
        &self,
        options: BlobContainerClientListBlobsOptions<'_>,
    ) -> azure_core::Result<ListBlobsResponse> {
        let mut pages = self.container.list_blobs(Some(options))?.into_pages();
        match pages.next().await {
            Some(page) => page?.into_model(),
            None => Ok(ListBlobsResponse::default()),
        }
    }
}

/// Fails when the service listed `key` after `previous` although it sorts before it in
/// byte order (names are compared as unescaped keys; escaping keeps their order).
///
/// mux's cursors and early stops rely on the service listing in UTF-8 byte order. Two
/// known cases break it: hierarchical-namespace (ADLS Gen2) accounts list `A/x` before
/// `A-B`, and accounts that sort by UTF-16 code units put characters U+E000–U+FFFF
/// after characters beyond U+FFFF. Keys would be skipped silently; failing names them.
fn check_order(previous: Option<&str>, key: &str) -> Result<()> {
    match previous {
        Some(previous) if key < previous => Err(Error::new(
            ErrorKind::Unsupported,
            format!(
                "Azure listed {key:?} after {previous:?}, which sorts after it in byte order; \
                 mux needs listings in byte order of keys. Likely causes: a storage account \
                 with hierarchical namespace (ADLS Gen2), which mux does not support, or \
                 keys mixing characters U+E000..U+FFFF with characters beyond U+FFFF on a \
                 service that sorts by UTF-16 code units"
            ),
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listing_order_is_checked() {
        assert!(check_order(None, "a").is_ok());
        assert!(check_order(Some("a"), "b").is_ok());
        assert!(check_order(Some("a"), "a/b").is_ok());
        // Hierarchical namespace: `A/x` before `A-B`.
        let err = check_order(Some("A/x"), "A-B").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unsupported);
        assert!(!err.is_temporary());
        assert!(err.message().contains("\"A-B\" after \"A/x\""), "{err}");
        assert!(err.message().contains("hierarchical namespace"), "{err}");
        // UTF-16 order: a character beyond U+FFFF (surrogates, 0xD8xx) before U+E000.
        let err = check_order(Some("k/\u{1F980}"), "k/\u{E000}").unwrap_err();
        assert!(err.message().contains("U+E000"), "{err}");
        assert!(check_order(Some("k/\u{E000}"), "k/\u{1F980}").is_ok());
    }
}
