//! The List Blobs markers of recently handed-out cursors (see `listing.rs`).

use std::collections::VecDeque;
use std::sync::Mutex;

/// The List Blobs markers of the last cursors `list` handed out, so that the next page
/// resumes where the previous one stopped instead of paging from the prefix's start.
#[derive(Default)]
pub(crate) struct MarkerCache(Mutex<VecDeque<(String, String, Option<String>)>>);

impl MarkerCache {
    /// How many cursors are remembered (a few concurrent listings each).
    const CAPACITY: usize = 64;

    /// Remembers where the page after `cursor` starts (`None`: at the beginning).
    pub(crate) fn remember(&self, service_prefix: &str, cursor: &str, marker: Option<String>) {
        let mut entries = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() == Self::CAPACITY {
            entries.pop_front();
        }
        entries.push_back((service_prefix.to_owned(), cursor.to_owned(), marker));
    }

    pub(crate) fn recall(&self, service_prefix: &str, cursor: &str) -> Option<Option<String>> {
        let entries = self.0.lock().unwrap_or_else(|p| p.into_inner());
        entries
            .iter()
            .rev()
            .find(|(p, c, _)| p == service_prefix && c == cursor)
            .map(|(_, _, m)| m.clone())
    }
}
