//! mux-dynamodb against a real DynamoDB server (see `common`): racing writers, the
//! table checks at open, batches, and what the store holds.

mod common;

use std::collections::HashSet;
use std::sync::Arc;

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use mux_core::{Backend, BackendExt, ErrorKind, Key, Prefix, PutOutcome, Record, Version};
use mux_dynamodb::{BatchWrites, DynamoDbBackend};

/// 16 distinct pseudo-random versions for `round` (a seeded LCG: reproducible).
fn distinct_versions(round: u64) -> Vec<Version> {
    let mut seed = 0x9E37_79B9_7F4A_7C15u64 ^ round;
    let mut physical = HashSet::new();
    while physical.len() < 16 {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        physical.insert(1_000_000 * (round + 1) + (seed >> 40) % 100_000);
    }
    physical
        .into_iter()
        .map(|p| Version::new(p, 0, 1))
        .collect()
}

/// One round of 16 writers racing on `key` with distinct random versions, all released
/// at once by a barrier, the highest version first. Returns the highest version, each
/// writer's outcome (`None` for a writer that cannot tell) and the version stored
/// afterwards.
async fn race<F, Fut>(
    backend: &DynamoDbBackend,
    key: &Key,
    round: u64,
    write: F,
) -> (Version, Vec<(Version, Option<PutOutcome>)>, Version)
where
    F: Fn(Record) -> Fut,
    Fut: Future<Output = Option<PutOutcome>> + Send + 'static,
{
    let mut versions = distinct_versions(round);
    versions.sort_unstable_by(|a, b| b.cmp(a));
    let highest = versions[0];
    let barrier = Arc::new(tokio::sync::Barrier::new(versions.len()));
    let tasks: Vec<_> = versions
        .iter()
        .map(|&v| {
            let record = Record::new(key.clone(), format!("written at {v}"), v);
            let (barrier, fut) = (barrier.clone(), write(record));
            tokio::spawn(async move {
                barrier.wait().await;
                (v, fut.await)
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for t in tasks {
        outcomes.push(t.await.expect("racing task"));
    }
    let stored = backend.get(key).await.unwrap().expect("stored");
    assert_eq!(
        stored.value().as_ref(),
        format!("written at {}", stored.version()).as_bytes()
    );
    (highest, outcomes, stored.version())
}

/// 16 writers race on one key, five rounds: the highest version ends stored, its write
/// is `Applied`, and every `Superseded` names a version at least the writer's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_racing_writers_end_with_the_highest_version() {
    let backend = common::connect(common::config("race")).await;
    let key = Key::new("tenants/acme/race").unwrap();
    for round in 0..5 {
        let b = Arc::new(backend.clone());
        let (highest, outcomes, stored) = race(&backend, &key, round, move |r| {
            let b = b.clone();
            async move { Some(b.put(&r).await.expect("put")) }
        })
        .await;
        for (v, outcome) in outcomes {
            match outcome.expect("mux tells") {
                PutOutcome::Applied => {}
                PutOutcome::Superseded { stored } => {
                    assert!(stored >= v, "superseded by a lower version: {stored} < {v}")
                }
            }
            if v == highest {
                assert_eq!(outcome, Some(PutOutcome::Applied), "the highest version");
            }
        }
        assert_eq!(stored, highest, "round {round}");
    }
    common::drop_table(&backend).await;
}

/// The same race with the condition left out — raw, unconditional `PutItem`s of the
/// same items — loses the highest version in some round: the check above can fail, and
/// the condition is what makes it pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_race_check_fails_without_the_condition() {
    let backend = common::connect(common::config("race-raw")).await;
    let key = Key::new("tenants/acme/race").unwrap();
    let mut lost = 0;
    for round in 0..8 {
        let b = backend.clone();
        let (highest, _, stored) = race(&backend, &key, round, move |r| {
            let b = b.clone();
            async move {
                b.client()
                    .put_item()
                    .table_name(&b.config().table)
                    .set_item(Some(plain_item(&b, &r)))
                    .send()
                    .await
                    .expect("raw put");
                None
            }
        })
        .await;
        if stored != highest {
            lost += 1;
        }
    }
    assert!(
        lost > 0,
        "unconditional writes kept the highest version in every round"
    );
    common::drop_table(&backend).await;
}

/// The item the README documents, built by hand.
fn plain_item(
    backend: &DynamoDbBackend,
    r: &Record,
) -> std::collections::HashMap<String, AttributeValue> {
    let s = |v: &str| AttributeValue::S(v.to_owned());
    std::collections::HashMap::from([
        ("mux_partition".into(), s(backend.partition_of(r.key()))),
        ("mux_key".into(), s(r.key().as_str())),
        ("mux_version".into(), s(&r.version().to_string())),
        ("mux_crc32".into(), s(&format!("{:08x}", r.meta().checksum))),
        ("mux_tombstone".into(), AttributeValue::Bool(false)),
        (
            "mux_size".into(),
            AttributeValue::N(r.value().len().to_string()),
        ),
        (
            "mux_value".into(),
            AttributeValue::B(Blob::new(r.value().to_vec())),
        ),
    ])
}

/// A batch with stale records and the same key several times: one outcome per record,
/// each key ends at its highest version, and only writes at that version can be the
/// last applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_with_stale_and_repeated_keys() {
    for mode in [BatchWrites::Transaction, BatchWrites::Concurrent] {
        let backend = common::connect(common::config("batch").with_batch_writes(mode)).await;
        let key = |i: usize| Key::new(format!("tenants/t{}/k{i:03}", i % 3)).unwrap();
        // Stored first: every fourth key at a high version.
        let stored: Vec<Record> = (0..150)
            .step_by(4)
            .map(|i| Record::new(key(i), "stored", Version::new(1_000, 0, 0)))
            .collect();
        backend.put_batch(&stored).await.unwrap();
        // Then 150 keys at version 500 (stale for every fourth), and ten of them again.
        let mut batch: Vec<Record> = (0..150)
            .map(|i| Record::new(key(i), "new", Version::new(500, 0, 0)))
            .collect();
        batch.extend(
            (1..150)
                .step_by(15)
                .map(|i| Record::new(key(i), "newer", Version::new(600, 0, 0))),
        );
        let outcomes = backend.put_batch(&batch).await.unwrap();
        assert_eq!(outcomes.len(), batch.len(), "{mode:?}");
        for (r, outcome) in batch.iter().zip(&outcomes) {
            let i: usize = r.key().as_str()[r.key().as_str().len() - 3..]
                .parse()
                .unwrap();
            if i.is_multiple_of(4) {
                assert_eq!(
                    *outcome,
                    PutOutcome::Superseded {
                        stored: Version::new(1_000, 0, 0)
                    },
                    "{mode:?} {}",
                    r.key()
                );
            } else if r.version() == Version::new(600, 0, 0) {
                assert_eq!(*outcome, PutOutcome::Applied, "{mode:?} {}", r.key());
            }
        }
        for i in 0..150 {
            let got = backend.get(&key(i)).await.unwrap().unwrap();
            let expected = match i {
                _ if i % 4 == 0 => "stored",
                _ if i % 15 == 1 => "newer",
                _ => "new",
            };
            assert_eq!(got.value().as_ref(), expected.as_bytes(), "{mode:?} {i}");
        }
        common::drop_table(&backend).await;
    }
}

/// Without `create_table` a missing table fails `open`, naming the table and the fix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_table_is_named_with_the_fix() {
    let config = common::config("missing").with_create_table(false);
    let table = config.table.clone();
    let err = DynamoDbBackend::connect("dynamodb", config)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert!(!err.is_temporary(), "{err}");
    let text = err.to_string();
    for needle in [table.as_str(), "create_table = true", "mux_partition (HASH"] {
        assert!(text.contains(needle), "{text}");
    }
}

