//! The block sums against the definition: after random puts, deletes and purges over
//! thousands of keys (dozens of blocks, boundary keys written, overwritten and purged),
//! every digest answered from the sums equals the one computed by listing, over
//! prefixes, bounds and both kinds of splits; and a table rebuilt from the records
//! holds the same sums as the one kept up to date.

use mux_core::digest::{DigestRequest, KeyRange, Splits};
use mux_core::{Backend, BackendExt, Key, Prefix, Record, Version, digest_by_listing};
use redb::{ReadableDatabase, ReadableTable};

use super::*;
use crate::RedbBackend;

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Keys in a few directories, with neighbours that sort between a prefix's own key and
/// its children (`d1!x` between `d1` and `d1/…`).
fn key(rng: &mut Rng) -> Key {
    let n = rng.below(10_000);
    let text = match n % 10 {
        0 => format!("d{}", n % 3),
        1 => format!("d{}!{n}", n % 3),
        _ => format!("d{}/{n:05}", n % 3),
    };
    Key::new(text).unwrap()
}

async fn both(store: &RedbBackend, request: &DigestRequest) {
    let native = store.digest(request).await.unwrap();
    let listed = digest_by_listing(store, request).await.unwrap();
    assert_eq!(native, listed, "{request:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_sums_answer_exactly_what_a_listing_does() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mux.redb");
    let store = RedbBackend::open("redb", &path).unwrap();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for round in 0..3u64 {
        let mut batch = Vec::new();
        for i in 0..4000u64 {
            let k = key(&mut rng);
            let v = Version::new(1_000 + round * 10_000 + i, 0, 1);
            match rng.below(10) {
                0 => {
                    store.delete(&k, v).await.unwrap();
                }
                1 => {
                    store.purge(&k, v).await.unwrap();
                }
                _ => batch.push(Record::new(k, format!("v{i}"), v)),
            }
            if batch.len() == 64 {
                store.put_batch(&batch).await.unwrap();
                batch.clear();
            }
        }
        store.put_batch(&batch).await.unwrap();
        let all = store.list_all(&Prefix::all()).await.unwrap();
        let keys: Vec<Key> = all.iter().map(|e| e.key.clone()).collect();
        let blocks = keys.iter().filter(|k| is_boundary(k.as_str())).count();
        assert!(
            blocks > 20,
            "only {blocks} blocks among {} keys",
            keys.len()
        );
        for prefix in ["", "d1", "d2/", "d0/01"] {
            let range = KeyRange::prefix(Prefix::new(prefix).unwrap());
            for n in [1, 7, 64, 500, 100_000] {
                let request = DigestRequest {
                    range: range.clone(),
                    splits: Splits::Every(n),
                };
                both(&store, &request).await;
            }
            let under: Vec<Key> = keys
                .iter()
                .filter(|k| range.contains(k.as_str()))
                .cloned()
                .collect();
            if under.len() > 10 {
                // Splits at stored keys, every 37th, and bounded ranges between them.
                let at: Vec<Key> = under.iter().step_by(37).cloned().collect();
                let request = DigestRequest {
                    range: range.clone(),
                    splits: Splits::At(at),
                };
                both(&store, &request).await;
                for _ in 0..20 {
                    let a = rng.below(under.len() as u64) as usize;
                    let b = rng.below(under.len() as u64) as usize;
                    let (a, b) = (a.min(b), a.max(b));
                    let bounded = range.between(Some(under[a].clone()), Some(under[b].clone()));
                    let request = DigestRequest {
                        range: bounded.clone(),
                        splits: Splits::Every(1 + rng.below(300)),
                    };
                    both(&store, &request).await;
                    let inner: Vec<Key> = under[a + 1..=b].iter().step_by(11).cloned().collect();
                    let request = DigestRequest {
                        range: bounded,
                        splits: Splits::At(inner),
                    };
                    both(&store, &request).await;
                }
            }
        }
    }
    // A table rebuilt from the records equals the one kept by the writes.
    let kept = sums(&store);
    drop(store);
    {
        let db = redb::Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        txn.delete_table(BLOCKS).unwrap();
        txn.commit().unwrap();
    }
    let reopened = RedbBackend::open("redb", &path).unwrap();
    assert_eq!(sums(&reopened), kept);
}

fn sums(store: &RedbBackend) -> Vec<(String, Vec<u8>)> {
    let txn = store.database().begin_read().unwrap();
    let table = txn.open_table(BLOCKS).unwrap();
    table
        .iter()
        .unwrap()
        .map(|item| {
            let (k, v) = item.unwrap();
            (k.value().to_owned(), v.value().to_vec())
        })
        .collect()
}
