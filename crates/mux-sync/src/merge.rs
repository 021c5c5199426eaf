//! One listing over several stores, key by key.

use std::collections::VecDeque;
use std::sync::Arc;

use futures_util::future::try_join_all;
use mux_core::digest::KeyRange;
use mux_core::{Backend, Key, ListEntry, Result};

use crate::throttle::Throttle;

/// One key as each store lists it (`None`: the store does not hold it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    /// The key.
    pub key: Key,
    /// One entry per store, in the order the stores were given.
    pub entries: Vec<Option<ListEntry>>,
}

/// Lists a range on several stores at once and yields their entries merged by key, a
/// page at a time, with memory bounded by one listing page per store.
#[derive(Debug)]
pub struct MergedListing {
    backends: Vec<Arc<dyn Backend>>,
    range: KeyRange,
    page: usize,
    throttle: Throttle,
    buffers: Vec<VecDeque<ListEntry>>,
    /// Where each store's next page starts; `None` once it is exhausted.
    cursors: Vec<Option<Option<Key>>>,
}

impl MergedListing {
    /// A listing of `range` on `backends`, `page` entries per request.
    pub fn new(
        backends: Vec<Arc<dyn Backend>>,
        range: KeyRange,
        page: usize,
        throttle: Throttle,
    ) -> MergedListing {
        let n = backends.len();
        let start = range.after.clone();
        MergedListing {
            backends,
            range,
            page: page.max(1),
            throttle,
            buffers: vec![VecDeque::new(); n],
            cursors: vec![Some(start); n],
        }
    }

    /// The next rows in key order (every key up to the last one returned is complete
    /// on every store); `None` when the range is done.
    pub async fn next_rows(&mut self) -> Result<Option<Vec<Row>>> {
        // A page can come back empty yet with a cursor: fetch until every store that
        // may hold more has something buffered.
        loop {
            self.refill().await?;
            let starved = (0..self.backends.len())
                .any(|i| self.buffers[i].is_empty() && self.cursors[i].is_some());
            if !starved {
                break;
            }
        }
        // Keys up to the smallest last-buffered key of the stores that may hold more
        // are complete everywhere.
        let bound: Option<Key> = self
            .buffers
            .iter()
            .zip(&self.cursors)
            .filter(|(_, c)| c.is_some())
            .filter_map(|(b, _)| b.back().map(|e| e.key.clone()))
            .min();
        let open = self.cursors.iter().any(Option::is_some);
        if !open && self.buffers.iter().all(VecDeque::is_empty) {
            return Ok(None);
        }
        let mut rows: Vec<Row> = Vec::new();
        loop {
            let next = self
                .buffers
                .iter()
                .filter_map(|b| b.front().map(|e| e.key.clone()))
                .min();
            let Some(key) = next else { break };
            if open && bound.as_ref().is_some_and(|b| key > *b) {
                break;
            }
            let entries = self
                .buffers
                .iter_mut()
                .map(|b| match b.front() {
                    Some(e) if e.key == key => b.pop_front(),
                    _ => None,
                })
                .collect();
            // mux's own records (the store markers) are no data to compare or copy.
            if !mux_core::is_reserved(key.as_str()) {
                rows.push(Row { key, entries });
            }
        }
        Ok(Some(rows))
    }

    /// Fetches a page for every store whose buffer is empty and that may hold more.
    async fn refill(&mut self) -> Result<()> {
        let wanted: Vec<usize> = (0..self.backends.len())
            .filter(|&i| self.buffers[i].is_empty() && self.cursors[i].is_some())
            .collect();
        if wanted.is_empty() {
            return Ok(());
        }
        self.throttle.acquire(wanted.len()).await;
        let pages = try_join_all(wanted.iter().map(|&i| {
            let cursor = self.cursors[i].clone().flatten();
            let request = self.range.list_request(self.page).with_cursor(cursor);
            let backend = self.backends[i].clone();
            async move { backend.list(&request).await }
        }))
        .await?;
        for (i, page) in wanted.into_iter().zip(pages) {
            let mut past = false;
            for entry in page.entries {
                if self.range.is_past(entry.key.as_str()) {
                    past = true;
                    break;
                }
                if self.range.contains(entry.key.as_str()) {
                    self.buffers[i].push_back(entry);
                }
            }
            self.cursors[i] = match page.next_cursor {
                Some(c) if !past => Some(Some(c)),
                _ => None,
            };
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mux_core::{MemoryBackend, Prefix, Record, Version};

    async fn mem(name: &str, keys: &[(&str, u64)]) -> Arc<dyn Backend> {
        let b = MemoryBackend::new(name);
        for (k, v) in keys {
            let r = Record::new(Key::new(*k).unwrap(), "x", Version::new(*v, 0, 1));
            b.put(&r).await.unwrap();
        }
        Arc::new(b)
    }

    #[tokio::test]
    async fn rows_merge_every_store_in_key_order() {
        let a = mem("a", &[("p/1", 1), ("p/2", 1), ("p/4", 1), ("q/1", 1)]).await;
        let b = mem("b", &[("p/2", 2), ("p/3", 1), ("p/5", 1)]).await;
        let range = KeyRange::prefix(Prefix::new("p").unwrap());
        let mut m = MergedListing::new(vec![a, b], range, 2, Throttle::unlimited());
        let mut seen = Vec::new();
        while let Some(rows) = m.next_rows().await.unwrap() {
            for r in rows {
                let present: Vec<bool> = r.entries.iter().map(Option::is_some).collect();
                seen.push((r.key.as_str().to_owned(), present));
            }
        }
        let keys: Vec<&str> = seen.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["p/1", "p/2", "p/3", "p/4", "p/5"]);
        assert_eq!(seen[1].1, [true, true]);
        assert_eq!(seen[2].1, [false, true]);
    }
}
