//! Range digests are the documented bytes, however the store computes them.

use mux_core::digest::{ChunkBuilder, DigestRequest, KeyRange, Splits};
use mux_core::{Key, PutOutcome, Record, digest_by_listing};

use super::{ensure_eq, fail, put_expect};
use crate::{CaseResult, Ctx, Failure};

/// `digest` answers, for whole ranges, split keys (stored and between keys),
/// every-n cuts and bounded ranges, exactly the chunks computed here from the records
/// written (so a native implementation and the listing default agree byte for byte);
/// a prefix keeps to whole segments (`a/b` never digests `a/bc`).
pub async fn digest_matches_listing(ctx: &Ctx) -> CaseResult {
    if !ctx.capability().list {
        return Err(Failure::Skipped("no `list`".into()));
    }
    let suffixes: Vec<String> = (0..24)
        .map(|i| format!("digest/a/b/{i:02}"))
        .chain(
            [
                "digest/a/b",
                "digest/a/bc",
                "digest/a/b-c",
                "digest/a/b/é",
                "digest/a/b/日本",
            ]
            .map(String::from),
        )
        .collect();
    let mut written: Vec<(Key, Record)> = Vec::new();
    for (i, suffix) in suffixes.iter().enumerate() {
        let key = ctx.key(suffix);
        let live = Record::new(key.clone(), format!("value-{i}"), ctx.version());
        put_expect(ctx, &live, PutOutcome::Applied).await?;
        let last = if i % 5 == 2 {
            let tomb = Record::tombstone(key.clone(), ctx.version());
            put_expect(ctx, &tomb, PutOutcome::Applied).await?;
            tomb
        } else {
            live
        };
        written.push((key, last));
    }
    written.sort_by(|a, b| a.0.cmp(&b.0));
    let prefix = ctx.prefix("digest/a/b");
    let range = KeyRange::prefix(prefix.clone());
    let k = |s: &str| ctx.key(s);
    let cases = [
        DigestRequest::whole(range.clone()),
        DigestRequest::whole(KeyRange::prefix(ctx.prefix("digest/a/b/"))),
        DigestRequest::whole(KeyRange::prefix(ctx.prefix("digest/none"))),
        DigestRequest {
            range: range.clone(),
            splits: Splits::At(vec![
                k("digest/a/b/03"),
                k("digest/a/b/035"),
                k("digest/a/b/20"),
            ]),
        },
        DigestRequest {
            range: range.between(Some(k("digest/a/b/05")), Some(k("digest/a/b/17"))),
            splits: Splits::At(vec![k("digest/a/b/10")]),
        },
        DigestRequest {
            range: range.clone(),
            splits: Splits::Every(1),
        },
        DigestRequest {
            range: range.clone(),
            splits: Splits::Every(4),
        },
        DigestRequest {
            range: range.clone(),
            splits: Splits::Every(27),
        },
        DigestRequest {
            range: range.between(Some(k("digest/a/b/01")), None),
            splits: Splits::Every(7),
        },
    ];
    for request in &cases {
        let mut expected = ChunkBuilder::new(request).map_err(|e| fail(e.to_string()))?;
        for (key, record) in &written {
            if request.range.contains(key.as_str()) {
                expected.push(key, record.version(), record.is_tombstone());
            }
        }
        let expected = expected.finish();
        let got = ctx.backend().digest(request).await?;
        ensure_eq!(got, expected, "the digest chunks of {request:?}");
        let listed = digest_by_listing(ctx.backend(), request).await?;
        ensure_eq!(listed, expected, "the listing-based digest of {request:?}");
    }
    Ok(())
}
