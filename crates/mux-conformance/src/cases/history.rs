//! The history cases (`Capability::history`): past versions newest first, tombstones
//! included, superseded writes absent, pages without gaps or repeats, as-of reads by
//! version and by time.

use mux_core::{AsOf, ErrorKind, HistoryRequest, Key, PutOutcome, Record, Version};

use super::{ensure, ensure_eq, fail, put_expect, require};
use crate::{CaseResult, Ctx, Failure};

/// Every version in `key`'s history (all pages of `page_size`), newest first, checking
/// that the pages neither repeat nor reorder versions.
async fn full_history(ctx: &Ctx, key: &Key, page_size: usize) -> Result<Vec<Record>, Failure> {
    let mut request = HistoryRequest::new(key.clone()).with_limit(page_size);
    let mut all: Vec<Record> = Vec::new();
    for _ in 0..1000 {
        let page = ctx.backend().history(&request).await?;
        ensure!(
            page.entries.len() <= page_size,
            "history {key}: a page of {} entries for limit {page_size}",
            page.entries.len()
        );
        for r in &page.entries {
            ensure_eq!(r.key(), key, "history {key}: key of an entry");
            if let Some(last) = all.last() {
                ensure!(
                    r.version() < last.version(),
                    "history {key}: {} follows {} (newest first, no repeats)",
                    r.version(),
                    last.version()
                );
            }
        }
        all.extend(page.entries);
        match page.next_cursor {
            Some(c) => request.cursor = Some(c),
            None => return Ok(all),
        }
    }
    Err(fail(format!("history {key}: more than 1000 pages")))
}

/// The versions and values (`None` for a tombstone) of a history.
fn summary(history: &[Record]) -> Vec<(Version, Option<String>)> {
    history
        .iter()
        .map(|r| {
            let value = (!r.is_tombstone()).then(|| String::from_utf8_lossy(r.value()).into());
            (r.version(), value)
        })
        .collect()
}

/// Versions `step` milliseconds apart, starting at the context's clock.
fn spaced(ctx: &Ctx, n: u32, step: u64) -> Vec<Version> {
    let base = ctx.version();
    (0..n)
        .map(|i| Version::new(base.physical_ms() + u64::from(i) * step, 0, base.node()))
        .collect()
}

/// `history` is there exactly when the capability says so: without it the call fails
/// with `Unsupported`, with it a written key has a history.
pub async fn history_matches_capability(ctx: &Ctx) -> CaseResult {
    let key = ctx.key("history/capability");
    let v = ctx.version();
    put_expect(ctx, &Record::new(key.clone(), "x", v), PutOutcome::Applied).await?;
    let answer = ctx
        .backend()
        .history(&HistoryRequest::new(key.clone()))
        .await;
    match (ctx.capability().history, answer) {
        (true, Ok(page)) => {
            ensure!(
                page.entries.first().map(Record::version) == Some(v),
                "history {key}: the current version {v} is not the first entry: {:?}",
                summary(&page.entries)
            );
        }
        (true, Err(e)) => return Err(fail(format!("history {key}: {e}"))),
        (false, Ok(page)) => {
            return Err(fail(format!(
                "history {key} answered {} entries, but the capability has no `history` \
                 (declare it, or fail with Unsupported)",
                page.entries.len()
            )));
        }
        (false, Err(e)) => ensure_eq!(
            e.kind(),
            ErrorKind::Unsupported,
            "history without the capability: {e}"
        ),
    }
    Ok(())
}

/// Three writes come back newest first with their values; a never-written key has an
/// empty history.
pub async fn history_newest_first(ctx: &Ctx) -> CaseResult {
    require(ctx.capability().history, "history")?;
    let key = ctx.key("history/newest");
    let versions = spaced(ctx, 3, 1);
    for (i, v) in versions.iter().enumerate() {
        let record = Record::new(key.clone(), format!("value-{i}"), *v);
        put_expect(ctx, &record, PutOutcome::Applied).await?;
    }
    let got = summary(&full_history(ctx, &key, 100).await?);
    let expected: Vec<_> = versions
        .iter()
        .enumerate()
        .rev()
        .map(|(i, v)| (*v, Some(format!("value-{i}"))))
        .collect();
    ensure_eq!(got, expected, "history {key}");
    let missing = ctx.key("history/never-written");
    let page = ctx
        .backend()
        .history(&HistoryRequest::new(missing.clone()))
        .await?;
    ensure!(
        page.entries.is_empty() && page.next_cursor.is_none(),
        "history {missing} of a never-written key: {:?}",
        summary(&page.entries)
    );
    Ok(())
}

