//! Data at rest is plain: objects written through mux are read back with the stores'
//! own client libraries (boto3 for S3, azure-storage-blob for Azure, both from the venv
//! that `cargo xtask services up --install` makes), which find the value and the
//! documented metadata (`mux_core::codec::fields`).

use std::collections::BTreeMap;

use mux::{Backend, Key, Record, Version};
use serde_json::Value;

/// The records each store gets: a live record with a content type and tags (one
/// non-ASCII), a binary value without a content type, and a tombstone.
fn records() -> Vec<Record> {
    vec![
        Record::new(
            Key::new("tenantconfig/acme/limits").unwrap(),
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
        Record::tombstone(
            Key::new("tenantconfig/acme/old").unwrap(),
            Version::new(1_700_000_000_002, 0, 2),
        ),
    ]
}

/// Checks what the independent client saw (`{"metadata", "content_type", "body_hex"}`)
/// against the record and the expected object body.
fn check(seen: &Value, record: &Record, body: &[u8]) {
    let meta: BTreeMap<String, String> =
        serde_json::from_value(seen["metadata"].clone()).expect("metadata is a string map");
    let key = record.key();
    assert_eq!(
        meta.get("mux_version").map(String::as_str),
        Some(record.meta().version.to_string().as_str()),
        "{key}: {meta:?}"
    );
    assert_eq!(
        meta.get("mux_crc32"),
        Some(&format!("{:08x}", record.meta().checksum)),
        "{key}: {meta:?}"
    );
    assert_eq!(
        meta.get("mux_tombstone").map(String::as_str),
        record.is_tombstone().then_some("true"),
        "{key}: {meta:?}"
    );
    assert_eq!(
        meta.get("mux_content_type"),
        record.meta().content_type.as_ref(),
        "{key}: {meta:?}"
    );
    let tags: BTreeMap<String, String> = meta
        .get("mux_tags")
        .map(|t| serde_json::from_str(t).expect("mux_tags is a JSON object"))
        .unwrap_or_default();
    assert_eq!(tags, record.meta().tags, "{key}");
    assert_eq!(
        seen["content_type"].as_str(),
        Some(
            record
                .meta()
                .content_type
                .as_deref()
                .unwrap_or("application/octet-stream")
        ),
        "{key}"
    );
    let body = hex(body);
    assert_eq!(seen["body_hex"].as_str(), Some(body.as_str()), "{key}");
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

const BOTO3: &str = r#"
import json, sys, boto3
endpoint, bucket, key = sys.argv[1:4]
s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                  aws_access_key_id="test", aws_secret_access_key="test")
obj = s3.get_object(Bucket=bucket, Key=key)
print(json.dumps({"metadata": obj["Metadata"], "content_type": obj["ContentType"],
                  "body_hex": obj["Body"].read().hex()}))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boto3_reads_what_mux_s3_wrote() {
    let bucket = format!("mux-plain-{}", std::process::id());
    let backend = mux::s3::S3Backend::connect("s3", mux_tests::s3_config(&bucket))
        .await
        .expect("the S3 server is required (run `cargo xtask services up`)");
    for record in records() {
        backend.put(&record).await.unwrap();
        let object_key = backend.object_key(record.key().as_str());
        assert_eq!(object_key, format!("mux/{}", record.key()));
        let seen = mux_tests::run_python(BOTO3, &[&mux_tests::s3_endpoint(), &bucket, &object_key]);
        // A tombstone's object body names its version (so its ETag is unique).
        let body = if record.is_tombstone() {
            format!("mux tombstone {}\n", record.meta().version).into_bytes()
        } else {
            record.value().to_vec()
        };
        check(&seen, &record, &body);
        assert!(backend.purge(record.key(), record.version()).await.unwrap());
    }
}

const AZURE_SDK: &str = r#"
import json, sys
from azure.storage.blob import BlobServiceClient
conn, container, name = sys.argv[1:4]
blob = BlobServiceClient.from_connection_string(conn).get_blob_client(container, name)
props = blob.get_blob_properties()
print(json.dumps({"metadata": props.metadata,
                  "content_type": props.content_settings.content_type,
                  "body_hex": blob.download_blob().readall().hex()}))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azures_python_sdk_reads_what_mux_azure_wrote() {
    let container = format!("mux-plain-{}", std::process::id());
    let backend =
        mux::azure::AzureBackend::connect("azure", mux_tests::azure_config(&container).unwrap())
            .await
            .expect("the Azure Blob service is required (run `cargo xtask services up`)");
    let conn = mux_tests::azure_connection_string();
    for record in records() {
        backend.put(&record).await.unwrap();
        let name = backend.blob_name(record.key());
        assert_eq!(name, format!("mux/{}", record.key()));
        let seen = mux_tests::run_python(AZURE_SDK, &[&conn, &container, &name]);
        check(&seen, &record, record.value());
        assert!(backend.purge(record.key(), record.version()).await.unwrap());
    }
}
