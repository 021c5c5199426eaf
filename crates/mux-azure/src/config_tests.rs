//! Tests of [`super::AzureConfig`]: constructors, TOML, validation, `Debug`.

use super::*;
use crate::connection_string::{DEV_ACCOUNT_KEY, DEV_ACCOUNT_NAME, DEV_BLOB_ENDPOINT};

const AZURITE: &str = "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;";

#[test]
fn parses_the_azurite_connection_string() {
    let c = AzureConfig::from_connection_string(AZURITE, "records").unwrap();
    assert_eq!(c.endpoint, "http://127.0.0.1:10000/devstoreaccount1");
    assert_eq!(c.container, "records");
    match c.credential.as_ref().unwrap() {
        AzureCredential::AccountKey { account, key } => {
            assert_eq!(account, DEV_ACCOUNT_NAME);
            assert_eq!(key, DEV_ACCOUNT_KEY);
        }
        other => panic!("unexpected credential {other:?}"),
    }
    c.validate().unwrap();
    let dev = AzureConfig::from_connection_string("UseDevelopmentStorage=true", "records").unwrap();
    assert_eq!(dev.endpoint, DEV_BLOB_ENDPOINT);
    assert!(matches!(
        dev.credential,
        Some(AzureCredential::AccountKey { .. })
    ));
}

#[test]
fn debug_hides_every_secret() {
    let shown = format!(
        "{:?}",
        AzureConfig::from_connection_string(AZURITE, "records").unwrap()
    );
    assert!(!shown.contains("Eby8vdM02x"), "{shown}");
    assert!(shown.contains("devstoreaccount1"), "{shown}");
    assert!(shown.contains("key: \"***\""), "{shown}");

    let sas = AzureConfig::from_sas_url(
        "https://acct.blob.core.windows.net/records?sv=2022-11-02&sp=racwdl&sig=TopSecretSig%3D",
    )
    .unwrap();
    let shown = format!("{sas:?}");
    assert!(!shown.contains("TopSecretSig"), "{shown}");
    assert!(shown.contains("sp=racwdl&sig=***"), "{shown}");

    let err = AzureConfig::from_sas_url("ftp://acct/records?sv=1&sig=TopSecretSig").map(|_| ());
    if let Err(e) = err {
        assert!(!e.to_string().contains("TopSecretSig"), "{e}");
    }
    let err = AzureConfig::from_sas_url("https://acct.blob.core.windows.net/?sig=TopSecretSig")
        .unwrap_err();
    assert!(!err.to_string().contains("TopSecretSig"), "{err}");

    let via_cs = AzureConfig::from_connection_string(
        "BlobEndpoint=https://a.example;SharedAccessSignature=sv=1&sig=TopSecretSig",
        "records",
    )
    .unwrap();
    assert!(!format!("{via_cs:?}").contains("TopSecretSig"));
}

#[test]
fn validates_settings() {
    let ok = AzureConfig::new(
        "https://acct.blob.core.windows.net/",
        "records",
        AzureCredential::account_key("acct", "a2V5"),
    );
    assert_eq!(ok.endpoint, "https://acct.blob.core.windows.net");
    ok.validate().unwrap();
    ok.clone().with_prefix("mux/app").validate().unwrap();
    let fails = |c: AzureConfig, needle: &str| {
        let err = c.validate().unwrap_err();
        assert_eq!(err.kind(), mux_core::ErrorKind::InvalidInput);
        assert!(err.message().contains(needle), "{err}");
    };
    fails(
        ok.clone().with_prefix("/mux"),
        "must not start or end with '/'",
    );
    fails(
        ok.clone().with_prefix("mux/"),
        "must not start or end with '/'",
    );
    fails(ok.clone().with_prefix("a//b"), "segment 2 is empty");
    fails(ok.clone().with_prefix("v1./x"), "drops dots");
    fails(ok.clone().with_block_size(0), "block_size");
    fails(ok.clone().with_parallelism(0), "parallelism");
    fails(ok.clone().with_endpoint("not a url"), "invalid endpoint");
    let mut bad = ok.clone();
    bad.container = "Records".into();
    fails(bad, "lowercase");
    let mut bad = ok.clone();
    bad.container = "a--b".into();
    fails(bad, "'--'");
    let mut bad = ok.clone();
    bad.credential = Some(AzureCredential::account_key("acct", "not base64!"));
    fails(bad, "not valid base64");
}