/// A delete is part of the history, as a tombstone at its version, and a later write
/// follows it.
pub async fn history_keeps_tombstones(ctx: &Ctx) -> CaseResult {
    require(ctx.capability().history, "history")?;
    let key = ctx.key("history/tombstones");
    let [v1, v2, v3] = spaced(ctx, 3, 1)[..] else {
        unreachable!("three versions")
    };
    put_expect(
        ctx,
        &Record::new(key.clone(), "before", v1),
        PutOutcome::Applied,
    )
    .await?;
    ensure_eq!(
        ctx.backend().delete(&key, v2).await?,
        PutOutcome::Applied,
        "delete {key} at {v2}"
    );
    put_expect(
        ctx,
        &Record::new(key.clone(), "after", v3),
        PutOutcome::Applied,
    )
    .await?;
    let got = summary(&full_history(ctx, &key, 100).await?);
    let expected = vec![
        (v3, Some("after".to_owned())),
        (v2, None),
        (v1, Some("before".to_owned())),
    ];
    ensure_eq!(got, expected, "history {key} (None marks a tombstone)");
    Ok(())
}

/// A write refused as stale (`Superseded`) never appears in the history.
pub async fn history_skips_superseded(ctx: &Ctx) -> CaseResult {
    require(ctx.capability().history, "history")?;
    let key = ctx.key("history/superseded");
    let [old, new] = spaced(ctx, 2, 1)[..] else {
        unreachable!("two versions")
    };
    put_expect(
        ctx,
        &Record::new(key.clone(), "new", new),
        PutOutcome::Applied,
    )
    .await?;
    put_expect(
        ctx,
        &Record::new(key.clone(), "old", old),
        PutOutcome::Superseded { stored: new },
    )
    .await?;
    put_expect(
        ctx,
        &Record::new(key.clone(), "again", new),
        PutOutcome::Superseded { stored: new },
    )
    .await?;
    let got = summary(&full_history(ctx, &key, 100).await?);
    ensure_eq!(got, vec![(new, Some("new".to_owned()))], "history {key}");
    Ok(())
}

/// Seven versions in pages of 3 (and of 1): every version once, newest first; the last
/// page has no cursor; limit 0 is invalid input.
pub async fn history_pages(ctx: &Ctx) -> CaseResult {
    require(ctx.capability().history, "history")?;
    let key = ctx.key("history/pages");
    let versions = spaced(ctx, 7, 1);
    for (i, v) in versions.iter().enumerate() {
        put_expect(
            ctx,
            &Record::new(key.clone(), i.to_string(), *v),
            PutOutcome::Applied,
        )
        .await?;
    }
    let expected: Vec<Version> = versions.iter().rev().copied().collect();
    for page_size in [3, 1, 7] {
        let got: Vec<Version> = full_history(ctx, &key, page_size)
            .await?
            .iter()
            .map(Record::version)
            .collect();
        ensure_eq!(got, expected, "history {key} in pages of {page_size}");
    }
    let zero = HistoryRequest::new(key.clone()).with_limit(0);
    match ctx.backend().history(&zero).await {
        Err(e) if e.kind() == ErrorKind::InvalidInput => Ok(()),
        other => Err(fail(format!(
            "history {key} with limit 0: expected InvalidInput, got {:?}",
            other.map(|p| p.entries.len())
        ))),
    }
}

