//! The suite must be able to fail: each deliberately broken backend below is caught.

use std::sync::Arc;

use async_trait::async_trait;
use mux_conformance::{CaseOutcome, Report, run};
use std::sync::Mutex;

use mux_core::{
    AsOf, Backend, BackendInfo, HistoryPage, HistoryRequest, Key, ListPage, ListRequest,
    MemoryBackend, PutOutcome, Record, Result, Version,
};

/// How a [`Broken`] backend misbehaves.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Flaw {
    /// Every put overwrites, whatever the versions.
    IgnoresVersions,
    /// Listings come back in reverse order.
    ListsOutOfOrder,
    /// Delete removes the record instead of keeping a tombstone.
    LosesTombstones,
    /// History pages come back oldest first.
    HistoryOldestFirst,
    /// History records every write it is sent, stale ones too.
    HistoryKeepsSuperseded,
    /// `get_as_of` answers the current record whatever the time.
    AsOfIgnoresTime,
    /// Declares no history yet answers `history` with an empty page.
    HistoryEmptyWithoutCapability,
    /// A write at the stored version replaces the record (`>=` instead of `>`).
    AppliesSameVersion,
    /// Listing includes the cursor's own key.
    CursorInclusive,
    /// A cursor naming no stored key restarts the listing from the top.
    CursorMustExist,
    /// Listed entries report size 0 (metadata from an index that is never updated).
    StaleListSizes,
    /// Listing returns one entry more than the limit.
    IgnoresLimit,
    /// The first page of an empty listing carries a cursor.
    CursorOnEmptyPage,
    /// Keys are stored lower-cased (a case-insensitive collation).
    FoldsCase,
    /// Keys are cut to 255 bytes (a store's column width).
    TruncatesKeys,
    /// Read, pause, then write unconditionally: racing writers can let a lower version win.
    RacyWrites,
    /// `put_batch` handles only the first 100 records.
    TruncatesBatches,
    /// A too-large value fails as a temporary error (a coordinator would retry forever).
    TemporaryTooLarge,
    /// A native digest that leaves tombstones out (two stores that disagree on a
    /// delete would look the same).
    DigestSkipsTombstones,
}

#[derive(Debug)]
struct Broken {
    inner: MemoryBackend,
    flaw: Flaw,
    /// Every record sent to `put` (for [`Flaw::HistoryKeepsSuperseded`]).
    sent: Mutex<Vec<Record>>,
}

