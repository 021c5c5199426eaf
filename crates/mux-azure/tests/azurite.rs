//! The Azure backend against a live Blob service: Azurite by default, or whatever
//! `MUX_AZURE_CONNECTION_STRING` names. Every test works in a fresh container and
//! deletes it afterwards. The tests fail (never skip) when the service is unreachable.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use azure_core::http::Url;
use azure_storage_blob::BlobContainerClient;
use mux_azure::{AzureBackend, AzureConfig, AzureCredential, account_sas_token};
use mux_core::{Backend, BackendExt, ErrorKind, Key, Prefix, PutOutcome, Record, Version};

const AZURITE: &str = "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;";

fn connection_string() -> String {
    std::env::var("MUX_AZURE_CONNECTION_STRING").unwrap_or_else(|_| AZURITE.to_owned())
}

fn random() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or_default();
    let mut x = nanos
        ^ (u64::from(std::process::id()) << 32)
        ^ COUNTER.fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A config for a fresh, uniquely named container that `connect` creates.
fn fresh_config(test: &str) -> AzureConfig {
    let container = format!("mux-{test}-{:012x}", random() & 0xffff_ffff_ffff);
    AzureConfig::from_connection_string(&connection_string(), container)
        .expect("MUX_AZURE_CONNECTION_STRING is not a valid connection string")
        .with_create_container(true)
}

async fn connect(name: &str, config: AzureConfig) -> AzureBackend {
    AzureBackend::connect(name, config)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "the Azure Blob service (Azurite by default, or MUX_AZURE_CONNECTION_STRING) is \
             required for this test; start it with `cargo xtask services up`: {e}"
            )
        })
}

/// Deletes the test's container, authenticating like the backend did.
async fn delete_container(config: &AzureConfig) {
    let mut url = Url::parse(&config.endpoint).unwrap();
    url.path_segments_mut()
        .unwrap()
        .pop_if_empty()
        .push(&config.container);
    match &config.credential {
        Some(AzureCredential::AccountKey { account, key }) => {
            url.set_query(Some(
                &account_sas_token(account, key, Duration::from_secs(600)).unwrap(),
            ));
        }
        Some(AzureCredential::Sas(token)) => url.set_query(Some(token)),
        _ => return,
    }
    let client = BlobContainerClient::new(url, None, None).unwrap();
    if let Err(e) = client.delete(None).await {
        eprintln!("could not delete container {}: {e}", config.container);
    }
}

/// The whole conformance suite, with a small single-upload threshold and block size so
/// that the suite's 8 MiB value goes through staged blocks and a conditional commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn passes_the_conformance_suite() {
    let config = fresh_config("conformance")
        .with_prefix("app/records")
        .with_single_upload_threshold(1 << 20)
        .with_block_size(256 << 10);
    run_suite("azure", config).await;
}

/// The same suite with the default settings and no prefix.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn passes_the_conformance_suite_with_defaults() {
    let config = fresh_config("defaults");
    run_suite("azure-defaults", config).await;
}

/// Runs the conformance suite in the config's container, deletes the container, and
/// requires every case to pass, none skipped.
///
/// The backend runs on its own here, without a coordinator to retry temporary errors,
/// so the SDK retries a request that failed in transport (as `max_retries` documents
/// for a bare `AzureBackend`): a CI run on a slow machine lost both suites to a single
/// "connection reset by peer" from Azurite in the middle of the run. Answers with a
/// status other than 408, 429, 500 or 502-504 are never retried, so every case sees
/// Azure's own outcome.
async fn run_suite(name: &str, config: AzureConfig) {
    let config = config.with_max_retries(3);
    let backend = connect(name, config.clone()).await;
    let report = mux_conformance::run(Arc::new(backend)).await;
    println!("{report}");
    delete_container(&config).await;
    assert!(report.all_passed(), "{report}");
    // This store keeps no history: only the history cases may skip.
    assert!(report.skips_beyond(&["history"]).is_empty(), "{report}");
}