/// The partition depth is fixed when a table is first used: another depth is refused,
/// naming both; a table with another key schema is refused too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_keeps_its_partition_depth_and_key_schema() {
    let config = common::config("depth");
    let backend = common::connect(config.clone()).await;
    let err = DynamoDbBackend::connect("dynamodb", config.clone().with_partition_depth(3))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    assert!(
        err.to_string()
            .contains("laid out with partition_depth 2, the config says 3"),
        "{err}"
    );
    common::connect(config).await; // the same depth opens again
    common::drop_table(&backend).await;

    let other = common::config("schema");
    backend
        .client()
        .create_table()
        .table_name(&other.table)
        .attribute_definitions(
            aws_sdk_dynamodb::types::AttributeDefinition::builder()
                .attribute_name("id")
                .attribute_type(aws_sdk_dynamodb::types::ScalarAttributeType::S)
                .build()
                .unwrap(),
        )
        .key_schema(
            aws_sdk_dynamodb::types::KeySchemaElement::builder()
                .attribute_name("id")
                .key_type(aws_sdk_dynamodb::types::KeyType::Hash)
                .build()
                .unwrap(),
        )
        .billing_mode(aws_sdk_dynamodb::types::BillingMode::PayPerRequest)
        .send()
        .await
        .unwrap();
    let err = DynamoDbBackend::connect("dynamodb", other.clone())
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("has the key schema id (HASH)"),
        "{err}"
    );
    backend
        .client()
        .delete_table()
        .table_name(&other.table)
        .send()
        .await
        .unwrap();
}

/// Items that are not mux records (written by someone else) are skipped by listings
/// and refused by `get` as `Corrupt`, naming the problem.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_items_are_skipped_in_listings() {
    let backend = common::connect(common::config("foreign")).await;
    let key = Key::new("tenants/acme/good").unwrap();
    backend
        .put(&Record::new(key.clone(), "v", Version::new(1, 0, 0)))
        .await
        .unwrap();
    backend
        .client()
        .put_item()
        .table_name(&backend.config().table)
        .item("mux_partition", AttributeValue::S("tenants/acme".into()))
        .item("mux_key", AttributeValue::S("tenants/acme/foreign".into()))
        .item("owner", AttributeValue::S("someone else".into()))
        .send()
        .await
        .unwrap();
    let listed = backend
        .list_all(&Prefix::new("tenants").unwrap())
        .await
        .unwrap();
    let keys: Vec<_> = listed.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys, ["tenants/acme/good"]);
    let err = backend
        .get(&Key::new("tenants/acme/foreign").unwrap())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
    assert!(err.to_string().contains("mux_version"), "{err}");
    assert!(backend.purge(&key, Version::new(1, 0, 0)).await.unwrap());
    assert!(backend.get(&key).await.unwrap().is_none());
    common::drop_table(&backend).await;
}

