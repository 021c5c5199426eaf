//! Listing: `ListObjectsV2` for the keys, then a `HeadObject` per key (listings carry no
//! user metadata), `concurrency` at a time, in order.

use futures_util::{StreamExt, TryStreamExt};
use mux_core::{ErrorKind, Key, ListEntry, ListPage, ListRequest, Result};

use crate::core::S3Core;
use crate::error::map_sdk;

impl S3Core {
    pub(crate) async fn list_page(&self, request: &ListRequest) -> Result<ListPage> {
        let limit = request.effective_limit()?;
        let prefix = request.prefix.as_str();
        let mut keys: Vec<Key> = Vec::new();
        // The service prefix to list under. A prefix `p` without a trailing `/` matches
        // the key `p` and the keys under `p/`; listing `p` itself would walk every
        // sibling such as `p-old/…` first (`-` and `.` sort before `/`), so `p` is
        // looked up on its own and the listing starts at `p/`.
        let scan_prefix = if prefix.is_empty() {
            self.object_key("")
        } else if prefix.ends_with('/') {
            self.object_key(prefix)
        } else {
            if request.cursor.as_ref().is_none_or(|c| c.as_str() < prefix) {
                keys.push(Key::new(prefix)?);
            }
            self.object_key(&format!("{prefix}/"))
        };
        let mut start_after = request.cursor.as_ref().map(|c| self.object_key(c.as_str()));
        let mut more = false;
        'pages: loop {
            let out = self
                .client
                .list_objects_v2()
                .bucket(&self.config.bucket)
                .prefix(&scan_prefix)
                .set_start_after(start_after.clone())
                .max_keys((limit + 1).min(1000) as i32)
                .send()
                .await
                .map_err(|e| map_sdk(e).error)?;
            for object in out.contents() {
                let Some(object_key) = object.key() else {
                    continue;
                };
                start_after = Some(object_key.to_owned());
                let Some(key) = self.mux_key(object_key) else {
                    continue;
                };
                if !request.wants(key) {
                    continue;
                }
                // Not a mux key (someone else's object under the prefix): skip it.
                let Ok(key) = Key::new(key) else { continue };
                if keys.len() == limit {
                    more = true;
                    break 'pages;
                }
                keys.push(key);
            }
            if !out.is_truncated().unwrap_or(false) {
                break;
            }
        }
        // Listings carry no user metadata: head each object, a few at a time, in order.
        let heads: Vec<Option<ListEntry>> = futures_util::stream::iter(keys.iter().cloned())
            .map(|key| async move {
                let object_key = self.object_key(key.as_str());
                match self.head_object(&object_key).await {
                    Ok(stored) => Ok(stored.map(|s| ListEntry {
                        key,
                        meta: s.meta,
                        size: s.size,
                    })),
                    // An object without mux metadata is someone else's: skip it rather
                    // than fail every listing of its prefix.
                    Err(e) if e.kind() == ErrorKind::Corrupt => {
                        tracing::warn!(object_key, error = %e, "skipping an object that is not a mux record");
                        Ok(None)
                    }
                    Err(e) => Err(e),
                }
            })
            .buffered(self.config.concurrency)
            .try_collect()
            .await?;
        let next_cursor = if more { keys.last().cloned() } else { None };
        let entries: Vec<ListEntry> = heads.into_iter().flatten().collect();
        if entries.is_empty() && next_cursor.is_some() {
            // Every key of this page vanished (purged) or was foreign: go on from the
            // last one rather than hand out an empty page.
            let next = request.clone().with_cursor(next_cursor);
            return Box::pin(self.list_page(&next)).await;
        }
        Ok(ListPage {
            // An object purged between the listing and its head is simply gone.
            entries,
            next_cursor,
        })
    }
}
