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
        if self.flaw == Flaw::IgnoresVersions {
            self.inner
                .purge(record.key(), Version::new(u64::MAX, u32::MAX, u32::MAX))
                .await?;
        }
        self.sent.lock().unwrap().push(record.clone());
        self.inner.put(record).await
    }
    async fn get(&self, key: &Key) -> Result<Option<Record>> {
        self.inner.get(key).await
    }
    async fn list(&self, request: &ListRequest) -> Result<ListPage> {
        let mut page = self.inner.list(request).await?;
        if self.flaw == Flaw::ListsOutOfOrder {
            page.entries.reverse();
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
