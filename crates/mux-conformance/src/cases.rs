//! The conformance cases, each a public async function over a [`Ctx`].
//!
//! The original cases live here (longer than 600 lines: to be split by concern like
//! the newer ones in `cases/`: history, keys, listing, writes).
//!
//! [`ALL`] lists them in the order [`crate::run`] runs them. The crate's README
//! describes what each one checks.

use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;
use mux_core::{BackendExt, ErrorKind, Key, ListRequest, Prefix, PutOutcome, Record, Version};

use crate::{CaseResult, Ctx, Failure};

mod digest;
mod history;
mod keys;
mod listing;
mod writes;
pub use digest::digest_matches_listing;
pub use history::{
    as_of_time, as_of_version, history_keeps_tombstones, history_matches_capability,
    history_newest_first, history_of_one_key, history_pages, history_skips_superseded,
};
pub use keys::{keys_that_fold_stay_distinct, long_keys};
pub use listing::{
    list_cursor_between_keys, list_empty_prefix, list_entries_current, list_exact_pages,
    list_limit_obeyed,
};
pub use writes::{
    batch_beyond_native_limit, errors_are_classified, many_writers_many_keys,
    same_version_keeps_first,
};

/// A named case.
#[derive(Debug, Clone, Copy)]
pub struct Case {
    /// The case's name (its function's name).
    pub name: &'static str,
    /// Runs the case.
    pub run: for<'a> fn(&'a Ctx) -> Pin<Box<dyn Future<Output = CaseResult> + Send + 'a>>,
}

macro_rules! cases {
    ($($name:ident),* $(,)?) => {
        /// Every case, in run order.
        pub const ALL: &[Case] = &[$(Case { name: stringify!($name), run: |ctx| Box::pin($name(ctx)) }),*];
    };
}

cases!(
    round_trip,
    get_missing,
    empty_value,
    large_value,
    too_large_rejected,
    all_byte_values,
    special_keys,
    keys_that_fold_stay_distinct,
    long_keys,
    newer_version_overwrites,
    stale_put_superseded,
    same_version_keeps_first,
    stale_tombstone_superseded,
    delete_then_get,
    delete_absent_key,
    list_order,
    list_prefix_boundary,
    list_pagination,
    list_shows_tombstones,
    list_exact_pages,
    list_cursor_between_keys,
    list_entries_current,
    list_limit_obeyed,
    list_empty_prefix,
    digest_matches_listing,
    concurrent_writers,
    many_writers_many_keys,
    batch_mixed,
    batch_beyond_native_limit,
    errors_are_classified,
    tags_round_trip,
    content_type_round_trip,
    purge_respects_versions,
    history_matches_capability,
    history_newest_first,
    history_keeps_tombstones,
    history_skips_superseded,
    history_pages,
    history_of_one_key,
    as_of_version,
    as_of_time,
    health,
);

pub(crate) fn fail(msg: impl Into<String>) -> Failure {
    Failure::Failed(msg.into())
}

macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(fail(format!($($fmt)+)));
        }
    };
}

macro_rules! ensure_eq {
    ($left:expr, $right:expr, $($fmt:tt)+) => {{
        let (l, r) = (&$left, &$right);
        if l != r {
            return Err(fail(format!("{}: got {:?}, expected {:?}", format!($($fmt)+), l, r)));
        }
    }};
}

pub(crate) use {ensure, ensure_eq};

pub(crate) fn require(cond: bool, capability: &str) -> CaseResult {
    if cond {
        Ok(())
    } else {
        Err(Failure::Skipped(format!(
            "capability `{capability}` is not declared"
        )))
    }
}

async fn expect_live(ctx: &Ctx, key: &Key, value: &[u8], version: Version) -> CaseResult {
    let Some(r) = ctx.backend().get(key).await? else {
        return Err(fail(format!(
            "get {key}: nothing stored, expected version {version}"
        )));
    };
    ensure!(
        !r.is_tombstone(),
        "get {key}: got a tombstone, expected a live record"
    );
    ensure_eq!(r.version(), version, "get {key}: version");
    ensure!(
        r.value().as_ref() == value,
        "get {key}: value differs ({} bytes stored, {} expected)",
        r.value().len(),
        value.len()
    );
    ensure_eq!(r.key(), key, "get {key}: key of the returned record");
    Ok(())
}