/// 16 writers of one key with distinct random versions: the highest always wins, and
/// exactly the writes that found a lower version stored report `Applied`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_leave_the_highest_version() {
    let config = fresh_config("race");
    let backend = Arc::new(connect("azure-race", config.clone()).await);
    for round in 0..3 {
        let key = Key::new(format!("contended/{round}")).unwrap();
        let mut versions: Vec<Version> = Vec::new();
        while versions.len() < 16 {
            let v = Version::new(1 + random() % 1_000_000, (random() % 4) as u32, 1);
            if !versions.contains(&v) {
                versions.push(v);
            }
        }
        let highest = *versions.iter().max().unwrap();
        let tasks: Vec<_> = versions
            .iter()
            .map(|&v| {
                let backend = backend.clone();
                let record =
                    Record::new(key.clone(), format!("{v}"), v).with_tag("writer", v.to_string());
                tokio::spawn(async move { (v, backend.put(&record).await) })
            })
            .collect();
        for task in tasks {
            let (v, outcome) = task.await.unwrap();
            let outcome = outcome.unwrap_or_else(|e| panic!("put of {v} failed: {e}"));
            if v == highest {
                assert_eq!(outcome, PutOutcome::Applied, "the highest version's write");
            }
        }
        let stored = backend
            .get(&key)
            .await
            .unwrap()
            .expect("a record is stored");
        assert_eq!(stored.version(), highest, "round {round}");
        assert_eq!(stored.value().as_ref(), highest.to_string().as_bytes());
        assert_eq!(stored.meta().tags["writer"], highest.to_string());
    }
    delete_container(&config).await;
}

/// An account-key config and a SAS-URL config reach the same container and see each
/// other's writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_key_and_sas_url_configs_both_work() {
    let config = fresh_config("auth");
    let Some(AzureCredential::AccountKey { account, key }) = config.credential.clone() else {
        panic!("this test needs a connection string with an AccountKey");
    };
    let by_key = connect("by-key", config.clone()).await;

    let token = account_sas_token(&account, &key, Duration::from_secs(3600)).unwrap();
    let sas_url = format!("{}/{}?{token}", config.endpoint, config.container);
    let sas_config = AzureConfig::from_sas_url(&sas_url).unwrap();
    assert_eq!(sas_config.container, config.container);
    assert!(!format!("{sas_config:?}").contains(token.split("sig=").nth(1).unwrap()));
    let by_sas = connect("by-sas", sas_config).await;

    let a = Key::new("auth/a").unwrap();
    let b = Key::new("auth/b").unwrap();
    let v1 = Version::new(10, 0, 1);
    let v2 = Version::new(11, 0, 1);
    assert!(
        by_key
            .put(&Record::new(a.clone(), "from key", v1))
            .await
            .unwrap()
            .is_applied()
    );
    assert!(
        by_sas
            .put(&Record::new(b.clone(), "from sas", v1))
            .await
            .unwrap()
            .is_applied()
    );
    assert_eq!(
        by_sas.get_live(&a).await.unwrap().unwrap().value().as_ref(),
        b"from key"
    );
    assert_eq!(
        by_key.get_live(&b).await.unwrap().unwrap().value().as_ref(),
        b"from sas"
    );
    assert!(by_sas.delete(&a, v2).await.unwrap().is_applied());
    assert!(by_key.get(&a).await.unwrap().unwrap().is_tombstone());
    let listed = by_sas
        .list_all(&Prefix::new("auth").unwrap())
        .await
        .unwrap();
    assert_eq!(listed.len(), 2);
    assert!(by_key.purge(&a, v2).await.unwrap());
    by_key.health().await.unwrap();
    by_sas.health().await.unwrap();

    // A SAS signed with the wrong key is refused as a permission error.
    let wrong = account_sas_token(&account, "d3Jvbmcga2V5", Duration::from_secs(3600)).unwrap();
    let bad =
        AzureConfig::from_sas_url(&format!("{}/{}?{wrong}", config.endpoint, config.container))
            .unwrap();
    let err = AzureBackend::connect("bad-sas", bad).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
    assert_eq!(err.backend(), Some("bad-sas"));

    delete_container(&config).await;
}

