//! The targets: what each parses, how it checks what it accepted, and its seeds.

use std::sync::OnceLock;

use mux_core::codec;
use mux_core::{Bytes, ChangeEvent, Key, MuxConfig, Prefix, Record, Result, Tenant, Version};
use mux_sync::format::{Line, parse_line, record_line};
use muxd::ServerConfig;
use muxd::auth::{AuthConfig, Verifier, bearer_token};

use crate::{Target, encode_fields, fields};

/// Every target.
pub static TARGETS: &[Target] = &[
    Target {
        name: "key",
        what: "Key, Prefix and Tenant names, tenant scoping",
        run: key,
        seeds: key_seeds,
    },
    Target {
        name: "version",
        what: "versions in binary and text form",
        run: version,
        seeds: version_seeds,
    },
    Target {
        name: "record_codec",
        what: "the record envelope (JSON header, value)",
        run: record_codec,
        seeds: record_codec_seeds,
    },
    Target {
        name: "redis_hash",
        what: "a record's Redis hash",
        run: redis_hash,
        seeds: redis_hash_seeds,
    },
    Target {
        name: "redis_string",
        what: "a record's Redis string",
        run: redis_string,
        seeds: redis_string_seeds,
    },
    Target {
        name: "postgres_row",
        what: "a record's PostgreSQL row",
        run: postgres_row,
        seeds: postgres_row_seeds,
    },
    Target {
        name: "s3_object",
        what: "an S3 object's user metadata and body",
        run: s3_object,
        seeds: s3_object_seeds,
    },
    Target {
        name: "azure_blob",
        what: "an Azure blob's metadata and body",
        run: azure_blob,
        seeds: azure_blob_seeds,
    },
    Target {
        name: "dynamodb_item",
        what: "a DynamoDB item",
        run: dynamodb_item,
        seeds: dynamodb_item_seeds,
    },
    Target {
        name: "ssm_parameter",
        what: "an SSM parameter's description and value",
        run: ssm_parameter,
        seeds: ssm_parameter_seeds,
    },
    Target {
        name: "wal_frame",
        what: "segment intent-log frames",
        run: wal_frame,
        seeds: wal_frame_seeds,
    },
    Target {
        name: "change_event",
        what: "change-feed events at rest",
        run: change_event,
        seeds: change_event_seeds,
    },
    Target {
        name: "mux_config",
        what: "the library's TOML configuration",
        run: mux_config,
        seeds: mux_config_seeds,
    },
    Target {
        name: "server_config",
        what: "muxd's TOML configuration",
        run: server_config,
        seeds: server_config_seeds,
    },
    Target {
        name: "jwt",
        what: "the Authorization header and JWTs",
        run: jwt,
        seeds: jwt_seeds,
    },
    Target {
        name: "tags_header",
        what: "the X-Mux-Tags header",
        run: tags_header,
        seeds: tags_header_seeds,
    },
    Target {
        name: "import_line",
        what: "a line of an export file (mux import)",
        run: import_line,
        seeds: import_line_seeds,
    },
];

/// The key the field-based decoders read records under.
fn fuzz_key() -> Key {
    Key::new("fuzz/key").expect("a valid key")
}

/// Records of every shape a store keeps: text with a content type and tags, a
/// tombstone, an empty value, bytes that are not UTF-8, text SSM must escape.
fn records() -> Vec<Record> {
    let version = Version::new(1_700_000_000_000, 3, 7);
    let key = fuzz_key();
    vec![
        Record::new(key.clone(), "hello", version)
            .with_content_type("text/plain")
            .with_tag("env", "prod")
            .with_tag("région", "eu west"),
        Record::tombstone(key.clone(), version),
        Record::new(key.clone(), Bytes::new(), version),
        Record::new(key.clone(), vec![0u8, 255, 10, 13, b'"'], version),
        Record::new(key, "{{ not a template }}", version),
    ]
}

fn text(data: &[u8]) -> Option<&str> {
    std::str::from_utf8(data).ok()
}

/// Decodes `data`'s fields; what decodes must come back the same through the store's
/// stored form (`stored` may refuse a record the store cannot hold).
fn round_trip(
    data: &[u8],
    decode: impl Fn(&[(String, Vec<u8>)]) -> Result<Record>,
    stored: impl Fn(&Record) -> Result<Vec<(String, Vec<u8>)>>,
) {
    let Ok(record) = decode(&fields(data)) else {
        return;
    };
    if let Ok(pairs) = stored(&record) {
        match decode(&pairs) {
            Ok(again) => assert_eq!(again, record, "a record changes through its stored form"),
            Err(e) => panic!("{record:?} does not read back from its stored form: {e}"),
        }
    }
}