#[test]
fn deserializes_every_way_to_authenticate_from_toml() {
    let parse = |text: &str| toml::from_str::<AzureConfig>(text).unwrap();
    let tuning = "prefix = \"mux\"\ncreate_container = true\nsingle_upload_threshold = 1048576\n\
                  block_size = 262144\nparallelism = 2\nmax_value_size = 4194304\n\
                  timeout_ms = 1500\nmax_retries = 2\napi_version = \"2025-11-05\"\n";
    let c = parse(&format!(
        "container = \"records\"\nconnection_string = \"{AZURITE}\"\n{tuning}"
    ));
    assert_eq!(c.timeout, Duration::from_millis(1500));
    assert_eq!((c.parallelism, c.max_retries), (2, 2));
    let (resolved, _) = c.resolve().unwrap();
    assert_eq!(resolved.endpoint, DEV_BLOB_ENDPOINT);
    assert!(matches!(
        resolved.credential,
        Some(AzureCredential::AccountKey { .. })
    ));
    assert_eq!(resolved.prefix, "mux");

    let c = parse("sas_url = \"https://acct.blob.core.windows.net/records?sv=1&sig=TopSecretSig\"");
    let (resolved, _) = c.resolve().unwrap();
    assert_eq!(resolved.container, "records");
    assert_eq!(resolved.endpoint, "https://acct.blob.core.windows.net");

    let c = parse("container = \"records\"\naccount = \"acct\"\naccount_key = \"a2V5\"");
    assert_eq!(
        c.resolve().unwrap().0.endpoint,
        "https://acct.blob.core.windows.net"
    );
    let c = parse(&format!(
        "container = \"records\"\naccount = \"{DEV_ACCOUNT_NAME}\"\naccount_key = \"{DEV_ACCOUNT_KEY}\"\n\
         endpoint = \"{DEV_BLOB_ENDPOINT}\""
    ));
    assert_eq!(c.resolve().unwrap().0.endpoint, DEV_BLOB_ENDPOINT);

    let c = parse(
        "container = \"records\"\nentra = true\nendpoint = \"https://acct.blob.core.windows.net\"",
    );
    let (resolved, _) = c.resolve().unwrap();
    assert!(matches!(
        resolved.credential,
        Some(AzureCredential::Token(_))
    ));

    // Defaults: no SDK retries, 60 s, no prefix.
    let d = parse("container = \"records\"\naccount = \"acct\"\naccount_key = \"a2V5\"");
    assert_eq!(d.max_retries, 0);
    assert_eq!(d.timeout, Duration::from_secs(60));
    assert_eq!(d.prefix, "");
}

#[test]
fn exactly_one_way_to_authenticate_is_required() {
    let fails = |text: &str, needle: &str| {
        let c: AzureConfig = toml::from_str(text).unwrap();
        let err = c.validate().unwrap_err();
        assert_eq!(err.kind(), mux_core::ErrorKind::InvalidInput);
        assert!(err.message().contains(needle), "{text}: {err}");
        assert!(!err.to_string().contains("a2V5"), "{err}");
    };
    fails("container = \"records\"", "exactly one way to authenticate");
    fails("container = \"records\"", "(found: none)");
    fails(
        &format!(
            "container = \"records\"\naccount = \"a\"\naccount_key = \"a2V5\"\nconnection_string = \"{AZURITE}\""
        ),
        "found: `connection_string`, `account` + `account_key`",
    );
    fails("container = \"records\"\naccount = \"acct\"", "go together");
    fails("container = \"records\"\nentra = true", "needs `endpoint`");
    fails(
        "container = \"other\"\nsas_url = \"https://a.blob.core.windows.net/records?sig=x\"",
        "names container \"records\"",
    );
    fails(
        "account = \"acct\"\naccount_key = \"a2V5\"",
        "invalid container name \"\"",
    );
}

#[test]
fn unknown_toml_fields_are_refused_by_name_and_debug_hides_secrets() {
    let err = toml::from_str::<AzureConfig>("container = \"c\"\naccount_name = \"a\"")
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown field `account_name`"), "{err}");
    let err = toml::from_str::<AzureConfig>("container = \"c\"\ntimeout = 5").unwrap_err();
    assert!(err.to_string().contains("`timeout`"), "{err}");

    for text in [
        "container = \"records\"\naccount = \"acct\"\naccount_key = \"U2VjcmV0S2V5\"".to_owned(),
        "sas_url = \"https://a.blob.core.windows.net/records?sv=1&sig=U2VjcmV0S2V5\"".to_owned(),
        "container = \"records\"\nconnection_string = \"AccountName=a;AccountKey=U2VjcmV0S2V5\""
            .to_owned(),
    ] {
        let c: AzureConfig = toml::from_str(&text).unwrap();
        let shown = format!("{c:?}");
        assert!(!shown.contains("U2VjcmV0S2V5"), "{shown}");
        let shown = format!("{:?}", c.resolve().unwrap().0);
        assert!(!shown.contains("U2VjcmV0S2V5"), "{shown}");
    }
}