/// Reading a blob that mux did not write (no `mux_version`) is a `Corrupt` error, a
/// listing skips it, and a missing container is reported when connecting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_blobs_and_missing_containers_are_reported() {
    let config = fresh_config("foreign");
    let backend = connect("azure-foreign", config.clone()).await;
    let mut url = backend.container_url();
    url.path_segments_mut().unwrap().push("foreign/plain");
    let Some(AzureCredential::AccountKey { account, key }) = &config.credential else {
        panic!("this test needs a connection string with an AccountKey");
    };
    url.set_query(Some(
        &account_sas_token(account, key, Duration::from_secs(600)).unwrap(),
    ));
    azure_storage_blob::BlobClient::new(url, None, None)
        .unwrap()
        .upload(bytes::Bytes::from_static(b"not a record").into(), None)
        .await
        .unwrap();
    let err = backend
        .get(&Key::new("foreign/plain").unwrap())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
    assert!(err.message().contains("mux_version"), "{err}");
    // Listings skip it (with a warning), before and after mux's own records.
    let v = Version::new(1, 0, 1);
    for k in ["foreign/a", "foreign/z"] {
        backend
            .put(&Record::new(Key::new(k).unwrap(), "x", v))
            .await
            .unwrap();
    }
    for prefix in ["", "foreign", "foreign/plain"] {
        let listed = backend
            .list_all(&Prefix::new(prefix).unwrap())
            .await
            .unwrap_or_else(|e| panic!("listing {prefix:?}: {e}"));
        let keys: Vec<&str> = listed.iter().map(|e| e.key.as_str()).collect();
        let expected: &[&str] = if prefix == "foreign/plain" {
            &[]
        } else {
            &["foreign/a", "foreign/z"]
        };
        assert_eq!(keys, expected, "{prefix:?}");
    }
    let page = backend
        .list(&mux_core::ListRequest::new(Prefix::new("foreign").unwrap()).with_limit(1))
        .await
        .unwrap();
    assert_eq!(page.entries.len(), 1);
    let page = backend
        .list(
            &mux_core::ListRequest::new(Prefix::new("foreign").unwrap())
                .with_limit(1)
                .with_cursor(page.next_cursor),
        )
        .await
        .unwrap();
    assert_eq!(page.entries[0].key.as_str(), "foreign/z");
    delete_container(&config).await;

    let missing = fresh_config("missing").with_create_container(false);
    let err = AzureBackend::connect("azure-missing", missing)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert!(err.message().contains("create_container"), "{err}");
}

/// The stored layout: blob name, metadata names and values, content type; a tombstone is
/// an empty blob flagged `mux_tombstone=true`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stores_the_documented_layout() {
    use azure_storage_blob::models::BlobClientGetPropertiesResultHeaders;

    let config = fresh_config("layout").with_prefix("app");
    let Some(AzureCredential::AccountKey { account, key }) = config.credential.clone() else {
        panic!("this test needs a connection string with an AccountKey");
    };
    let backend = connect("azure-layout", config.clone()).await;
    let raw = |k: &Key| {
        let mut url = backend.container_url();
        url.path_segments_mut().unwrap().push(&backend.blob_name(k));
        url.set_query(Some(
            &account_sas_token(&account, &key, Duration::from_secs(600)).unwrap(),
        ));
        azure_storage_blob::BlobClient::new(url, None, None).unwrap()
    };

    let k = Key::new("dir/a[b\\c").unwrap();
    assert_eq!(backend.blob_name(&k), "app/dir/a[[b[]c");
    let v = Version::new(0x18c2f3a1b2c, 0, 1);
    let record = Record::new(k.clone(), "{}", v)
        .with_content_type("application/json")
        .with_tag("class", "pii");
    backend.put(&record).await.unwrap();
    let props = raw(&k).get_properties(None).await.unwrap();
    let meta = props.metadata().unwrap();
    assert_eq!(meta["mux_version"], "0000018c2f3a1b2c-00000000-00000001");
    assert_eq!(meta["mux_crc32"], format!("{:08x}", crc32(b"{}")));
    assert_eq!(meta["mux_content_type"], "application/json");
    assert_eq!(meta["mux_tags"], r#"{"class":"pii"}"#);
    assert!(!meta.contains_key("mux_tombstone"));
    assert_eq!(
        props.content_type().unwrap().as_deref(),
        Some("application/json")
    );
    assert_eq!(props.content_length().unwrap(), Some(2));
    let listed = backend
        .list_all(&Prefix::new("dir").unwrap())
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].key, k);

    // A final dot (which Azure would drop) and a backslash (which it would turn into
    // `/`) keep their keys apart and in order.
    let names = ["d/a", "d/a.", "d/a..", "d/a.b", "d/a/b", "d/a\\b", "d/a[b"];
    for (i, n) in names.iter().enumerate() {
        let k = Key::new(n).unwrap();
        backend
            .put(&Record::new(k, format!("{i}"), v))
            .await
            .unwrap();
    }
    assert_eq!(backend.blob_name(&Key::new("d/a.").unwrap()), "app/d/a.\t");
    let listed = backend.list_all(&Prefix::new("d").unwrap()).await.unwrap();
    let mut expected = names.to_vec();
    expected.sort();
    let got: Vec<&str> = listed.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(got, expected);
    for (i, n) in names.iter().enumerate() {
        let r = backend
            .get_live(&Key::new(n).unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(r.value().as_ref(), format!("{i}").as_bytes(), "{n}");
    }

    let plain = Key::new("plain").unwrap();
    backend
        .put(&Record::new(plain.clone(), "x", v))
        .await
        .unwrap();
    let props = raw(&plain).get_properties(None).await.unwrap();
    assert_eq!(
        props.content_type().unwrap().as_deref(),
        Some("application/octet-stream")
    );
    assert!(!props.metadata().unwrap().contains_key("mux_content_type"));

    backend
        .delete(&plain, Version::new(0x18c2f3a1b2d, 0, 1))
        .await
        .unwrap();
    let props = raw(&plain).get_properties(None).await.unwrap();
    assert_eq!(props.metadata().unwrap()["mux_tombstone"], "true");
    assert_eq!(props.content_length().unwrap(), Some(0));

    // Azure drops dots at the end of any path segment: keys (and listing prefixes) with
    // an inner segment ending in `.` are refused, since `d/a./b` would be `d/a/b`.
    let dotted = Key::new("d/a./b").unwrap();
    let check = |err: mux_core::Error| {
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
        assert!(err.message().contains("should end with a dot"), "{err}");
    };
    check(
        backend
            .put(&Record::new(dotted.clone(), "x", v))
            .await
            .unwrap_err(),
    );
    check(backend.get(&dotted).await.unwrap_err());
    check(backend.delete(&dotted, v).await.unwrap_err());
    check(backend.purge(&dotted, v).await.unwrap_err());
    check(
        backend
            .list_all(&Prefix::new("d/a./").unwrap())
            .await
            .unwrap_err(),
    );
    check(
        backend
            .list_all(&Prefix::new("d/a./b").unwrap())
            .await
            .unwrap_err(),
    );
    // A final segment's dot is fine, as a key and as a listing prefix.
    let listed = backend
        .list_all(&Prefix::new("d/a.").unwrap())
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].key.as_str(), "d/a.");

    // Azure keeps at most 8 KiB of metadata: such a record is refused, nothing written.
    let big = Key::new("big-tags").unwrap();
    let err = backend
        .put(&Record::new(big.clone(), "x", v).with_tag("t", "x".repeat(9000)))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TooLarge, "{err}");
    assert!(backend.get(&big).await.unwrap().is_none());
    delete_container(&config).await;
}