#[async_trait]
impl Backend for Broken {
    fn info(&self) -> &BackendInfo {
        self.inner.info()
    }
    async fn put(&self, record: &Record) -> Result<PutOutcome> {
        let stored_key = self.stored_key(record.key());
        let record = &record.clone().with_key(stored_key);
        match self.flaw {
            Flaw::AppliesSameVersion => {
                let stored = self.inner.get(record.key()).await?.map(|r| r.version());
                if stored == Some(record.version()) {
                    let top = Version::new(u64::MAX, u32::MAX, u32::MAX);
                    self.inner.purge(record.key(), top).await?;
                    return self.inner.put(record).await;
                }
            }
            Flaw::RacyWrites => {
                let stored = self.inner.get(record.key()).await?.map(|r| r.version());
                let outcome = PutOutcome::decide(stored, record.version());
                tokio::time::sleep(std::time::Duration::from_millis(2)).await;
                if outcome.is_applied() {
                    let top = Version::new(u64::MAX, u32::MAX, u32::MAX);
                    self.inner.purge(record.key(), top).await?;
                    self.inner.put(record).await?;
                }
                return Ok(outcome);
            }
            Flaw::TemporaryTooLarge => {
                return self.inner.put(record).await.map_err(|e| {
                    if e.kind() == mux_core::ErrorKind::TooLarge {
                        e.temporary()
                    } else {
                        e
                    }
                });
            }
            _ => {}
        }
        if self.flaw == Flaw::IgnoresVersions {
            self.inner
                .purge(record.key(), Version::new(u64::MAX, u32::MAX, u32::MAX))
                .await?;
        }
        self.sent.lock().unwrap().push(record.clone());
        self.inner.put(record).await
    }
    async fn get(&self, key: &Key) -> Result<Option<Record>> {
        let stored = self.inner.get(&self.stored_key(key)).await?;
        Ok(stored.map(|r| r.with_key(key.clone())))
    }
    async fn digest(
        &self,
        request: &mux_core::digest::DigestRequest,
    ) -> Result<Vec<mux_core::digest::DigestChunk>> {
        if self.flaw != Flaw::DigestSkipsTombstones {
            return mux_core::digest_by_listing(self, request).await;
        }
        let mut chunks = mux_core::digest::ChunkBuilder::new(request)?;
        let mut list = request.range.list_request(1000);
        loop {
            let page = self.list(&list).await?;
            for e in page.entries.iter().filter(|e| !e.meta.tombstone) {
                if request.range.contains(e.key.as_str()) {
                    chunks.push(&e.key, e.meta.version, false);
                }
            }
            match page.next_cursor {
                Some(c) => list.cursor = Some(c),
                None => return Ok(chunks.finish()),
            }
        }
    }
    async fn list(&self, request: &ListRequest) -> Result<ListPage> {
        let mut request = request.clone();
        match self.flaw {
            Flaw::IgnoresLimit => request.limit += 1,
            Flaw::CursorInclusive => {
                // Start just before the cursor: at the cursor's key when it exists.
                if let Some(c) = &request.cursor
                    && self.inner.get(c).await?.is_some()
                {
                    let page = self
                        .inner
                        .list(
                            &request
                                .clone()
                                .with_limit(request.limit.saturating_sub(1).max(1)),
                        )
                        .await?;
                    let record = self.inner.get(c).await?.expect("just read");
                    let mut entries = vec![mux_core::ListEntry {
                        key: c.clone(),
                        size: record.value().len() as u64,
                        meta: record.meta().clone(),
                    }];
                    entries.extend(page.entries);
                    return Ok(ListPage {
                        entries,
                        next_cursor: page.next_cursor,
                    });
                }
            }
            Flaw::CursorMustExist => {
                if let Some(c) = &request.cursor
                    && self.inner.get(c).await?.is_none()
                {
                    request.cursor = None;
                }
            }
            _ => {}
        }
        let mut page = self.inner.list(&request).await?;
        match self.flaw {
            Flaw::ListsOutOfOrder => page.entries.reverse(),
            Flaw::StaleListSizes => page.entries.iter_mut().for_each(|e| e.size = 0),
            Flaw::CursorOnEmptyPage if page.entries.is_empty() && request.cursor.is_none() => {
                page.next_cursor = Some(
                    Key::new(request.prefix.scan_start().trim_end_matches('/'))
                        .unwrap_or_else(|_| Key::new("z").expect("valid")),
                );
            }
            _ => {}
        }
        Ok(page)
    }
    async fn delete(&self, key: &Key, version: Version) -> Result<PutOutcome> {
        if self.flaw == Flaw::LosesTombstones {
            self.inner
                .purge(key, Version::new(u64::MAX, u32::MAX, u32::MAX))
                .await?;
            return Ok(PutOutcome::Applied);
        }
        self.inner.delete(key, version).await
    }
    async fn put_batch(&self, records: &[Record]) -> Result<Vec<PutOutcome>> {
        let mut out = Vec::new();
        let records = match self.flaw {
            Flaw::TruncatesBatches => &records[..records.len().min(100)],
            _ => records,
        };
        for r in records {
            out.push(self.put(r).await?);
        }
        Ok(out)
    }
    async fn purge(&self, key: &Key, up_to: Version) -> Result<bool> {
        self.inner.purge(key, up_to).await
    }
    async fn history(&self, request: &HistoryRequest) -> Result<HistoryPage> {
        match self.flaw {
            Flaw::HistoryEmptyWithoutCapability => Ok(HistoryPage::default()),
            Flaw::HistoryKeepsSuperseded => {
                let sent = self.sent.lock().unwrap().clone();
                let mine = sent.into_iter().filter(|r| r.key() == &request.key);
                request.page(mine.collect())
            }
            Flaw::HistoryOldestFirst => {
                let mut page = self.inner.history(request).await?;
                page.entries.reverse();
                Ok(page)
            }
            _ => self.inner.history(request).await,
        }
    }
    async fn get_as_of(&self, key: &Key, at: AsOf) -> Result<Option<Record>> {
        if self.flaw == Flaw::AsOfIgnoresTime {
            return self.inner.get(key).await;
        }
        self.inner.get_as_of(key, at).await
    }
}

