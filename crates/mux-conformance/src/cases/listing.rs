//! Listing edge cases: exact pages, cursors between keys, current sizes and versions,
//! limits, empty prefixes.

use mux_core::{Key, ListEntry, ListPage, ListRequest, PutOutcome, Record};

use super::{ensure, ensure_eq, fail, put_expect, require};
use crate::{CaseResult, Ctx, Failure};

/// Every page of `request`, checking each page's size and that pages end.
async fn pages(ctx: &Ctx, mut request: ListRequest) -> Result<Vec<ListPage>, Failure> {
    let mut out = Vec::new();
    for _ in 0..10_000 {
        let page = ctx.backend().list(&request).await?;
        ensure!(
            page.entries.len() <= request.limit,
            "a page of limit {} held {} entries",
            request.limit,
            page.entries.len()
        );
        let next = page.next_cursor.clone();
        out.push(page);
        match next {
            Some(c) => request.cursor = Some(c),
            None => return Ok(out),
        }
    }
    Err(fail("listing does not end after 10,000 pages"))
}

fn keys(pages: &[ListPage]) -> Vec<String> {
    pages
        .iter()
        .flat_map(|p| p.entries.iter().map(|e| e.key.as_str().to_owned()))
        .collect()
}

async fn write_keys(ctx: &Ctx, names: &[&str]) -> Result<Vec<String>, Failure> {
    let mut written = Vec::new();
    for name in names {
        let key = ctx.key(name);
        put_expect(
            ctx,
            &Record::new(key.clone(), name.to_string(), ctx.version()),
            PutOutcome::Applied,
        )
        .await?;
        written.push(key.as_str().to_owned());
    }
    written.sort();
    Ok(written)
}

/// Pages that are exactly full: 6 keys in pages of 3, 2, 1 and 6 — never a key dropped or
/// repeated at a page boundary, and a cursor equal to an existing key continues
/// strictly after it.
pub async fn list_exact_pages(ctx: &Ctx) -> CaseResult {
    require(ctx.capability().list, "list")?;
    let all = write_keys(
        ctx,
        &[
            "exact/a", "exact/b", "exact/c", "exact/d", "exact/e", "exact/f",
        ],
    )
    .await?;
    for limit in [3, 2, 1, 6] {
        let got = keys(&pages(ctx, ListRequest::new(ctx.prefix("exact")).with_limit(limit)).await?);
        ensure_eq!(got, all, "keys listed in pages of {limit}");
    }
    let cursor = Key::new(&all[2]).map_err(|e| fail(e.to_string()))?;
    let request = ListRequest::new(ctx.prefix("exact"))
        .with_limit(10)
        .with_cursor(Some(cursor));
    let got = keys(&pages(ctx, request).await?);
    ensure_eq!(got, all[3..].to_vec(), "keys after the cursor {}", all[2]);
    Ok(())
}

/// A cursor that names no stored key (between two keys, before the first, after the
/// last) continues with the next key in byte order.
pub async fn list_cursor_between_keys(ctx: &Ctx) -> CaseResult {
    require(ctx.capability().list, "list")?;
    let all = write_keys(ctx, &["gap/b", "gap/d", "gap/f"]).await?;
    let at = |suffix: &str| {
        Key::new(format!("{}/{suffix}", ctx.root())).map_err(|e| fail(e.to_string()))
    };
    for (cursor, expected) in [
        (at("gap/c")?, all[1..].to_vec()),
        (at("gap/a")?, all.clone()),
        (at("gap/e")?, all[2..].to_vec()),
        (at("gap/g")?, Vec::new()),
        (at("gap/b/x")?, all[1..].to_vec()),
    ] {
        let request = ListRequest::new(ctx.prefix("gap"))
            .with_limit(2)
            .with_cursor(Some(cursor.clone()));
        let got = keys(&pages(ctx, request).await?);
        ensure_eq!(got, expected, "keys after the cursor {cursor}");
    }
    Ok(())
}