fn stored_seeds(stored: impl Fn(&Record) -> Result<Vec<(String, Vec<u8>)>>) -> Vec<Vec<u8>> {
    records()
        .iter()
        .filter_map(|r| stored(r).ok())
        .map(|pairs| encode_fields(&pairs))
        .collect()
}

fn key(data: &[u8]) {
    let Some(text) = text(data) else { return };
    let (tenant, name) = text.split_once('\n').unwrap_or(("acme", text));
    if let Ok(key) = Key::new(name) {
        assert_eq!(Key::new(key.as_str()).expect("a key's own name"), key);
        if let Ok(tenant) = Tenant::new(tenant)
            && let Ok(stored) = tenant.storage_key(&key)
        {
            assert_eq!(tenant.logical_key(&stored), Some(key.clone()));
        }
    }
    if let Ok(prefix) = Prefix::new(name) {
        let _ = prefix.scan_end();
        assert_eq!(
            Prefix::new(prefix.as_str()).expect("a prefix's own name"),
            prefix
        );
    }
}

fn key_seeds() -> Vec<Vec<u8>> {
    [
        "app/config.json",
        "acme\ntenantconfig/eu-west/db",
        "globex\n",
        "a//b",
        "tenants/x/y",
        "é/ü/\u{7f}",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect()
}

fn version(data: &[u8]) {
    if let Ok(v) = Version::from_bytes(data) {
        assert_eq!(Version::from_bytes(&v.to_bytes()).expect("own bytes"), v);
    }
    if let Some(Ok(v)) = text(data).map(str::parse::<Version>) {
        assert_eq!(v.to_string().parse::<Version>().expect("own text"), v);
    }
}

fn version_seeds() -> Vec<Vec<u8>> {
    let v = Version::new(1_700_000_000_000, 3, 7);
    vec![v.to_bytes().to_vec(), v.to_string().into_bytes()]
}

fn record_codec(data: &[u8]) {
    if let Ok(record) = codec::decode(Bytes::copy_from_slice(data)) {
        let again = codec::decode(Bytes::from(codec::encode(&record))).expect("own encoding");
        assert_eq!(again, record);
    }
}

fn record_codec_seeds() -> Vec<Vec<u8>> {
    records().iter().map(codec::encode).collect()
}

fn redis_hash(data: &[u8]) {
    round_trip(
        data,
        |f| mux_redis::fuzz::decode(fuzz_key(), f),
        |r| Ok(mux_redis::fuzz::stored(r)),
    );
}

fn redis_hash_seeds() -> Vec<Vec<u8>> {
    stored_seeds(|r| Ok(mux_redis::fuzz::stored(r)))
}

fn redis_string(data: &[u8]) {
    if let Ok(record) = mux_redis::fuzz::decode_string(fuzz_key(), data) {
        let again =
            mux_redis::fuzz::decode_string(fuzz_key(), &mux_redis::fuzz::stored_string(&record))
                .expect("own string");
        assert_eq!(again, record, "a record changes through its stored form");
    }
}

fn redis_string_seeds() -> Vec<Vec<u8>> {
    records()
        .iter()
        .map(mux_redis::fuzz::stored_string)
        .collect()
}

fn postgres_row(data: &[u8]) {
    round_trip(
        data,
        |f| mux_postgres::fuzz::decode(fuzz_key(), f),
        |r| Ok(mux_postgres::fuzz::stored(r)),
    );
}

fn postgres_row_seeds() -> Vec<Vec<u8>> {
    stored_seeds(|r| Ok(mux_postgres::fuzz::stored(r)))
}

fn s3_object(data: &[u8]) {
    round_trip(
        data,
        |f| mux_s3::fuzz::decode(fuzz_key(), f),
        mux_s3::fuzz::stored,
    );
}

fn s3_object_seeds() -> Vec<Vec<u8>> {
    stored_seeds(mux_s3::fuzz::stored)
}

fn azure_blob(data: &[u8]) {
    round_trip(
        data,
        |f| mux_azure::fuzz::decode(fuzz_key(), f),
        mux_azure::fuzz::stored,
    );
}

fn azure_blob_seeds() -> Vec<Vec<u8>> {
    stored_seeds(mux_azure::fuzz::stored)
}

fn dynamodb_item(data: &[u8]) {
    round_trip(data, mux_dynamodb::fuzz::decode_item, |r| {
        Ok(mux_dynamodb::fuzz::stored(r))
    });
}

fn dynamodb_item_seeds() -> Vec<Vec<u8>> {
    stored_seeds(|r| Ok(mux_dynamodb::fuzz::stored(r)))
}

fn ssm_parameter(data: &[u8]) {
    round_trip(
        data,
        |f| mux_ssm::fuzz::decode(fuzz_key(), f),
        mux_ssm::fuzz::stored,
    );
}

fn ssm_parameter_seeds() -> Vec<Vec<u8>> {
    stored_seeds(mux_ssm::fuzz::stored)
}

fn wal_frame(data: &[u8]) {
    mux_wal::fuzz::frames(data);
}

fn wal_frame_seeds() -> Vec<Vec<u8>> {
    let mut seeds: Vec<Vec<u8>> = records().iter().map(mux_wal::fuzz::seed).collect();
    // Mode 1: one body, given a valid CRC by the target (here a Complete frame).
    seeds.push([&[1u8, 2][..], &7u64.to_le_bytes(), &[5, 0], b"redis"].concat());
    seeds
}

fn change_event(data: &[u8]) {
    let pairs = fields(data);
    let lookup = |name: &str| {
        pairs
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    };
    if let Ok(event) = ChangeEvent::from_fields(lookup) {
        let stored = event.to_fields();
        let again = ChangeEvent::from_fields(|name| {
            stored
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.as_str())
        })
        .expect("an event reads back from its own fields");
        assert_eq!(again, event);
    }
}