impl Broken {
    /// Where a key is stored (the key-mangling flaws change it).
    fn stored_key(&self, key: &Key) -> Key {
        let text = key.as_str();
        let mangled = match self.flaw {
            Flaw::FoldsCase => text.to_lowercase(),
            Flaw::TruncatesKeys if text.len() > 255 => {
                let mut end = 255;
                while !text.is_char_boundary(end) {
                    end -= 1;
                }
                text[..end].to_owned()
            }
            _ => return key.clone(),
        };
        Key::new(mangled).unwrap_or_else(|_| key.clone())
    }
}

async fn report_for(flaw: Flaw) -> Report {
    let name = format!("{flaw:?}");
    let inner = match flaw {
        Flaw::HistoryOldestFirst | Flaw::HistoryKeepsSuperseded | Flaw::AsOfIgnoresTime => {
            MemoryBackend::with_history(name)
        }
        _ => MemoryBackend::new(name),
    };
    run(Arc::new(Broken {
        inner,
        flaw,
        sent: Mutex::new(Vec::new()),
    }))
    .await
}

fn assert_caught(report: &Report, cases: &[&str]) {
    println!("{report}");
    for case in cases {
        assert!(
            matches!(report.outcome(case), Some(CaseOutcome::Failed(_))),
            "{} should fail case {case}:\n{report}",
            report.backend
        );
    }
    assert!(!report.all_passed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_backend_passes_everything() {
    let report = run(Arc::new(MemoryBackend::with_history("memory"))).await;
    println!("{report}");
    assert!(report.all_passed(), "{report}");
    assert_eq!(report.skipped(), 0, "{report}");
    assert_eq!(report.passed(), mux_conformance::cases::ALL.len());
}

/// The history cases, each skipped without the capability except the one that checks
/// the capability is honest.
const HISTORY_CASES: &[&str] = &[
    "history_newest_first",
    "history_keeps_tombstones",
    "history_skips_superseded",
    "history_pages",
    "history_of_one_key",
    "as_of_version",
    "as_of_time",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_history_only_the_history_cases_skip() {
    let report = run(Arc::new(MemoryBackend::new("memory"))).await;
    println!("{report}");
    assert!(report.all_passed(), "{report}");
    assert_eq!(report.skipped(), HISTORY_CASES.len(), "{report}");
    assert!(report.skips_beyond(&["history"]).is_empty(), "{report}");
    assert_eq!(
        report.skips_beyond(&[]).len(),
        HISTORY_CASES.len(),
        "{report}"
    );
    for case in HISTORY_CASES {
        match report.outcome(case) {
            Some(CaseOutcome::Skipped(why)) => assert!(why.contains("`history`"), "{why}"),
            other => panic!("{case}: {other:?}"),
        }
    }
    assert!(matches!(
        report.outcome("history_matches_capability"),
        Some(CaseOutcome::Passed)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catches_history_in_the_wrong_order() {
    let report = report_for(Flaw::HistoryOldestFirst).await;
    assert_caught(
        &report,
        &[
            "history_newest_first",
            "history_keeps_tombstones",
            "history_pages",
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catches_history_that_keeps_superseded_writes() {
    let report = report_for(Flaw::HistoryKeepsSuperseded).await;
    assert_caught(&report, &["history_skips_superseded"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catches_as_of_reads_that_ignore_the_time() {
    let report = report_for(Flaw::AsOfIgnoresTime).await;
    assert_caught(&report, &["as_of_version", "as_of_time"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catches_history_answered_without_the_capability() {
    let report = report_for(Flaw::HistoryEmptyWithoutCapability).await;
    assert_caught(&report, &["history_matches_capability"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catches_a_backend_that_ignores_versions() {
    let report = report_for(Flaw::IgnoresVersions).await;
    assert_caught(
        &report,
        &[
            "stale_put_superseded",
            "delete_then_get",
            "delete_absent_key",
            "batch_mixed",
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catches_a_backend_that_lists_out_of_order() {
    let report = report_for(Flaw::ListsOutOfOrder).await;
    assert_caught(
        &report,
        &[
            "list_order",
            "list_prefix_boundary",
            "list_pagination",
            "special_keys",
        ],
    );
    // The flaw is in listing only: the other cases still pass.
    assert!(matches!(
        report.outcome("round_trip"),
        Some(CaseOutcome::Passed)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catches_a_backend_that_loses_tombstones() {
    let report = report_for(Flaw::LosesTombstones).await;
    assert_caught(
        &report,
        &[
            "delete_then_get",
            "delete_absent_key",
            "list_shows_tombstones",
        ],
    );
}

#[tokio::test]
async fn skips_only_by_capability_and_names_it() {
    let info = BackendInfo::new("nolist", "memory", mux_core::Capability::default());
    let report = run(Arc::new(MemoryBackend::with_info(info))).await;
    println!("{report}");
    assert!(report.all_passed(), "{report}");
    for case in [
        "list_order",
        "list_pagination",
        "tags_round_trip",
        "purge_respects_versions",
    ] {
        match report.outcome(case) {
            Some(CaseOutcome::Skipped(why)) => assert!(why.contains("capability"), "{why}"),
            other => panic!("{case}: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catches_a_backend_that_reapplies_the_same_version() {
    let report = report_for(Flaw::AppliesSameVersion).await;
    assert_caught(&report, &["same_version_keeps_first"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catches_listing_that_repeats_the_cursor() {
    let report = report_for(Flaw::CursorInclusive).await;
    assert_caught(&report, &["list_exact_pages", "list_pagination"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catches_listing_that_needs_the_cursor_to_exist() {
    let report = report_for(Flaw::CursorMustExist).await;
    assert_caught(&report, &["list_cursor_between_keys"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catches_listing_with_stale_sizes() {
    let report = report_for(Flaw::StaleListSizes).await;
    assert_caught(&report, &["list_entries_current"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catches_listing_that_ignores_the_limit() {
    let report = report_for(Flaw::IgnoresLimit).await;
    assert_caught(&report, &["list_limit_obeyed", "list_exact_pages"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catches_an_empty_page_with_a_cursor() {
    let report = report_for(Flaw::CursorOnEmptyPage).await;
    assert_caught(&report, &["list_empty_prefix"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catches_a_backend_that_folds_case() {
    let report = report_for(Flaw::FoldsCase).await;
    assert_caught(&report, &["keys_that_fold_stay_distinct"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catches_a_backend_that_truncates_keys() {
    let report = report_for(Flaw::TruncatesKeys).await;
    assert_caught(&report, &["long_keys"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catches_racing_writes_that_let_a_lower_version_win() {
    let report = report_for(Flaw::RacyWrites).await;
    assert_caught(&report, &["many_writers_many_keys"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catches_batches_cut_short() {
    let report = report_for(Flaw::TruncatesBatches).await;
    assert_caught(&report, &["batch_beyond_native_limit"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catches_a_too_large_error_marked_temporary() {
    let report = report_for(Flaw::TemporaryTooLarge).await;
    assert_caught(&report, &["errors_are_classified"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catches_a_digest_that_leaves_tombstones_out() {
    let report = report_for(Flaw::DigestSkipsTombstones).await;
    assert_caught(&report, &["digest_matches_listing"]);
}

#[test]
fn the_suite_has_at_least_forty_cases() {
    assert!(
        mux_conformance::cases::ALL.len() >= 40,
        "{}",
        mux_conformance::cases::ALL.len()
    );
}