/// After overwrites and a delete, each entry carries the key's current version and
/// its current value's size (a tombstone's size is 0).
pub async fn list_entries_current(ctx: &Ctx) -> CaseResult {
    require(ctx.capability().list, "list")?;
    let grown = ctx.key("current/grown");
    let shrunk = ctx.key("current/shrunk");
    let gone = ctx.key("current/gone");
    for (key, first, second) in [
        (&grown, 3usize, 300usize),
        (&shrunk, 500, 5),
        (&gone, 40, 0),
    ] {
        put_expect(
            ctx,
            &Record::new(key.clone(), vec![b'x'; first], ctx.version()),
            PutOutcome::Applied,
        )
        .await?;
        if key == &gone {
            let v = ctx.version();
            ensure_eq!(
                ctx.backend().delete(key, v).await?,
                PutOutcome::Applied,
                "delete {key}"
            );
        } else {
            let r = Record::new(key.clone(), vec![b'y'; second], ctx.version());
            put_expect(ctx, &r, PutOutcome::Applied).await?;
        }
    }
    let page = ctx
        .backend()
        .list(&ListRequest::new(ctx.prefix("current")))
        .await?;
    let entry = |k: &Key| -> Result<&ListEntry, Failure> {
        page.entries
            .iter()
            .find(|e| &e.key == k)
            .ok_or_else(|| fail(format!("{k} is not listed")))
    };
    for (key, size) in [(&grown, 300u64), (&shrunk, 5), (&gone, 0)] {
        let stored = ctx
            .backend()
            .get(key)
            .await?
            .ok_or_else(|| fail(format!("{key} vanished")))?;
        let e = entry(key)?;
        ensure_eq!(
            e.meta.version,
            stored.version(),
            "the listed version of {key}"
        );
        ensure_eq!(e.size, size, "the listed size of {key}");
        ensure_eq!(
            e.meta.tombstone,
            key == &gone,
            "the listed tombstone flag of {key}"
        );
    }
    Ok(())
}

/// `limit` is obeyed for small limits, and a large limit returns everything at once.
pub async fn list_limit_obeyed(ctx: &Ctx) -> CaseResult {
    require(ctx.capability().list, "list")?;
    let names: Vec<String> = (0..12).map(|i| format!("limit/k{i:02}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let all = write_keys(ctx, &refs).await?;
    for limit in [1, 2, 5, 11] {
        let page = ctx
            .backend()
            .list(&ListRequest::new(ctx.prefix("limit")).with_limit(limit))
            .await?;
        ensure_eq!(
            page.entries.len(),
            limit,
            "entries on the first page of limit {limit}"
        );
        ensure!(
            page.next_cursor.is_some(),
            "a first page of {limit} of 12 keys has no cursor"
        );
    }
    let page = ctx
        .backend()
        .list(&ListRequest::new(ctx.prefix("limit")).with_limit(1000))
        .await?;
    let got: Vec<String> = page
        .entries
        .iter()
        .map(|e| e.key.as_str().to_owned())
        .collect();
    ensure_eq!(got, all, "one page of limit 1000");
    ensure!(page.next_cursor.is_none(), "a complete page has a cursor");
    Ok(())
}

/// A prefix with nothing under it lists nothing and no cursor, even when keys sort
/// right next to it (`emptyish`, `empty-`).
pub async fn list_empty_prefix(ctx: &Ctx) -> CaseResult {
    require(ctx.capability().list, "list")?;
    write_keys(ctx, &["emptyish/a", "empty-/b", "emptz"]).await?;
    let page = ctx
        .backend()
        .list(&ListRequest::new(ctx.prefix("empty")).with_limit(5))
        .await?;
    let got: Vec<&str> = page.entries.iter().map(|e| e.key.as_str()).collect();
    ensure!(
        got.is_empty() && page.next_cursor.is_none(),
        "an empty prefix listed {got:?} with cursor {:?}",
        page.next_cursor
    );
    Ok(())
}