/// A key's history holds only that key: not keys it prefixes (`a/b`), nor keys that
/// extend its last segment (`ab`), nor its parent.
pub async fn history_of_one_key(ctx: &Ctx) -> CaseResult {
    require(ctx.capability().history, "history")?;
    let key = ctx.key("history/one/a");
    let neighbours = [
        ctx.key("history/one/a/b"),
        ctx.key("history/one/ab"),
        ctx.key("history/one"),
    ];
    let mine = ctx.version();
    put_expect(
        ctx,
        &Record::new(key.clone(), "mine", mine),
        PutOutcome::Applied,
    )
    .await?;
    for n in &neighbours {
        put_expect(
            ctx,
            &Record::new(n.clone(), "theirs", ctx.version()),
            PutOutcome::Applied,
        )
        .await?;
    }
    let got = summary(&full_history(ctx, &key, 100).await?);
    ensure_eq!(got, vec![(mine, Some("mine".to_owned()))], "history {key}");
    Ok(())
}

/// `get_as_of` a version returns the highest stored version at or below it: nothing
/// before the first write, the exact version, the one below a gap, a tombstone, and the
/// current record beyond the last write.
pub async fn as_of_version(ctx: &Ctx) -> CaseResult {
    require(ctx.capability().history, "history")?;
    let key = ctx.key("history/as-of-version");
    let [v1, v2, v3, v4] = spaced(ctx, 4, 10)[..] else {
        unreachable!("four versions")
    };
    put_expect(
        ctx,
        &Record::new(key.clone(), "one", v1),
        PutOutcome::Applied,
    )
    .await?;
    put_expect(
        ctx,
        &Record::new(key.clone(), "two", v2),
        PutOutcome::Applied,
    )
    .await?;
    ensure_eq!(
        ctx.backend().delete(&key, v3).await?,
        PutOutcome::Applied,
        "delete at {v3}"
    );
    put_expect(
        ctx,
        &Record::new(key.clone(), "four", v4),
        PutOutcome::Applied,
    )
    .await?;
    let before = Version::new(v1.physical_ms() - 1, 0, 0);
    let gap = Version::new(v2.physical_ms() + 5, 0, 0);
    let after = Version::new(v4.physical_ms() + 1_000, 0, 0);
    let cases = [
        (before, None),
        (v1, Some((v1, Some("one")))),
        (gap, Some((v2, Some("two")))),
        (v3, Some((v3, None))),
        (after, Some((v4, Some("four")))),
    ];
    for (at, expected) in cases {
        let got = ctx.backend().get_as_of(&key, AsOf::Version(at)).await?;
        if let Some(r) = &got {
            ensure_eq!(r.key(), &key, "get_as_of {key} at {at}: key");
        }
        let got = got.map(|r| {
            let value =
                (!r.is_tombstone()).then(|| String::from_utf8_lossy(r.value()).into_owned());
            (r.version(), value)
        });
        let expected = expected.map(|(v, s)| (v, s.map(str::to_owned)));
        ensure_eq!(
            got,
            expected,
            "get_as_of {key} at {at} (None value: a tombstone)"
        );
    }
    Ok(())
}

/// `get_as_of` a time returns the version current at that millisecond (versions carry
/// their time), and nothing before the first write.
pub async fn as_of_time(ctx: &Ctx) -> CaseResult {
    require(ctx.capability().history, "history")?;
    let key = ctx.key("history/as-of-time");
    let [v1, v2] = spaced(ctx, 2, 1_000)[..] else {
        unreachable!("two versions")
    };
    put_expect(
        ctx,
        &Record::new(key.clone(), "first", v1),
        PutOutcome::Applied,
    )
    .await?;
    put_expect(
        ctx,
        &Record::new(key.clone(), "second", v2),
        PutOutcome::Applied,
    )
    .await?;
    let cases = [
        (v1.physical_ms() - 1, None),
        (v1.physical_ms(), Some(v1)),
        (v1.physical_ms() + 999, Some(v1)),
        (v2.physical_ms(), Some(v2)),
    ];
    for (ms, expected) in cases {
        let got = ctx.backend().get_as_of(&key, AsOf::UnixMillis(ms)).await?;
        ensure_eq!(
            got.map(|r| r.version()),
            expected,
            "get_as_of {key} at Unix ms {ms}"
        );
    }
    Ok(())
}