pub(crate) async fn put_expect(ctx: &Ctx, record: &Record, expected: PutOutcome) -> CaseResult {
    let got = ctx.backend().put(record).await?;
    ensure_eq!(
        got,
        expected,
        "put {} at {}",
        record.key(),
        record.version()
    );
    Ok(())
}

async fn list_keys(ctx: &Ctx, prefix: &Prefix) -> Result<Vec<String>, Failure> {
    Ok(ctx
        .backend()
        .list_all(prefix)
        .await?
        .into_iter()
        .map(|e| e.key.as_str().to_owned())
        .collect())
}

/// Put then get returns the same value, version and metadata.
pub async fn round_trip(ctx: &Ctx) -> CaseResult {
    let key = ctx.key("round/trip");
    let v = ctx.version();
    put_expect(
        ctx,
        &Record::new(key.clone(), "hello, mux", v),
        PutOutcome::Applied,
    )
    .await?;
    expect_live(ctx, &key, b"hello, mux", v).await?;
    let r = ctx.backend().get(&key).await?.expect("checked above");
    let expected = Record::new(key.clone(), "hello, mux", v);
    ensure_eq!(r.meta().checksum, expected.meta().checksum, "checksum");
    Ok(())
}

/// Get of a key never written returns `None`.
pub async fn get_missing(ctx: &Ctx) -> CaseResult {
    let got = ctx.backend().get(&ctx.key("never/written")).await?;
    ensure!(got.is_none(), "get of a never-written key returned {got:?}");
    Ok(())
}

/// An empty value is stored as empty (not as missing, not as a tombstone).
pub async fn empty_value(ctx: &Ctx) -> CaseResult {
    let key = ctx.key("empty");
    let v = ctx.version();
    put_expect(
        ctx,
        &Record::new(key.clone(), Bytes::new(), v),
        PutOutcome::Applied,
    )
    .await?;
    expect_live(ctx, &key, b"", v).await
}

/// A value at the backend's size limit (or 8 MiB when it has none or a larger one).
pub async fn large_value(ctx: &Ctx) -> CaseResult {
    let size = ctx
        .capability()
        .max_value_size
        .unwrap_or(usize::MAX)
        .min(8 << 20);
    let value: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
    let key = ctx.key("large");
    let v = ctx.version();
    put_expect(
        ctx,
        &Record::new(key.clone(), value.clone(), v),
        PutOutcome::Applied,
    )
    .await?;
    expect_live(ctx, &key, &value, v).await
}

/// A value one byte over the declared limit is rejected as too large, and nothing is stored.
pub async fn too_large_rejected(ctx: &Ctx) -> CaseResult {
    let Some(max) = ctx.capability().max_value_size else {
        return Err(Failure::Skipped("no `max_value_size` is declared".into()));
    };
    if max > 64 << 20 {
        return Err(Failure::Skipped(format!(
            "`max_value_size` is {max} bytes; the suite does not allocate more than 64 MiB"
        )));
    }
    let key = ctx.key("too/large");
    let err = ctx
        .backend()
        .put(&Record::new(key.clone(), vec![7u8; max + 1], ctx.version()))
        .await;
    match err {
        Ok(outcome) => {
            return Err(fail(format!(
                "a value of max+1 bytes was accepted: {outcome:?}"
            )));
        }
        Err(e) => ensure_eq!(
            e.kind(),
            ErrorKind::TooLarge,
            "error kind for a value over the limit ({e})"
        ),
    }
    let stored = ctx.backend().get(&key).await?;
    ensure!(stored.is_none(), "a rejected value left a record behind");
    Ok(())
}

/// A value holding every byte 0..=255 round-trips unchanged.
pub async fn all_byte_values(ctx: &Ctx) -> CaseResult {
    let value: Vec<u8> = (0..=255u8).chain((0..=255u8).rev()).collect();
    let key = ctx.key("bytes");
    let v = ctx.version();
    put_expect(
        ctx,
        &Record::new(key.clone(), value.clone(), v),
        PutOutcome::Applied,
    )
    .await?;
    expect_live(ctx, &key, &value, v).await
}

