//! Tenant erasure through muxd (`DELETE /v1/admin/tenants/{t}`) over PostgreSQL, Redis
//! and S3 (moto): afterwards psql, redis-cli and boto3 find nothing of the tenant —
//! live records and tombstones alike — while another tenant's records stay.

use std::process::Command;

use mux::{Key, Tenant, WriteOptions};

use mux_tests::run_command as run;

const BOTO3_KEYS: &str = r#"
import json, sys, boto3
endpoint, bucket = sys.argv[1:3]
s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                  aws_access_key_id="test", aws_secret_access_key="test")
keys = []
for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
    keys += [o["Key"] for o in page.get("Contents", [])]
print(json.dumps(keys))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erased_tenant_is_gone_from_every_store() {
    let pid = std::process::id();
    let (table, namespace, bucket) = (
        format!("mux_erase_{pid}"),
        format!("mux-erase-{pid}"),
        format!("mux-erase-{pid}"),
    );
    let dir = tempfile::tempdir().unwrap();
    let mut config = muxd::ServerConfig::from_toml(
        r#"
listen = "127.0.0.1:0"
grpc_listen = "127.0.0.1:0"
backends = []
[auth]
mode = "off"
[mux]
node_id = 1
[mux.default]
backends = [{ backend = "postgres", role = "primary" }, { backend = "redis", role = "replica" }, { backend = "s3", role = "replica" }]
write = "all"
"#,
    )
    .unwrap();
    config.backends = vec![
        mux_tests::spec("postgres", dir.path())
            .unwrap()
            .with("table", table.as_str()),
        mux_tests::spec("redis", dir.path())
            .unwrap()
            .with("namespace", namespace.as_str()),
        mux_tests::spec("s3", dir.path())
            .unwrap()
            .with("bucket", bucket.as_str()),
    ];
    let state = muxd::build(&config).await.unwrap();
    let mux = state.mux();
    let server = muxd::serve(&config, state.clone()).await.unwrap();
    let as_tenant = |t: &str| WriteOptions {
        tenant: Some(Tenant::new(t).unwrap()),
        ..Default::default()
    };
    for i in 0..4 {
        let k = Key::new(format!("profile/{i}")).unwrap();
        mux.write(k.clone(), "acme's", &as_tenant("acme"))
            .await
            .unwrap();
        mux.write(k, "globex's", &as_tenant("globex"))
            .await
            .unwrap();
    }
    // A tombstone too: erasure removes deleted records as well.
    mux.delete(&Key::new("profile/0").unwrap(), &as_tenant("acme"))
        .await
        .unwrap();

    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::new();
    let reply: serde_json::Value = client
        .delete(format!("http://{}/v1/admin/tenants/acme", server.addr))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(reply["complete"], true, "{reply}");
    for s in reply["stores"].as_array().unwrap() {
        assert_eq!(s["purged"], 4, "{reply}");
    }

    let pg = run(Command::new("psql").arg(mux_tests::postgres_url()).args([
        "-At",
        "-c",
        &format!("SELECT * FROM {table}"),
    ]));
    let redis = run(Command::new("redis-cli").args([
        "-u",
        &mux_tests::redis_url(),
        "--scan",
        "--pattern",
        &format!("{namespace}:*"),
    ]));
    let redis_index = run(Command::new("redis-cli").args([
        "-u",
        &mux_tests::redis_url(),
        "ZRANGE",
        &format!("{namespace}:idx"),
        "0",
        "-1",
    ]));
    let s3 = mux_tests::run_python(BOTO3_KEYS, &[&mux_tests::s3_endpoint(), &bucket]).to_string();
    for (client, seen) in [
        ("psql", &pg),
        ("redis-cli", &redis),
        ("redis-cli ZRANGE", &redis_index),
        ("boto3", &s3),
    ] {
        assert!(
            !seen.contains("tenants/acme/"),
            "{client} still finds acme: {seen}"
        );
    }
    for (client, seen) in [("psql", &pg), ("redis-cli", &redis), ("boto3", &s3)] {
        assert_eq!(
            seen.matches("tenants/globex/profile/").count(),
            4,
            "{client}: {seen}"
        );
    }
    server.shutdown(&mux).await;
    for s in [
        mux.backend("postgres"),
        mux.backend("redis"),
        mux.backend("s3"),
    ] {
        let s = s.unwrap();
        for e in mux::BackendExt::list_all(&**s, &mux::Prefix::all())
            .await
            .unwrap()
        {
            s.purge(&e.key, mux::Version::new(u64::MAX >> 16, 0, 0))
                .await
                .unwrap();
        }
    }
    run(Command::new("psql")
        .arg(mux_tests::postgres_url())
        .args(["-c", &format!("DROP TABLE IF EXISTS {table}")]));
}
