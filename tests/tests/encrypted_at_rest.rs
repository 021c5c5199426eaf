//! Encryption at rest over real stores: a route sealed with a keyring over PostgreSQL,
//! Redis and S3 (moto), and one sealed with AWS KMS keys (moto's KMS). Each store's own
//! client — psql, redis-cli, boto3 — finds no plaintext, only sealed values; values
//! swapped between keys in a store fail to open; rotating the key keeps old values
//! readable.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::sync::Arc;

use mux::encrypt::{Envelope, KeysSpec};
use mux::{
    Backend, ErrorKind, Key, ListRequest, Mux, ReadOptions, Record, Role, RouteConfig,
    WriteConsistency,
};

/// A value no store could hold by chance, and its hex form (psql prints bytea as hex).
fn secret(tag: &str) -> (String, String) {
    let s = format!("PLAINTEXT-{tag}-{}", std::process::id());
    let hex: String = s.bytes().map(|b| format!("{b:02x}")).collect();
    (s, hex)
}

fn keyring(dir: &std::path::Path, current: &str) -> std::path::PathBuf {
    let path = dir.join("keyring.toml");
    let mut f = std::fs::File::create(&path).unwrap();
    writeln!(
        f,
        "current = \"{current}\"\n[keys]\n\"2026-11\" = \"AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=\"\n\"2026-12\" = \"AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI=\""
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

fn keyring_spec(path: &std::path::Path) -> KeysSpec {
    toml::from_str(&format!(
        "name = \"secrets\"\nkind = \"keyring\"\npath = \"{}\"",
        path.display()
    ))
    .unwrap()
}

struct Stores {
    pg: Arc<dyn Backend>,
    redis: Arc<dyn Backend>,
    s3: Arc<dyn Backend>,
    table: String,
    namespace: String,
    bucket: String,
}

async fn stores() -> Stores {
    let pid = std::process::id();
    let table = format!("mux_encrypt_{pid}");
    let namespace = format!("mux-encrypt-{pid}");
    let bucket = format!("mux-encrypt-{pid}");
    let dir = std::env::temp_dir();
    let pg = mux_tests::spec("postgres", &dir)
        .unwrap()
        .with("table", table.as_str());
    let redis = mux_tests::spec("redis", &dir)
        .unwrap()
        .with("namespace", namespace.as_str());
    let s3 = mux_tests::spec("s3", &dir)
        .unwrap()
        .with("bucket", bucket.as_str());
    let open = |spec: mux::BackendSpec| async move {
        let what = spec.kind.clone();
        let b = mux::open(&spec).await.unwrap();
        b.health()
            .await
            .unwrap_or_else(|e| panic!("{what} is required (cargo xtask services up): {e}"));
        b
    };
    Stores {
        pg: open(pg).await,
        redis: open(redis).await,
        s3: open(s3).await,
        table,
        namespace,
        bucket,
    }
}

async fn mux_over(stores: &Stores, envelope: Arc<Envelope>) -> Mux {
    Mux::builder()
        .backend(stores.pg.clone())
        .backend(stores.redis.clone())
        .backend(stores.s3.clone())
        .sealer(envelope.clone())
        .route(
            RouteConfig::new("secrets/")
                .backend("postgres", Role::Primary)
                .backend("redis", Role::Replica)
                .backend("s3", Role::Replica)
                .write(WriteConsistency::All)
                .encrypt(envelope_name(&envelope)),
        )
        .default_route(RouteConfig::new("").backend("postgres", Role::Primary))
        .build()
        .unwrap()
}

fn envelope_name(e: &Envelope) -> String {
    mux::seal::Sealer::name(e).to_owned()
}

use mux_tests::run_command as run;

/// What psql shows of the table: every row, bytea as hex.
fn psql_dump(table: &str) -> String {
    run(Command::new("psql").arg(mux_tests::postgres_url()).args([
        "-At",
        "-c",
        &format!("SELECT * FROM {table}"),
    ]))
}

/// What redis-cli shows of every record under the namespace (each one string).
fn redis_dump(namespace: &str) -> String {
    let url = mux_tests::redis_url();
    let keys = run(Command::new("redis-cli").args([
        "-u",
        &url,
        "--scan",
        "--pattern",
        &format!("{namespace}:r:*"),
    ]));
    let mut all = String::new();
    for key in keys.lines().filter(|k| !k.is_empty()) {
        all.push_str(&run(
            Command::new("redis-cli").args(["-u", &url, "GET", key])
        ));
    }
    all
}

const BOTO3_DUMP: &str = r#"
import json, sys, boto3
endpoint, bucket = sys.argv[1:3]
s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                  aws_access_key_id="test", aws_secret_access_key="test")
bodies = {}
for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
    for o in page.get("Contents", []):
        bodies[o["Key"]] = s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read().hex()
print(json.dumps(bodies))
"#;

/// Object key → body (hex) for every object in the bucket, as boto3 reads them.
fn boto3_dump(bucket: &str) -> serde_json::Map<String, serde_json::Value> {
    let v = mux_tests::run_python(BOTO3_DUMP, &[&mux_tests::s3_endpoint(), bucket]);
    v.as_object().unwrap().clone()
}

fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stores_own_clients_find_no_plaintext_and_swapped_values_fail() {
    let dir = tempfile::tempdir().unwrap();
    let ring = keyring(dir.path(), "2026-11");
    let stores = stores().await;
    let envelope = keyring_spec(&ring).open().await.unwrap();
    let mux = mux_over(&stores, envelope).await;

    let (a_plain, a_hex) = secret("a");
    let (b_plain, b_hex) = secret("b");
    let a = Key::new("secrets/a").unwrap();
    let b = Key::new("secrets/b").unwrap();
    mux.put(a.clone(), a_plain.clone()).await.unwrap();
    mux.put(b.clone(), b_plain.clone()).await.unwrap();
    assert_eq!(
        mux.get(&a).await.unwrap().unwrap().value(),
        a_plain.as_bytes()
    );
    // Listings report the plain size.
    let page = mux
        .list(
            &ListRequest::new(mux::Prefix::new("secrets").unwrap()),
            &ReadOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(page.entries.len(), 2);
    assert_eq!(page.entries[0].size, a_plain.len() as u64);

    // psql, redis-cli and boto3 see sealed values ("MXE1…"), never the plaintext.
    let pg = psql_dump(&stores.table);
    let redis = redis_dump(&stores.namespace);
    let s3 = boto3_dump(&stores.bucket);
    assert!(
        pg.contains("secrets/a") && pg.contains(&hex("MXE1")),
        "psql saw: {pg}"
    );
    assert!(redis.contains("MXE1"), "redis-cli saw: {redis}");
    assert_eq!(s3.len(), 2, "boto3 saw: {s3:?}");
    for body in s3.values() {
        assert!(body.as_str().unwrap().starts_with(&hex("MXE1")), "{body}");
    }
    let s3_text = serde_json::to_string(&s3).unwrap();
    for (plain, hexed) in [(&a_plain, &a_hex), (&b_plain, &b_hex)] {
        for (client, seen) in [("psql", &pg), ("redis-cli", &redis), ("boto3", &s3_text)] {
            assert!(
                !seen.contains(plain.as_str()) && !seen.contains(hexed.as_str()),
                "{client} found the plaintext {plain}"
            );
        }
    }

    // Someone with write access to PostgreSQL copies a's sealed value over b's (newer
    // version, so the store keeps it): reading b from PostgreSQL fails to decrypt
    // (Corrupt), it never returns a's value.
    let sealed_a = stores.pg.get(&a).await.unwrap().unwrap();
    let sealed_b = stores.pg.get(&b).await.unwrap().unwrap();
    let forged = sealed_b
        .clone()
        .with_value(sealed_a.value().clone())
        .with_version(mux.clock().now());
    stores.pg.put(&forged).await.unwrap();
    let primary_only = ReadOptions {
        policy: Some(mux::ReadPolicy::Primary),
        ..Default::default()
    };
    let e = mux.get_with(&b, &primary_only).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}");

    // Rotation: the keyring's current key changes (and the Mux is rebuilt, as muxd
    // does on reload); old values still open, new ones use the new key.
    let ring = keyring(dir.path(), "2026-12");
    let rotated = mux_over(&stores, keyring_spec(&ring).open().await.unwrap()).await;
    assert_eq!(
        rotated.get(&a).await.unwrap().unwrap().value(),
        a_plain.as_bytes()
    );
    let c = Key::new("secrets/c").unwrap();
    rotated.put(c.clone(), "after rotation").await.unwrap();
    let stored_c = stores.redis.get(&c).await.unwrap().unwrap();
    assert_eq!(Envelope::key_id_of(stored_c.value()), Some("2026-12"));
    let stored_a = stores.redis.get(&a).await.unwrap().unwrap();
    assert_eq!(Envelope::key_id_of(stored_a.value()), Some("2026-11"));

    for k in [&a, &b, &c] {
        for s in [&stores.pg, &stores.redis, &stores.s3] {
            s.purge(k, mux::Version::new(u64::MAX >> 16, 0, 0))
                .await
                .unwrap();
        }
    }
    run(Command::new("psql")
        .arg(mux_tests::postgres_url())
        .args(["-c", &format!("DROP TABLE IF EXISTS {}", stores.table)]));
}

const CREATE_KMS_KEY: &str = r#"
import json, sys, boto3
kms = boto3.client("kms", endpoint_url=sys.argv[1], region_name="us-east-1",
                   aws_access_key_id="test", aws_secret_access_key="test")
print(json.dumps(kms.create_key(Description="mux encryption test")["KeyMetadata"]["Arn"]))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kms_keys_from_moto_seal_and_rotate() {
    let endpoint = mux_tests::s3_endpoint();
    let create = || {
        mux_tests::run_python(CREATE_KMS_KEY, &[&endpoint])
            .as_str()
            .unwrap()
            .to_owned()
    };
    let (first, second) = (create(), create());
    let spec = |key: &str| -> KeysSpec {
        toml::from_str(&format!(
            "name = \"pii\"\nkind = \"kms\"\nkey_id = \"{key}\"\nendpoint = \"{endpoint}\"\nregion = \"us-east-1\"\naccess_key_id = \"test\"\nsecret_access_key = \"test\""
        ))
        .unwrap()
    };
    let store = Arc::new(mux::MemoryBackend::new("mem"));
    let build = |envelope: Arc<Envelope>| {
        Mux::builder()
            .backend(store.clone())
            .sealer(envelope)
            .default_route(
                RouteConfig::new("")
                    .backend("mem", Role::Primary)
                    .encrypt("pii"),
            )
            .build()
            .unwrap()
    };
    let mux = build(spec(&first).open().await.unwrap());
    let (plain, _) = secret("kms");
    let k = Key::new("tenantconfig/acme/token").unwrap();
    mux.put(k.clone(), plain.clone()).await.unwrap();
    let stored = store.get(&k).await.unwrap().unwrap();
    assert_eq!(Envelope::key_id_of(stored.value()), Some(first.as_str()));
    assert!(
        !stored
            .value()
            .windows(plain.len())
            .any(|w| w == plain.as_bytes())
    );
    assert_eq!(
        mux.get(&k).await.unwrap().unwrap().value(),
        plain.as_bytes()
    );

    // Rotate to the second KMS key: new writes name it; the first key's values still
    // open (KMS decrypts their data keys).
    let rotated = build(spec(&second).open().await.unwrap());
    assert_eq!(
        rotated.get(&k).await.unwrap().unwrap().value(),
        plain.as_bytes()
    );
    let k2 = Key::new("tenantconfig/acme/token2").unwrap();
    rotated.put(k2.clone(), "second").await.unwrap();
    let stored2 = store.get(&k2).await.unwrap().unwrap();
    assert_eq!(Envelope::key_id_of(stored2.value()), Some(second.as_str()));

    // A record whose wrapped key KMS cannot decrypt fails, naming KMS.
    let mut bytes = stored.value().to_vec();
    bytes[4 + 1 + 96 + 4 + 10] ^= 0xff;
    let broken = Record::new(k.clone(), bytes, mux.clock().now());
    store.put(&broken).await.unwrap();
    let e = rotated.get(&k).await.unwrap_err();
    assert!(e.to_string().contains("KMS"), "{e}");
}