/// Keys with spaces, unicode, `%`, `:`, `?`, `#` and other awkward characters round-trip and list.
pub async fn special_keys(ctx: &Ctx) -> CaseResult {
    let suffixes = [
        "with space",
        "unicode/日本語/ünï",
        "emoji/🦀",
        "percent/%41%2F%",
        "colon/a:b",
        "question/a?b=c",
        "hash/a#b",
        "plus/a+b&c=d",
        "dots/.hidden/...",
        "backslash/a\\b",
        "quotes/'\"`",
        "tilde/~user",
        "brackets/[a]{b}<c>",
        "star/*|",
    ];
    let mut expected = Vec::new();
    for (i, s) in suffixes.iter().enumerate() {
        let key = ctx.key(&format!("special/{s}"));
        let v = ctx.version();
        let value = format!("value {i}");
        put_expect(
            ctx,
            &Record::new(key.clone(), value.clone(), v),
            PutOutcome::Applied,
        )
        .await?;
        expect_live(ctx, &key, value.as_bytes(), v).await?;
        expected.push(key.as_str().to_owned());
    }
    if ctx.capability().list {
        expected.sort();
        let listed = list_keys(ctx, &ctx.prefix("special")).await?;
        ensure_eq!(listed, expected, "listing of special keys");
    }
    Ok(())
}

/// A higher version replaces the stored record.
pub async fn newer_version_overwrites(ctx: &Ctx) -> CaseResult {
    let key = ctx.key("overwrite");
    let (v1, v2) = (ctx.version(), ctx.version());
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
    expect_live(ctx, &key, b"two", v2).await
}

/// A lower or equal version is ignored and reported superseded with the stored version.
pub async fn stale_put_superseded(ctx: &Ctx) -> CaseResult {
    let key = ctx.key("stale/put");
    let (v1, v2) = (ctx.version(), ctx.version());
    put_expect(
        ctx,
        &Record::new(key.clone(), "new", v2),
        PutOutcome::Applied,
    )
    .await?;
    put_expect(
        ctx,
        &Record::new(key.clone(), "old", v1),
        PutOutcome::Superseded { stored: v2 },
    )
    .await?;
    put_expect(
        ctx,
        &Record::new(key.clone(), "same", v2),
        PutOutcome::Superseded { stored: v2 },
    )
    .await?;
    expect_live(ctx, &key, b"new", v2).await
}

/// A tombstone older than the stored record is ignored and reported superseded.
pub async fn stale_tombstone_superseded(ctx: &Ctx) -> CaseResult {
    let key = ctx.key("stale/tombstone");
    let (v1, v2) = (ctx.version(), ctx.version());
    put_expect(
        ctx,
        &Record::new(key.clone(), "live", v2),
        PutOutcome::Applied,
    )
    .await?;
    let got = ctx.backend().delete(&key, v1).await?;
    ensure_eq!(
        got,
        PutOutcome::Superseded { stored: v2 },
        "delete at an older version"
    );
    expect_live(ctx, &key, b"live", v2).await
}

/// Delete leaves a tombstone with its version; older writes cannot resurrect the key, newer ones can.
pub async fn delete_then_get(ctx: &Ctx) -> CaseResult {
    let key = ctx.key("deleted");
    let (v1, v2, v3, v4) = (ctx.version(), ctx.version(), ctx.version(), ctx.version());
    put_expect(
        ctx,
        &Record::new(key.clone(), "live", v1),
        PutOutcome::Applied,
    )
    .await?;
    let got = ctx.backend().delete(&key, v3).await?;
    ensure_eq!(got, PutOutcome::Applied, "delete at a newer version");
    let Some(t) = ctx.backend().get(&key).await? else {
        return Err(fail(
            "get after delete returned nothing: the tombstone was lost",
        ));
    };
    ensure!(t.is_tombstone(), "get after delete returned a live record");
    ensure_eq!(t.version(), v3, "tombstone version");
    ensure!(t.value().is_empty(), "the tombstone carries a value");
    ensure!(
        ctx.backend().get_live(&key).await?.is_none(),
        "get_live after delete found a record"
    );
    put_expect(
        ctx,
        &Record::new(key.clone(), "resurrected?", v2),
        PutOutcome::Superseded { stored: v3 },
    )
    .await?;
    put_expect(
        ctx,
        &Record::new(key.clone(), "back", v4),
        PutOutcome::Applied,
    )
    .await?;
    expect_live(ctx, &key, b"back", v4).await
}

