//! Keys a store could fold together or cut short stay distinct and whole.

use mux_core::{ErrorKind, Key, ListRequest, MAX_KEY_LEN, PutOutcome, Record};

use super::{ensure, ensure_eq, fail, put_expect};
use crate::{CaseResult, Ctx};

/// Keys that case-insensitive or accent-insensitive collations, trailing-space
/// padding, Unicode normalisation or name escaping could fold into one: each keeps
/// its own value, and lists as its own entry.
pub async fn keys_that_fold_stay_distinct(ctx: &Ctx) -> CaseResult {
    let suffixes = [
        "fold/key",
        "fold/Key",
        "fold/KEY", // case
        "fold/a",
        "fold/a ",
        "fold/a  ", // trailing spaces (PAD SPACE)
        "fold/e",
        "fold/é",
        "fold/e\u{301}", // accents; NFC vs NFD
        "fold/ss",
        "fold/ß", // German sharp s folds to "ss"
        "fold/x_y",
        "fold/x-y",
        "fold/x.y",
        "fold/x%2Fy",
        "fold/x%2fy", // escapes
        "fold/ﬁ",
        "fold/fi",
        "fold/ｆｉ", // ligature and full-width
        "fold/i",
        "fold/ı",
        "fold/İ", // dotless and dotted i
    ];
    let mut keys = Vec::new();
    for (i, suffix) in suffixes.iter().enumerate() {
        let key = ctx.key(suffix);
        put_expect(
            ctx,
            &Record::new(key.clone(), format!("value-{i}"), ctx.version()),
            PutOutcome::Applied,
        )
        .await?;
        keys.push(key);
    }
    for (i, key) in keys.iter().enumerate() {
        let got = ctx
            .backend()
            .get(key)
            .await?
            .ok_or_else(|| fail(format!("{key:?} is missing")))?;
        ensure_eq!(got.key(), key, "the key read back for {key:?}");
        ensure!(
            got.value().as_ref() == format!("value-{i}").as_bytes(),
            "{key:?} holds {:?}: another key's write replaced it",
            String::from_utf8_lossy(got.value())
        );
    }
    if ctx.capability().list {
        let page = ctx
            .backend()
            .list(&ListRequest::new(ctx.prefix("fold")))
            .await?;
        let mut expected: Vec<&str> = keys.iter().map(Key::as_str).collect();
        expected.sort();
        let got: Vec<&str> = page.entries.iter().map(|e| e.key.as_str()).collect();
        ensure_eq!(got, expected, "the folding keys listed");
    }
    Ok(())
}

/// Keys up to mux's limit ([`MAX_KEY_LEN`] bytes, multi-byte characters included)
/// either round-trip whole or are refused as invalid input or too large — never
/// truncated: two long keys that differ only at the end stay two keys.
pub async fn long_keys(ctx: &Ctx) -> CaseResult {
    let base = format!("{}/long/", ctx.root());
    let mut stored = Vec::new();
    for (i, filler) in ["a", "é", "😀"].iter().enumerate() {
        for end in ["1", "2"] {
            let mut text = base.clone();
            while text.len() + filler.len() + end.len() <= MAX_KEY_LEN {
                text.push_str(filler);
            }
            text.push_str(end);
            let key = Key::new(&text)
                .map_err(|e| fail(format!("the suite built an invalid key: {e}")))?;
            let key = ctx.key(&key.as_str()[ctx.root().len() + 1..]);
            let value = format!("{i}-{end}");
            match ctx
                .backend()
                .put(&Record::new(key.clone(), value.clone(), ctx.version()))
                .await
            {
                Ok(PutOutcome::Applied) => stored.push((key, value)),
                Ok(other) => {
                    return Err(fail(format!(
                        "a fresh {}-byte key was {other:?}",
                        key.as_str().len()
                    )));
                }
                Err(e) if matches!(e.kind(), ErrorKind::InvalidInput | ErrorKind::TooLarge) => {
                    ensure!(
                        !e.is_temporary(),
                        "refusing a long key must be permanent: {e}"
                    );
                    ensure!(
                        ctx.backend()
                            .get(&key)
                            .await
                            .map(|r| r.is_none())
                            .unwrap_or(true),
                        "a refused key left a record behind"
                    );
                }
                Err(e) => return Err(fail(format!("a {}-byte key: {e}", key.as_str().len()))),
            }
        }
    }
    for (key, value) in &stored {
        let got = ctx
            .backend()
            .get(key)
            .await?
            .ok_or_else(|| fail(format!("a {}-byte key is missing", key.as_str().len())))?;
        ensure_eq!(got.key(), key, "the long key read back");
        ensure!(
            got.value().as_ref() == value.as_bytes(),
            "a {}-byte key holds {:?}, expected {value:?} (truncated keys collide)",
            key.as_str().len(),
            String::from_utf8_lossy(got.value())
        );
    }
    Ok(())
}