/// The Python with boto3 (`MUX_PYTHON`, or the venv of `cargo xtask services up`).
fn python() -> String {
    std::env::var("MUX_PYTHON").unwrap_or_else(|_| {
        let dir =
            std::env::var("MUX_SERVICES_DIR").unwrap_or_else(|_| "/var/tmp/mux-services".into());
        format!("{dir}/venv/bin/python")
    })
}

/// Reads items with boto3 and prints them as JSON, binary values in hex:
/// `{key: {attribute: {type: value}}}`.
const BOTO3_READER: &str = r#"
import json, sys, boto3
endpoint, region, key_id, secret, table, keys = sys.argv[1:7]
client = boto3.client("dynamodb", endpoint_url=endpoint, region_name=region,
                      aws_access_key_id=key_id, aws_secret_access_key=secret)
def plain(value):
    (kind, v), = value.items()
    if kind == "B":
        return {"B": v.hex()}
    if kind == "M":
        return {"M": {n: plain(x) for n, x in v.items()}}
    return {kind: v}
out = {}
for partition, key in json.loads(keys):
    item = client.get_item(TableName=table, ConsistentRead=True,
                           Key={"mux_partition": {"S": partition}, "mux_key": {"S": key}})["Item"]
    out[key] = {name: plain(v) for name, v in item.items()}
print(json.dumps(out))
"#;

/// boto3 — an independent client — reads what mux wrote and finds the value and the
/// attributes the README documents, and nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boto3_reads_the_documented_item_layout() {
    use serde_json::{Value, json};
    let backend = common::connect(common::config("plain")).await;
    let records = [
        Record::new(
            Key::new("tenants/acme/tenantconfig/limits").unwrap(),
            r#"{"rps":100}"#,
            Version::new(1_700_000_000_000, 3, 7),
        )
        .with_content_type("application/json")
        .with_tag("class", "config")
        .with_tag("city", "Zürich"),
        Record::new(
            Key::new("blobs/raw bytes").unwrap(),
            (0..=255u8).collect::<Vec<u8>>(),
            Version::new(1_700_000_000_001, 0, 1),
        ),
        Record::new(
            Key::new("tenants/acme/empty").unwrap(),
            "",
            Version::new(1_700_000_000_002, 0, 1),
        ),
        Record::tombstone(
            Key::new("tenants/acme/old").unwrap(),
            Version::new(1_700_000_000_003, 0, 2),
        ),
    ];
    for r in &records {
        assert!(backend.put(r).await.unwrap().is_applied());
    }
    let keys: Vec<(&str, &str)> = records
        .iter()
        .map(|r| (backend.partition_of(r.key()), r.key().as_str()))
        .collect();
    let config = common::config("unused");
    let out = std::process::Command::new(python())
        .args(["-c", BOTO3_READER, &common::endpoint()])
        .arg(config.region.as_deref().unwrap())
        .arg(config.access_key_id.as_deref().unwrap())
        .arg(config.secret_access_key.as_deref().unwrap())
        .arg(&backend.config().table)
        .arg(serde_json::to_string(&keys).unwrap())
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {} (cargo xtask services up --install): {e}",
                python()
            )
        });
    assert!(
        out.status.success(),
        "boto3 failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: Value = serde_json::from_slice(&out.stdout).expect("the script prints JSON");
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    for r in &records {
        let key = r.key().as_str();
        let mut expected = json!({
            "mux_partition": {"S": backend.partition_of(r.key())},
            "mux_key": {"S": key},
            "mux_version": {"S": r.version().to_string()},
            "mux_crc32": {"S": format!("{:08x}", r.meta().checksum)},
            "mux_tombstone": {"BOOL": r.is_tombstone()},
            "mux_size": {"N": r.value().len().to_string()},
        });
        if !r.value().is_empty() {
            expected["mux_value"] = json!({"B": hex(r.value())});
        }
        if let Some(ct) = &r.meta().content_type {
            expected["mux_content_type"] = json!({"S": ct});
        }
        if !r.meta().tags.is_empty() {
            let tags: serde_json::Map<String, Value> = r
                .meta()
                .tags
                .iter()
                .map(|(n, v)| (n.clone(), json!({"S": v})))
                .collect();
            expected["mux_tags"] = json!({"M": tags});
        }
        assert_eq!(seen[key], expected, "{key}");
    }
    assert_eq!(
        seen["tenants/acme/tenantconfig/limits"]["mux_partition"]["S"],
        "tenants/acme"
    );
    common::drop_table(&backend).await;
}
