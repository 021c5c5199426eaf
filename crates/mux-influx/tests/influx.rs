//! mux-influx against a real InfluxDB 1.x: the layout as an independent client (curl on
//! `/query`) sees it, stale writes, bytes, limits, listing with awkward prefixes, and
//! history trimming.

mod common;

use mux_core::{
    AsOf, Backend, BackendExt, ErrorKind, HistoryRequest, Key, ListRequest, Prefix, PutOutcome,
    Record, Version,
};
use mux_influx::{MAX_FIELD_BYTES, MAX_VALUE_SIZE};
use serde_json::Value;

fn key(s: &str) -> Key {
    Key::new(s).unwrap()
}

/// The rows of the first series of the first statement, as column → value maps.
fn rows(answer: &Value) -> Vec<serde_json::Map<String, Value>> {
    let series = &answer["results"][0]["series"][0];
    let columns: Vec<String> = series["columns"]
        .as_array()
        .map(|c| c.iter().map(|c| c.as_str().unwrap().to_owned()).collect())
        .unwrap_or_default();
    series["values"]
        .as_array()
        .map(|rows| {
            rows.iter()
                .map(|row| {
                    columns
                        .iter()
                        .cloned()
                        .zip(row.as_array().unwrap().iter().cloned())
                        .collect()
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_independent_client_reads_the_documented_layout() {
    let Some(b) = common::connect(common::config("layout")).await else {
        return;
    };
    let db = b.config().database.clone();
    let k = key("tenants/acme/config/limits");
    let v1 = Version::new(1_700_000_000_000, 0, 1);
    let v2 = Version::new(1_700_000_000_500, 2, 1);
    let r1 = Record::new(k.clone(), "max=10", v1)
        .with_content_type("text/plain")
        .with_tag("class", "pii");
    assert_eq!(b.put(&r1).await.unwrap(), PutOutcome::Applied);
    assert_eq!(
        b.put(&Record::new(k.clone(), vec![0xffu8, 0xfe, 0], v2))
            .await
            .unwrap(),
        PutOutcome::Applied
    );
    let answer = common::query(
        "SELECT * FROM \"mux_records\" WHERE \"key\" = 'tenants/acme/config/limits'",
        &db,
    )
    .await;
    let got = rows(&answer);
    assert_eq!(got.len(), 2, "{answer}");
    let first = &got[0];
    assert_eq!(first["key"], "tenants/acme/config/limits");
    assert_eq!(first["value"], "max=10");
    assert_eq!(first["encoding"], "utf-8");
    assert_eq!(first["version"], v1.to_string().as_str());
    assert_eq!(first["tombstone"], false);
    assert_eq!(first["size"], 6);
    assert_eq!(first["content_type"], "text/plain");
    assert_eq!(first["tags"], r#"{"class":"pii"}"#);
    // The time is the version's milliseconds (plus its slot).
    assert!(
        first["time"]
            .as_str()
            .unwrap()
            .starts_with("2023-11-14T22:13:20.000"),
        "{answer}"
    );
    let second = &got[1];
    assert_eq!(second["value"], "//4A");
    assert_eq!(second["encoding"], "base64");
    // The series is the key, as a tag.
    let tags = common::query(
        "SHOW TAG VALUES FROM \"mux_records\" WITH KEY = \"key\"",
        &db,
    )
    .await;
    assert_eq!(rows(&tags)[0]["value"], "tenants/acme/config/limits");
    common::clean(&b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_write_never_wins_a_read() {
    let Some(b) = common::connect(common::config("stale")).await else {
        return;
    };
    let k = key("stale/k");
    let new = Version::new(1_700_000_001_000, 5, 2);
    // Older by physical time, and older within the same millisecond.
    let older = [
        Version::new(1_700_000_000_999, 9, 9),
        Version::new(1_700_000_001_000, 4, 999),
        Version::new(1_700_000_001_000, 5, 1),
    ];
    b.put(&Record::new(k.clone(), "new", new)).await.unwrap();
    for v in older {
        assert_eq!(
            b.put(&Record::new(k.clone(), "old", v)).await.unwrap(),
            PutOutcome::Superseded { stored: new }
        );
    }
    // Even a stale point written behind mux's back (as a racing writer could) loses:
    // the newest record is the highest version, whatever the times say.
    let stale = Record::new(k.clone(), "sneaked", older[2]);
    let line = mux_influx::testing::point("mux_records", &stale, 1_700_000_001_000_999_999);
    let out = std::process::Command::new("curl")
        .args(["-sS", "-XPOST", "--data-binary", &line])
        .arg(format!(
            "{}/write?precision=ns&db={}",
            common::url(),
            b.config().database
        ))
        .output()
        .unwrap();
    assert!(out.status.success());
    let got = b.get(&k).await.unwrap().unwrap();
    assert_eq!((got.value().as_ref(), got.version()), (&b"new"[..], new));
    let listed = b.list_all(&Prefix::new("stale").unwrap()).await.unwrap();
    assert_eq!(listed[0].meta.version, new);
    // The history shows both, newest version first.
    let h = b.history(&HistoryRequest::new(k.clone())).await.unwrap();
    let versions: Vec<Version> = h.entries.iter().map(Record::version).collect();
    assert_eq!(versions, [new, older[2]]);
    let at = b.get_as_of(&k, AsOf::Version(older[2])).await.unwrap();
    assert_eq!(at.unwrap().value().as_ref(), b"sneaked");
    common::clean(&b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_round_trip_and_the_limit_is_named() {
    let Some(b) = common::connect(common::config("bytes")).await else {
        return;
    };
    let v = Version::new(1_700_000_000_000, 0, 1);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("all-bytes", (0..=255u8).collect()),
        ("quotes", b"a\"b\\c\nd 'e' \\\"".to_vec()),
        ("largest-binary", vec![0xff; MAX_VALUE_SIZE]),
        ("largest-text", vec![b'x'; MAX_VALUE_SIZE]),
    ];
    for (name, value) in &cases {
        let k = key(&format!("bytes/{name}"));
        b.put(&Record::new(k.clone(), value.clone(), v))
            .await
            .unwrap();
        let got = b.get(&k).await.unwrap().unwrap();
        assert_eq!(got.value().as_ref(), &value[..], "{name}");
    }
    let err = b
        .put(&Record::new(
            key("bytes/too-large"),
            vec![b'x'; MAX_VALUE_SIZE + 1],
            v,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TooLarge);
    let msg = err.to_string();
    assert!(
        msg.contains("64 KB") && msg.contains(&MAX_FIELD_BYTES.to_string()),
        "{msg}"
    );
    assert!(msg.contains(&MAX_VALUE_SIZE.to_string()), "{msg}");
    assert_eq!(err.backend(), Some("influx"));
    // A key the line protocol cannot spell is refused, as bad input, before any write.
    let err = b
        .put(&Record::new(key("bytes/trailing\\"), "x", v))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    assert!(!err.is_temporary());
    common::clean(&b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefixes_with_regex_and_quote_characters_list_exactly() {
    let Some(b) = common::connect(common::config("prefix")).await else {
        return;
    };
    let prefixes = ["a.b", "x/(y)|[z]*", "q'uote\\", "s/l/a/s/h", "d$^+?{1}"];
    let v = Version::new(1_700_000_000_000, 0, 1);
    for p in prefixes {
        for suffix in ["one", "two"] {
            b.put(&Record::new(key(&format!("{p}/{suffix}")), "v", v))
                .await
                .unwrap();
        }
    }
    // Decoys the regex would match if a metacharacter were not escaped.
    for decoy in ["aXb/one", "x/y/one", "s/l/a/s/hh/one"] {
        b.put(&Record::new(key(decoy), "v", v)).await.unwrap();
    }
    for p in prefixes {
        let page = b
            .list(&ListRequest::new(Prefix::new(p).unwrap()))
            .await
            .unwrap();
        let keys: Vec<&str> = page.entries.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, [format!("{p}/one"), format!("{p}/two")], "{p}");
    }
    common::clean(&b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_is_trimmed_but_the_newest_version_stays() {
    let Some(b) = common::connect(common::config("trim")).await else {
        return;
    };
    let k = key("trim/k");
    let versions: Vec<Version> = (0..5)
        .map(|i| Version::new(1_700_000_000_000 + i * 1000, 0, 1))
        .collect();
    for (i, v) in versions.iter().enumerate() {
        b.put(&Record::new(k.clone(), i.to_string(), *v))
            .await
            .unwrap();
    }
    b.trim_history(&k, versions[3]).await.unwrap();
    let h = b.history(&HistoryRequest::new(k.clone())).await.unwrap();
    let got: Vec<Version> = h.entries.iter().map(Record::version).collect();
    assert_eq!(got, [versions[4], versions[3]]);
    // Trimming past the newest version keeps the newest one.
    b.trim_history(&k, Version::new(1_800_000_000_000, 0, 0))
        .await
        .unwrap();
    let h = b.history(&HistoryRequest::new(k.clone())).await.unwrap();
    assert_eq!(h.entries.len(), 1);
    assert_eq!(b.get(&k).await.unwrap().unwrap().version(), versions[4]);
    common::clean(&b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_is_a_temporary_unavailable_error() {
    let config = mux_influx::InfluxConfig::new("http://127.0.0.1:9");
    let err = mux_influx::InfluxBackend::connect("influx", config)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(err.is_temporary(), "{err}");
    assert_eq!(err.backend(), Some("influx"));
    let shown = err.to_string();
    assert!(shown.contains("127.0.0.1:9"), "{shown}");
}