/// An unreachable endpoint fails fast as a temporary `Unavailable` error, and the error
/// never shows the SAS signature of the request (the HTTP client's error names the URL,
/// query included): neither the one mux signs with an account key nor a given SAS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_endpoints_are_unavailable() {
    let config = AzureConfig::from_connection_string(AZURITE, "records")
        .unwrap()
        .with_endpoint("http://127.0.0.1:1/devstoreaccount1")
        .with_max_retries(1);
    let Some(AzureCredential::AccountKey { account, key }) = config.credential.clone() else {
        unreachable!("the Azurite connection string has an account key");
    };
    // mux signs `se = now + 1 h` in whole seconds and no `st`, like `account_sas_token`:
    // the token it used is one of these two when the connect takes under a second (it
    // does; if not, the check that every `sig=` is blanked still holds).
    let hour = Duration::from_secs(3600);
    let before = account_sas_token(&account, &key, hour).unwrap();
    let started = std::time::Instant::now();
    let err = AzureBackend::connect("nowhere", config).await.unwrap_err();
    let elapsed = started.elapsed();
    let after = account_sas_token(&account, &key, hour).unwrap();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(err.is_temporary());
    assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
    assert_no_signature(&err, &[signature(&before), signature(&after)]);

    let sas = format!(
        "http://127.0.0.1:1/devstoreaccount1/records?{}",
        account_sas_token(&account, &key, hour).unwrap()
    );
    let config = AzureConfig::from_sas_url(&sas).unwrap().with_max_retries(1);
    let err = AzureBackend::connect("nowhere-sas", config)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert_no_signature(&err, &[signature(&sas)]);
}

/// The `sig` value of a query string or SAS URL, as it appears in a URL.
fn signature(query: &str) -> String {
    query
        .split("sig=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap()
        .to_owned()
}

/// Neither `Display` nor `Debug` of `err` contains any of `signatures` (percent-encoded
/// as in a URL, or decoded), and every `sig=` in them is blanked.
fn assert_no_signature(err: &mux_core::Error, signatures: &[String]) {
    for shown in [err.to_string(), format!("{err:?}")] {
        for sig in signatures {
            assert!(sig.len() > 20, "{sig}");
            let decoded = sig
                .replace("%2B", "+")
                .replace("%2F", "/")
                .replace("%3D", "=");
            assert!(!shown.contains(sig.as_str()), "{shown}");
            assert!(!shown.contains(&decoded), "{shown}");
            assert!(!shown.contains(&decoded[..20]), "{shown}");
        }
        for rest in shown.split("sig=").skip(1) {
            assert!(rest.starts_with("***"), "{shown}");
        }
    }
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}
