//! Data at rest is plain: what mux-ssm writes is read back with boto3 (from the venv
//! that `cargo xtask services up --install` makes, or `MUX_PYTHON`), which finds the
//! value as written and the documented metadata in each version's description.

mod common;

use std::collections::BTreeMap;
use std::process::Command;

use mux_core::{Backend, Key, Record, Version};
use serde_json::Value;

/// The Python with boto3.
fn python() -> String {
    std::env::var("MUX_PYTHON").unwrap_or_else(|_| {
        let dir = common::var("MUX_SERVICES_DIR", "/var/tmp/mux-services");
        format!("{dir}/venv/bin/python")
    })
}

/// Reads one parameter as `aws ssm` would: the current value (`get-parameter`), the
/// description (`describe-parameters`) and every version (`get-parameter-history`).
const BOTO3: &str = r#"
import json, sys, boto3
endpoint, region, name = sys.argv[1:4]
ssm = boto3.client("ssm", endpoint_url=endpoint, region_name=region,
                   aws_access_key_id="test", aws_secret_access_key="test")
param = ssm.get_parameter(Name=name)["Parameter"]
meta = ssm.describe_parameters(
    ParameterFilters=[{"Key": "Name", "Option": "Equals", "Values": [name]}])["Parameters"][0]
history = []
for page in ssm.get_paginator("get_parameter_history").paginate(Name=name):
    history += [{"version": p["Version"], "value": p["Value"], "description": p["Description"]}
                for p in page["Parameters"]]
print(json.dumps({"type": param["Type"], "value": param["Value"], "version": param["Version"],
                  "description": meta["Description"], "history": history}))
"#;

fn read(endpoint: &str, name: &str) -> Value {
    let python = python();
    let out = Command::new(&python)
        .arg("-c")
        .arg(BOTO3)
        .args([endpoint, &common::var("MUX_SSM_REGION", "us-east-1"), name])
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run {python} (run `cargo xtask services up --install`): {e}")
        });
    assert!(
        out.status.success(),
        "{python} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the script prints JSON")
}

/// The description as a map of strings.
fn description(text: &Value) -> BTreeMap<String, String> {
    serde_json::from_str(text.as_str().expect("a description")).expect("a JSON object of strings")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boto3_reads_what_mux_ssm_wrote() {
    let b = common::connect(common::config("plain")).await;
    let endpoint = common::endpoint();
    let json = Key::new("paramconfig/acme/limits").unwrap();
    let first = Record::new(
        json.clone(),
        r#"{"rps":50}"#,
        Version::new(1_700_000_000_000, 0, 7),
    );
    let second = Record::new(
        json.clone(),
        r#"{"rps":100}"#,
        Version::new(1_700_000_000_001, 3, 7),
    )
    .with_content_type("application/json")
    .with_tag("class", "config")
    .with_tag("city", "Zürich");
    b.put(&first).await.unwrap();
    b.put(&second).await.unwrap();
    let seen = read(&endpoint, &b.parameter_name(&json));
    assert_eq!(seen["type"], "String");
    assert_eq!(seen["value"], r#"{"rps":100}"#, "the value as written");
    let d = description(&seen["description"]);
    assert_eq!(d["mux_version"], second.version().to_string());
    assert_eq!(d["mux_crc32"], format!("{:08x}", second.meta().checksum));
    assert_eq!(d["mux_content_type"], "application/json");
    assert_eq!(d["mux_size"], "11");
    assert!(!d.contains_key("mux_tombstone") && !d.contains_key("mux_encoding"));
    let tags: BTreeMap<String, String> = serde_json::from_str(&d["mux_tags"]).unwrap();
    assert_eq!(&tags, &second.meta().tags);
    // Each version keeps its own value and metadata.
    let history = seen["history"].as_array().unwrap();
    assert_eq!(history.len(), 2);
    assert_eq!(history[0]["value"], r#"{"rps":50}"#);
    assert_eq!(
        description(&history[0]["description"])["mux_version"],
        first.version().to_string()
    );

    // Bytes that are not text are base64, an empty value and a tombstone placeholders,
    // as their descriptions say.
    let binary = Key::new("blobs/raw bytes").unwrap();
    let bytes: Vec<u8> = (0..=255u8).collect();
    b.put(&Record::new(
        binary.clone(),
        bytes.clone(),
        Version::new(1, 0, 1),
    ))
    .await
    .unwrap();
    let seen = read(&endpoint, &b.parameter_name(&binary));
    assert_eq!(description(&seen["description"])["mux_encoding"], "base64");
    let decoded = aws_smithy_types::base64::decode(seen["value"].as_str().unwrap()).unwrap();
    assert_eq!(decoded, bytes);

    let empty = Key::new("flags/empty").unwrap();
    b.put(&Record::new(empty.clone(), "", Version::new(1, 0, 1)))
        .await
        .unwrap();
    let seen = read(&endpoint, &b.parameter_name(&empty));
    assert_eq!(seen["value"], "(empty)");
    assert_eq!(description(&seen["description"])["mux_encoding"], "empty");

    b.delete(&json, Version::new(1_700_000_000_002, 0, 2))
        .await
        .unwrap();
    let seen = read(&endpoint, &b.parameter_name(&json));
    assert_eq!(seen["value"], "(deleted)");
    let d = description(&seen["description"]);
    assert_eq!(d["mux_tombstone"], "true");
    assert_eq!(d["mux_version"], "0000018bcfe56802-00000000-00000002");
    assert_eq!(seen["history"].as_array().unwrap().len(), 3);
    common::clean(&b).await;
}