fn change_event_seeds() -> Vec<Vec<u8>> {
    ["tenant=acme", "tenant=", "tenant=globex"]
        .iter()
        .zip(["put", "delete", "put"])
        .map(|(tenant, kind)| {
            let pairs = [
                ("tenant", tenant.trim_start_matches("tenant=")),
                ("key", "app/config"),
                (
                    "version",
                    &Version::new(1_700_000_000_000, 1, 2).to_string(),
                ),
                ("kind", kind),
                ("route", "tenantconfig/"),
            ];
            let owned: Vec<(String, Vec<u8>)> = pairs
                .iter()
                .map(|(n, v)| ((*n).to_owned(), v.as_bytes().to_vec()))
                .collect();
            encode_fields(&owned)
        })
        .collect()
}

fn mux_config(data: &[u8]) {
    if let Some(text) = text(data) {
        let _ = MuxConfig::from_toml(text);
    }
}

fn mux_config_seeds() -> Vec<Vec<u8>> {
    let text = "write = \"quorum\"\nread = \"first_healthy\"\n\n[[routes]]\nprefix = \"tenantconfig/\"\nbackends = [\"a\", \"b\"]\nwrite = \"all\"\n\n[resilience]\ntimeout = \"2s\"\n";
    vec![text.as_bytes().to_vec(), b"".to_vec()]
}

fn server_config(data: &[u8]) {
    if let Some(text) = text(data) {
        let _ = ServerConfig::from_toml(text);
    }
}

fn server_config_seeds() -> Vec<Vec<u8>> {
    [
        include_str!("../../muxd/examples/embedded.toml"),
        include_str!("../../muxd/examples/tagged-storage.toml"),
        include_str!("../../muxd/examples/cluster.toml"),
        include_str!("../../muxd/examples/audit-history.toml"),
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect()
}

const TENANT_SECRET: &str = "fuzz-tenant-secret-0123456789abcdef";
const OPERATOR_SECRET: &str = "fuzz-operator-secret-0123456789abcdef";

/// The verifier of an HS256 configuration with an operator key.
fn verifier() -> &'static Verifier {
    static VERIFIER: OnceLock<Verifier> = OnceLock::new();
    VERIFIER.get_or_init(|| {
        let config: AuthConfig = toml::from_str(&format!(
            "algorithm = \"HS256\"\nsecret = \"{TENANT_SECRET}\"\naudience = \"mux\"\n\
             [operator]\nalgorithm = \"HS256\"\nsecret = \"{OPERATOR_SECRET}\"\n\
             audience = \"mux-operator\"\n"
        ))
        .expect("the fuzz auth configuration parses");
        Verifier::new(&config).expect("the fuzz auth configuration is valid")
    })
}