/// Deleting a key that was never written stores a tombstone that blocks older writes.
pub async fn delete_absent_key(ctx: &Ctx) -> CaseResult {
    let key = ctx.key("absent");
    let (v1, v2) = (ctx.version(), ctx.version());
    let got = ctx.backend().delete(&key, v2).await?;
    ensure_eq!(got, PutOutcome::Applied, "delete of an absent key");
    let t = ctx.backend().get(&key).await?;
    ensure!(
        t.as_ref()
            .is_some_and(|t| t.is_tombstone() && t.version() == v2),
        "get after deleting an absent key: got {t:?}, expected a tombstone at {v2}"
    );
    put_expect(
        ctx,
        &Record::new(key.clone(), "late", v1),
        PutOutcome::Superseded { stored: v2 },
    )
    .await
}

/// `list` returns keys in byte order, whatever order they were written in.
pub async fn list_order(ctx: &Ctx) -> CaseResult {
    require(ctx.capability().list, "list")?;
    let mut names: Vec<String> = [
        "b", "a", "A", "a/b", "a b", "a-b", "a.b", "a_b", "Z", "z", "0", "~", "é", "aa", "a/a",
        "ab",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    ctx.shuffle(&mut names);
    let mut expected = Vec::new();
    for n in &names {
        let key = ctx.key(&format!("order/{n}"));
        ctx.backend()
            .put(&Record::new(key.clone(), n.clone(), ctx.version()))
            .await?;
        expected.push(key.as_str().to_owned());
    }
    expected.sort();
    let listed = list_keys(ctx, &ctx.prefix("order")).await?;
    ensure_eq!(listed, expected, "keys must list in byte order");
    Ok(())
}

/// A prefix matches whole segments: `a/b` lists `a/b` and `a/b/…` but never `a/bc`.
pub async fn list_prefix_boundary(ctx: &Ctx) -> CaseResult {
    require(ctx.capability().list, "list")?;
    for s in [
        "a/b", "a/b/c", "a/b/d/e", "a/bc", "a/b-c", "a/b c", "a/a", "a/c", "ab",
    ] {
        let key = ctx.key(&format!("bound/{s}"));
        ctx.backend()
            .put(&Record::new(key, "x", ctx.version()))
            .await?;
    }
    let full = |s: &[&str]| -> Vec<String> {
        s.iter()
            .map(|s| format!("{}/bound/{s}", ctx.root()))
            .collect()
    };
    ensure_eq!(
        list_keys(ctx, &ctx.prefix("bound/a/b")).await?,
        full(&["a/b", "a/b/c", "a/b/d/e"]),
        "list a/b"
    );
    ensure_eq!(
        list_keys(ctx, &ctx.prefix("bound/a/b/")).await?,
        full(&["a/b/c", "a/b/d/e"]),
        "list a/b/"
    );
    ensure_eq!(
        list_keys(ctx, &ctx.prefix("bound/a/bc")).await?,
        full(&["a/bc"]),
        "list a/bc"
    );
    ensure_eq!(
        list_keys(ctx, &ctx.prefix("bound/a/x")).await?,
        full(&[]),
        "list a/x"
    );
    ensure_eq!(
        list_keys(ctx, &ctx.prefix("bound/a")).await?,
        full(&[
            "a/a", "a/b", "a/b c", "a/b-c", "a/b/c", "a/b/d/e", "a/bc", "a/c"
        ]),
        "list a"
    );
    Ok(())
}

/// 1,500 keys list completely, in order, without duplicates, across pages of 97.
pub async fn list_pagination(ctx: &Ctx) -> CaseResult {
    require(ctx.capability().list, "list")?;
    let mut records: Vec<Record> = (0..1500)
        .map(|i| {
            Record::new(
                ctx.key(&format!("page/k{i:05}")),
                format!("{i}"),
                ctx.version(),
            )
        })
        .collect();
    ctx.shuffle(&mut records);
    for chunk in records.chunks(250) {
        ctx.backend().put_batch(chunk).await?;
    }
    let mut expected: Vec<String> = records
        .iter()
        .map(|r| r.key().as_str().to_owned())
        .collect();
    expected.sort();

    let mut req = ListRequest::new(ctx.prefix("page")).with_limit(97);
    let mut got = Vec::new();
    let mut pages = 0;
    loop {
        let page = ctx.backend().list(&req).await?;
        pages += 1;
        ensure!(
            page.entries.len() <= 97,
            "a page of limit 97 held {} entries",
            page.entries.len()
        );
        ensure!(pages <= 1500, "pagination does not end");
        got.extend(page.entries.iter().map(|e| e.key.as_str().to_owned()));
        match page.next_cursor {
            Some(c) => {
                ensure!(!page.entries.is_empty(), "an empty page came with a cursor");
                req.cursor = Some(c);
            }
            None => break,
        }
    }
    ensure!(
        got.len() == expected.len(),
        "listed {} keys over {pages} pages, expected {}",
        got.len(),
        expected.len()
    );
    ensure!(
        got == expected,
        "paged listing is out of order or has duplicates"
    );

    // A cursor from the middle continues strictly after it.
    let mid = Key::new(&expected[700]).expect("valid");
    let page = ctx
        .backend()
        .list(
            &ListRequest::new(ctx.prefix("page"))
                .with_limit(3)
                .with_cursor(Some(mid)),
        )
        .await?;
    let keys: Vec<&str> = page.entries.iter().map(|e| e.key.as_str()).collect();
    ensure_eq!(
        keys,
        expected[701..704]
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
        "page after a cursor"
    );

    let err = ctx
        .backend()
        .list(&ListRequest::new(ctx.prefix("page")).with_limit(0))
        .await;
    ensure!(
        err.as_ref()
            .is_err_and(|e| e.kind() == ErrorKind::InvalidInput),
        "list with limit 0 must fail as invalid input, got {err:?}"
    );
    Ok(())
}

/// Tombstones are listed, flagged, with their versions (so replicas can be compared).
pub async fn list_shows_tombstones(ctx: &Ctx) -> CaseResult {
    require(ctx.capability().list, "list")?;
    let live = ctx.key("tomb/live");
    let dead = ctx.key("tomb/dead");
    ctx.backend()
        .put(&Record::new(live.clone(), "x", ctx.version()))
        .await?;
    ctx.backend()
        .put(&Record::new(dead.clone(), "x", ctx.version()))
        .await?;
    let v = ctx.version();
    ctx.backend().delete(&dead, v).await?;
    let entries = ctx.backend().list_all(&ctx.prefix("tomb")).await?;
    ensure_eq!(entries.len(), 2, "entries listed");
    ensure!(
        entries[0].key == dead && entries[0].meta.tombstone,
        "the deleted key must list as a tombstone"
    );
    ensure_eq!(entries[0].meta.version, v, "listed tombstone version");
    ensure!(
        entries[1].key == live && !entries[1].meta.tombstone,
        "the live key must list as live"
    );
    ensure_eq!(entries[1].size, 1, "listed size of the live value");
    Ok(())
}

/// 32 concurrent writers of one key, in random version order, end with the highest version.
pub async fn concurrent_writers(ctx: &Ctx) -> CaseResult {
    let key = ctx.key("contended");
    let mut versions: Vec<Version> = (0..32).map(|_| ctx.version()).collect();
    let highest = versions.pop().expect("32 versions");
    ctx.shuffle(&mut versions);
    // The highest version starts first, so a backend that lets the last arrival win
    // (instead of the highest version) is very likely to end on a lower one.
    versions.insert(0, highest);
    let mut tasks = Vec::new();
    for v in versions {
        let backend = ctx.backend_arc();
        let record = Record::new(key.clone(), format!("{v}"), v);
        tasks.push(tokio::spawn(async move { (v, backend.put(&record).await) }));
    }
    for t in tasks {
        let (v, outcome) = t
            .await
            .map_err(|e| fail(format!("writer task failed: {e}")))?;
        let outcome = outcome?;
        if v == highest {
            ensure_eq!(outcome, PutOutcome::Applied, "the highest version's write");
        }
    }
    expect_live(ctx, &key, highest.to_string().as_bytes(), highest).await
}

/// A batch of newer, stale and new records gets one correct outcome per record.
pub async fn batch_mixed(ctx: &Ctx) -> CaseResult {
    let (k1, k2, k3) = (
        ctx.key("batch/newer"),
        ctx.key("batch/stale"),
        ctx.key("batch/new"),
    );
    let (old, mid, new) = (ctx.version(), ctx.version(), ctx.version());
    ctx.backend()
        .put(&Record::new(k1.clone(), "k1 v1", old))
        .await?;
    ctx.backend()
        .put(&Record::new(k2.clone(), "k2 v3", new))
        .await?;
    let outcomes = ctx
        .backend()
        .put_batch(&[
            Record::new(k1.clone(), "k1 v2", mid),
            Record::new(k2.clone(), "k2 v2", mid),
            Record::new(k3.clone(), "k3 v2", mid),
        ])
        .await?;
    ensure_eq!(
        outcomes,
        vec![
            PutOutcome::Applied,
            PutOutcome::Superseded { stored: new },
            PutOutcome::Applied
        ],
        "batch outcomes"
    );
    expect_live(ctx, &k1, b"k1 v2", mid).await?;
    expect_live(ctx, &k2, b"k2 v3", new).await?;
    expect_live(ctx, &k3, b"k3 v2", mid).await?;
    let empty = ctx.backend().put_batch(&[]).await?;
    ensure!(empty.is_empty(), "an empty batch returned outcomes");
    Ok(())
}

/// Tags come back exactly as written (from `get` and from `list`).
pub async fn tags_round_trip(ctx: &Ctx) -> CaseResult {
    require(ctx.capability().tags, "tags")?;
    let key = ctx.key("tagged");
    let r = Record::new(key.clone(), "x", ctx.version())
        .with_tag("class", "pii")
        .with_tag("tenant", "acme corp")
        .with_tag("ünï", "çødé=1,2");
    ctx.backend().put(&r).await?;
    let got = ctx
        .backend()
        .get(&key)
        .await?
        .ok_or_else(|| fail("nothing stored"))?;
    ensure_eq!(got.meta().tags, r.meta().tags, "tags from get");
    if ctx.capability().list {
        let listed = ctx.backend().list_all(&Prefix::from(&key)).await?;
        ensure!(
            listed.len() == 1 && listed[0].meta.tags == r.meta().tags,
            "tags from list: {listed:?}"
        );
    }
    Ok(())
}

/// The content type comes back exactly as written.
pub async fn content_type_round_trip(ctx: &Ctx) -> CaseResult {
    require(ctx.capability().content_type, "content_type")?;
    let key = ctx.key("typed");
    let r = Record::new(key.clone(), "{}", ctx.version())
        .with_content_type("application/json; charset=utf-8");
    ctx.backend().put(&r).await?;
    let got = ctx
        .backend()
        .get(&key)
        .await?
        .ok_or_else(|| fail("nothing stored"))?;
    ensure_eq!(
        got.meta().content_type.as_deref(),
        Some("application/json; charset=utf-8"),
        "content type"
    );
    let plain = ctx.key("untyped");
    ctx.backend()
        .put(&Record::new(plain.clone(), "x", ctx.version()))
        .await?;
    let got = ctx
        .backend()
        .get(&plain)
        .await?
        .ok_or_else(|| fail("nothing stored"))?;
    ensure_eq!(
        got.meta().content_type,
        None,
        "content type of a record written without one"
    );
    Ok(())
}

/// `purge` removes a record only if its stored version is at most the given one.
pub async fn purge_respects_versions(ctx: &Ctx) -> CaseResult {
    require(ctx.capability().purge, "purge")?;
    let key = ctx.key("purged");
    let (v1, v2) = (ctx.version(), ctx.version());
    ctx.backend().delete(&key, v2).await?;
    ensure!(
        !ctx.backend().purge(&key, v1).await?,
        "purge below the stored version removed the record"
    );
    ensure!(
        ctx.backend().get(&key).await?.is_some(),
        "the record is gone after a refused purge"
    );
    ensure!(
        ctx.backend().purge(&key, v2).await?,
        "purge at the stored version did not remove it"
    );
    ensure!(
        ctx.backend().get(&key).await?.is_none(),
        "get after purge still finds the record"
    );
    ensure!(
        !ctx.backend().purge(&key, v2).await?,
        "purging a missing key reported a removal"
    );
    Ok(())
}

/// `health` succeeds on a working backend.
pub async fn health(ctx: &Ctx) -> CaseResult {
    ctx.backend().health().await?;
    Ok(())
}
