//! Write edge cases: the same version twice, many writers on many keys, batches
//! beyond any store's native limit, and how errors are classified.

use std::collections::BTreeMap;

use mux_core::{ErrorKind, Key, ListRequest, PutOutcome, Record, Version};

use super::{ensure, ensure_eq, fail, put_expect};
use crate::{CaseResult, Ctx, Failure};

/// Writing a version the store already holds — even with a different value — is
/// `Superseded` and keeps the first value (a replay must not re-apply).
pub async fn same_version_keeps_first(ctx: &Ctx) -> CaseResult {
    let key = ctx.key("same/version");
    let v = ctx.version();
    put_expect(
        ctx,
        &Record::new(key.clone(), "first", v),
        PutOutcome::Applied,
    )
    .await?;
    put_expect(
        ctx,
        &Record::new(key.clone(), "second", v),
        PutOutcome::Superseded { stored: v },
    )
    .await?;
    let got = ctx
        .backend()
        .get(&key)
        .await?
        .ok_or_else(|| fail("the record vanished"))?;
    ensure!(
        got.value().as_ref() == b"first",
        "a same-version write replaced the value with {:?}",
        String::from_utf8_lossy(got.value())
    );
    ensure_eq!(
        ctx.backend().delete(&key, v).await?,
        PutOutcome::Superseded { stored: v },
        "a tombstone at the stored version"
    );
    ensure!(
        !ctx.backend()
            .get(&key)
            .await?
            .is_some_and(|r| r.is_tombstone()),
        "a same-version tombstone deleted the record"
    );
    Ok(())
}

/// 8 writers × 24 keys at once: the writers go through the keys in the same order, so
/// every key sees 8 writes at nearly the same moment, with the versions dealt out to
/// the writers at random per key. Every key ends with its highest version and that
/// version's value.
pub async fn many_writers_many_keys(ctx: &Ctx) -> CaseResult {
    let keys: Vec<Key> = (0..24).map(|i| ctx.key(&format!("many/k{i:02}"))).collect();
    // versions[k][w]: writer w's version for key k, dealt at random.
    let versions: Vec<Vec<Version>> = keys
        .iter()
        .map(|_| {
            let mut vs: Vec<Version> = (0..8).map(|_| ctx.version()).collect();
            // A different deal per key (`shuffle` repeats its permutation).
            vs.sort_by_key(|v| ctx.random(v.physical_ms() ^ (u64::from(v.logical()) << 40)));
            vs
        })
        .collect();
    let mut order: Vec<usize> = (0..keys.len()).collect();
    ctx.shuffle(&mut order);
    let mut tasks = Vec::new();
    let per_writer: Vec<Vec<Record>> = (0..8usize)
        .map(|w| {
            order
                .iter()
                .map(|&k| Record::new(keys[k].clone(), versions[k][w].to_string(), versions[k][w]))
                .collect()
        })
        .collect();
    for writes in per_writer {
        let backend = ctx.backend_arc();
        tasks.push(tokio::spawn(async move {
            for r in &writes {
                backend.put(r).await?;
            }
            Ok::<_, mux_core::Error>(())
        }));
    }
    for t in tasks {
        t.await
            .map_err(|e| fail(format!("writer task failed: {e}")))??;
    }
    for (k, key) in keys.iter().enumerate() {
        let highest = *versions[k].iter().max().expect("8 versions");
        let got = ctx
            .backend()
            .get(key)
            .await?
            .ok_or_else(|| fail(format!("{key} is missing")))?;
        ensure_eq!(
            got.version(),
            highest,
            "the version of {key} after 8 racing writers"
        );
        ensure!(
            got.value().as_ref() == highest.to_string().as_bytes(),
            "{key} holds the value of another version"
        );
    }
    Ok(())
}

/// A batch of 250 records — more than DynamoDB's 25 (BatchWriteItem) or 100
/// (TransactWriteItems), the usual native limits — gets one correct outcome per record,
/// in order.
pub async fn batch_beyond_native_limit(ctx: &Ctx) -> CaseResult {
    let mut records = Vec::new();
    let mut expected = Vec::new();
    // Every third key already holds a higher version: that record is superseded.
    let mut higher = BTreeMap::new();
    for i in 0..250 {
        let key = ctx.key(&format!("bigbatch/k{i:04}"));
        let v = ctx.version();
        if i % 3 == 0 {
            higher.insert(key.clone(), v);
        }
        records.push(Record::new(key, format!("v{i}"), v));
    }
    for (key, stored) in higher.iter_mut() {
        let newer = ctx.version();
        put_expect(
            ctx,
            &Record::new(key.clone(), "newer", newer),
            PutOutcome::Applied,
        )
        .await?;
        *stored = newer;
    }
    for r in &records {
        expected.push(match higher.get(r.key()) {
            Some(stored) => PutOutcome::Superseded { stored: *stored },
            None => PutOutcome::Applied,
        });
    }
    let got = ctx.backend().put_batch(&records).await?;
    ensure_eq!(got.len(), records.len(), "outcomes for a batch of 250");
    for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
        ensure_eq!(*g, *e, "the outcome of record {i} ({})", records[i].key());
    }
    for (i, r) in records.iter().enumerate().step_by(7) {
        let stored = ctx
            .backend()
            .get(r.key())
            .await?
            .ok_or_else(|| fail(format!("{} is missing", r.key())))?;
        let want: &[u8] = if i % 3 == 0 { b"newer" } else { r.value() };
        ensure!(
            stored.value().as_ref() == want,
            "record {i} holds the wrong value"
        );
    }
    Ok(())
}

/// Errors are classified so a coordinator can act on them: a value over the limit and
/// a zero list limit are permanent (retrying cannot help), name the backend and the
/// operation.
pub async fn errors_are_classified(ctx: &Ctx) -> CaseResult {
    let name = ctx.backend().info().name.to_string();
    let mut checked = 0;
    if let Some(max) = ctx.capability().max_value_size.filter(|m| *m <= 64 << 20) {
        let key = ctx.key("classified/big");
        match ctx
            .backend()
            .put(&Record::new(key, vec![0u8; max + 1], ctx.version()))
            .await
        {
            Ok(o) => return Err(fail(format!("a value over the limit was {o:?}"))),
            Err(e) => {
                ensure_eq!(
                    e.kind(),
                    ErrorKind::TooLarge,
                    "kind of a too-large write ({e})"
                );
                ensure!(
                    !e.is_temporary(),
                    "a too-large write must be permanent: {e}"
                );
                ensure_eq!(
                    e.backend(),
                    Some(name.as_str()),
                    "the backend a too-large error names ({e})"
                );
                ensure!(
                    e.operation().is_some(),
                    "a too-large error names no operation: {e}"
                );
            }
        }
        checked += 1;
    }
    if ctx.capability().list {
        match ctx
            .backend()
            .list(&ListRequest::new(ctx.prefix("classified")).with_limit(0))
            .await
        {
            Ok(_) => return Err(fail("list with limit 0 succeeded")),
            Err(e) => {
                ensure_eq!(
                    e.kind(),
                    ErrorKind::InvalidInput,
                    "kind of a zero limit ({e})"
                );
                ensure!(!e.is_temporary(), "a zero limit must be permanent: {e}");
                ensure_eq!(
                    e.backend(),
                    Some(name.as_str()),
                    "the backend a zero-limit error names ({e})"
                );
            }
        }
        checked += 1;
    }
    if checked == 0 {
        return Err(Failure::Skipped(
            "no `max_value_size` up to 64 MiB and no `list`: nothing to provoke".into(),
        ));
    }
    Ok(())
}