fn jwt(data: &[u8]) {
    let Some(text) = text(data) else { return };
    let token = bearer_token(text).unwrap_or(text);
    if let Ok(principal) = verifier().authenticate(token) {
        // Only the seeds are signed: a token that still verifies must be one of
        // theirs (the header around it may differ), or a forged token got through.
        let signed = jwt_seeds()
            .iter()
            .any(|s| text_token(s).is_some_and(|t| t == token.trim()));
        assert!(signed, "an altered token was accepted: {principal:?}");
    }
}

/// The token of a seed (`Bearer <token>`).
fn text_token(seed: &[u8]) -> Option<&str> {
    text(seed).and_then(bearer_token)
}

fn jwt_seeds() -> Vec<Vec<u8>> {
    // Fixed claims (no `iat` from the clock): the seeds are the same in every process,
    // so a corpus written by one run is still "the seeds" in the next.
    let sign = |claims: serde_json::Value, secret: &str| {
        let token = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
        )
        .expect("HS256 tokens sign");
        format!("Bearer {token}").into_bytes()
    };
    // 2100-01-01: long enough that a kept seed outlives any run of the tests.
    let exp = 4_102_444_800u64;
    vec![
        sign(
            serde_json::json!({"tenant": "acme", "scope": "read write", "aud": "mux",
                               "sub": "fuzz", "iat": 1_700_000_000u64, "exp": exp}),
            TENANT_SECRET,
        ),
        sign(
            serde_json::json!({"aud": "mux-operator", "sub": "fuzz",
                               "iat": 1_700_000_000u64, "exp": exp}),
            OPERATOR_SECRET,
        ),
    ]
}

fn tags_header(data: &[u8]) {
    if let Some(text) = text(data) {
        muxd::fuzz::tags_header(text);
    }
}

fn tags_header_seeds() -> Vec<Vec<u8>> {
    [
        "env=prod",
        "note=a%2Cb, owner=t%C3%A9am",
        "a=,b=c",
        " x = y ",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect()
}

fn import_line(data: &[u8]) {
    let Some(text) = text(data) else { return };
    if let Ok(Line::Record(record)) = parse_line(text, 1) {
        let again = parse_line(&record_line(&record), 1).expect("own export line");
        assert_eq!(again, Line::Record(record));
    }
}

fn import_line_seeds() -> Vec<Vec<u8>> {
    let mut seeds: Vec<Vec<u8>> = records()
        .iter()
        .map(|r| record_line(r).into_bytes())
        .collect();
    seeds.push(br#"{"mux_export":1,"created":"2026-01-01T00:00:00Z"}"#.to_vec());
    seeds.push(br#"{"end":true,"records":5}"#.to_vec());
    seeds
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The JWT seeds verify (one tenant, one operator), so the fuzzer starts on the
    /// accepting path and every mutation must fall off it.
    #[test]
    fn the_jwt_seeds_verify() {
        for seed in jwt_seeds() {
            let token = text_token(&seed).expect("a bearer header");
            verifier()
                .authenticate(token)
                .unwrap_or_else(|e| panic!("{token}: {e:?}"));
        }
    }

    /// The seeds are records each store reads back whole, so the fuzzer starts from
    /// inputs that pass every check and the round trip is exercised.
    #[test]
    fn every_store_reads_its_seed_records_back() {
        for record in records() {
            let back = |decoded: Result<Record>, store: &str| {
                let decoded = decoded.unwrap_or_else(|e| panic!("{store}: {e}"));
                assert_eq!(decoded, record, "{store}");
            };
            let through = |pairs: Vec<(String, Vec<u8>)>| fields(&encode_fields(&pairs));
            let key = fuzz_key();
            back(
                mux_redis::fuzz::decode(key.clone(), &through(mux_redis::fuzz::stored(&record))),
                "redis",
            );
            back(
                mux_postgres::fuzz::decode(
                    key.clone(),
                    &through(mux_postgres::fuzz::stored(&record)),
                ),
                "postgres",
            );
            back(
                mux_s3::fuzz::decode(
                    key.clone(),
                    &through(mux_s3::fuzz::stored(&record).unwrap()),
                ),
                "s3",
            );
            back(
                mux_azure::fuzz::decode(
                    key.clone(),
                    &through(mux_azure::fuzz::stored(&record).unwrap()),
                ),
                "azure",
            );
            back(
                mux_dynamodb::fuzz::decode_item(&through(mux_dynamodb::fuzz::stored(&record))),
                "dynamodb",
            );
            back(
                mux_ssm::fuzz::decode(key, &through(mux_ssm::fuzz::stored(&record).unwrap())),
                "ssm",
            );
        }
    }
}
