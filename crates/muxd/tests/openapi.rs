//! The OpenAPI document against the server's real answers: every response a route gives
//! (success and each error it can be made to return) has its status listed for that
//! route, and its JSON body validates against the documented schema (with `$ref`s
//! resolved in the document's components).

mod common;

use common::{Reply, request};
use muxd::ServerConfig;
use serde_json::{Value, json};

/// The documented response of `method path` (a template such as `/v1/kv/{key}`) for
/// `status`.
fn documented<'a>(doc: &'a Value, template: &str, method: &str, status: u16) -> &'a Value {
    let operation = &doc["paths"][template][method.to_lowercase()];
    assert!(
        operation.is_object(),
        "{method} {template} is not in the document"
    );
    let response = &operation["responses"][status.to_string()];
    assert!(
        response.is_object(),
        "{method} {template} answered {status}, which the document does not list: {}",
        operation["responses"]
    );
    response
}

/// Validates `instance` against `schema`, resolving `#/components/...` in `doc`.
fn validate(doc: &Value, schema: &Value, instance: &Value, what: &str) {
    let mut root = schema.clone();
    root.as_object_mut()
        .expect("schemas are objects")
        .insert("components".into(), doc["components"].clone());
    let validator = jsonschema::validator_for(&root)
        .unwrap_or_else(|e| panic!("{what}: the documented schema does not compile: {e}"));
    let errors: Vec<String> = validator
        .iter_errors(instance)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{what}: the answer does not match the document: {errors:?}\n{instance}"
    );
}

/// Checks one real answer against the document.
fn check(doc: &Value, template: &str, method: &str, reply: &Reply) {
    let what = format!("{method} {template} → {}", reply.status);
    let response = documented(doc, template, method, reply.status);
    let content = &response["content"];
    let json_schema = &content["application/json"]["schema"];
    let is_json = reply
        .header("content-type")
        .is_some_and(|ct| ct.starts_with("application/json"));
    if method == "HEAD" {
        assert!(reply.body.is_empty(), "{what}: HEAD has no body");
    } else if json_schema.is_object() {
        assert!(
            is_json,
            "{what}: documented as JSON, got {:?}",
            reply.header("content-type")
        );
        validate(doc, json_schema, &reply.json(), &what);
    } else {
        assert!(
            !is_json || content.is_object(),
            "{what}: an undocumented JSON body: {}",
            reply.text()
        );
    }
    if let Some(headers) = response["headers"].as_object() {
        for name in headers.keys() {
            if reply.status == 200 && name != "x-mux-tags" {
                assert!(
                    reply.header(name).is_some(),
                    "{what}: header {name} is documented but absent"
                );
            }
        }
    }
}

/// A request: method, the documented path template, the path sent, headers, body.
type Case<'a> = (&'a str, &'a str, &'a str, Vec<(&'a str, &'a str)>, &'a [u8]);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_answers_match_the_openapi_document() {
    let dir = tempfile::tempdir().unwrap();
    let text = common::embedded_config(dir.path())
        .replace("max_body_bytes = 8388608", "max_body_bytes = 1024");
    let config = ServerConfig::from_toml(&text).unwrap();
    let state = muxd::build(&config).await.unwrap();
    let mux = state.mux();
    let server = muxd::serve(&config, state).await.unwrap();
    let a = server.addr;

    let doc = request(a, "GET", "/openapi.json", &[], b"").await.json();
    assert_eq!(doc["openapi"].as_str().map(|v| &v[..2]), Some("3."));

    let kv = "/v1/kv/{key}";
    let tagged = [("x-mux-tags", "class=pii"), ("content-type", "text/plain")];
    let cases: Vec<Case> = vec![
        // PUT: 200, 400 (key, header, tags, unreachable level), 413.
        ("PUT", kv, "/v1/kv/c/a", tagged.to_vec(), b"v"),
        ("PUT", kv, "/v1/kv/c/a//b", vec![], b"v"),
        ("PUT", kv, "/v1/kv/c/%FF", vec![], b"v"),
        (
            "PUT",
            kv,
            "/v1/kv/c/a",
            vec![("x-mux-consistency", "at_least:3")],
            b"v",
        ),
        ("PUT", kv, "/v1/kv/c/a", vec![("x-mux-tags", "nope")], b"v"),
        ("PUT", kv, "/v1/kv/c/big", vec![], &[b'x'; 2048]),
        // GET / HEAD: 200, 400, 404.
        ("GET", kv, "/v1/kv/c/a", vec![], b""),
        (
            "GET",
            kv,
            "/v1/kv/c/a",
            vec![("x-mux-read-policy", "slowest")],
            b"",
        ),
        ("GET", kv, "/v1/kv/c/missing", vec![], b""),
        ("HEAD", kv, "/v1/kv/c/a", vec![], b""),
        ("HEAD", kv, "/v1/kv/c/missing", vec![], b""),
        ("HEAD", kv, "/v1/kv/a/../b", vec![], b""),
        // List: 200, 400.
        ("GET", "/v1/kv", "/v1/kv?prefix=c&limit=1", vec![], b""),
        ("GET", "/v1/kv", "/v1/kv?limit=0", vec![], b""),
        ("GET", "/v1/kv", "/v1/kv?limit=x", vec![], b""),
        ("GET", "/v1/kv", "/v1/kv?prefix=a//b", vec![], b""),
        // DELETE: 200, 404, 400.
        ("DELETE", kv, "/v1/kv/c/a", vec![], b""),
        ("DELETE", kv, "/v1/kv/c/a", vec![], b""),
        (
            "DELETE",
            kv,
            "/v1/kv/c/a",
            vec![("x-mux-consistency", "most")],
            b"",
        ),
        // Temporal reads on routes without history, and bad input: 400.
        ("GET", "/v1/history/{key}", "/v1/history/c/a", vec![], b""),
        (
            "GET",
            "/v1/history/{key}",
            "/v1/history/c/a?limit=0",
            vec![],
            b"",
        ),
        ("GET", kv, "/v1/kv/c/a?as_of=0", vec![], b""),
        ("GET", kv, "/v1/kv/c/a?as_of=soon", vec![], b""),
        // The rest.
        ("GET", "/healthz", "/healthz", vec![], b""),
        ("GET", "/readyz", "/readyz", vec![], b""),
        ("GET", "/metrics", "/metrics", vec![], b""),
    ];
    for (method, template, path, headers, body) in cases {
        let reply = request(a, method, path, &headers, body).await;
        check(&doc, template, method, &reply);
    }

    // Unknown routes and methods answer the documented error body.
    let error_body = json!({"$ref": "#/components/schemas/ErrorBody"});
    for (method, path, status) in [("GET", "/nope", 404), ("PATCH", "/v1/kv/a", 405)] {
        let reply = request(a, method, path, &[], b"").await;
        assert_eq!(reply.status, status);
        validate(&doc, &error_body, &reply.json(), path);
    }

    // Headers with their allowed values, `limit` with its bounds.
    let params =
        |template: &str, method: &str| doc["paths"][template][method]["parameters"].clone();
    let find = |params: &Value, name: &str| {
        params
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("parameter {name} missing"))
            .clone()
    };
    let consistency = find(&params(kv, "put"), "x-mux-consistency");
    let pattern = consistency["schema"]["pattern"].as_str().unwrap();
    for value in ["all", "quorum", "one", "primary", "at_least:2"] {
        assert!(
            pattern.contains(value.split(':').next().unwrap()),
            "{pattern}"
        );
    }
    // Optional, not nullable: a client would send the text "null".
    assert_eq!(consistency["schema"]["type"], "string", "{consistency}");
    assert_eq!(consistency["required"], false);
    let policy = find(&params(kv, "get"), "x-mux-read-policy");
    assert!(
        policy["schema"]["pattern"]
            .as_str()
            .unwrap()
            .contains("first_healthy")
    );
    let tags = find(&params(kv, "put"), "x-mux-tags");
    assert!(tags["description"].as_str().unwrap().contains("name=value"));
    // The documented grammar and the server agree on what is a valid header value.
    for (name, samples) in [
        (
            "x-mux-tags",
            &[
                "class=pii",
                "class=pii, team=core",
                "note=a%2Cb%3Dc%20d",
                "empty=",
                "a=b=c",
                "a=b c",
                "null",
                "=v",
                "a=1,,b=2",
                "a=%zz",
                ",",
            ][..],
        ),
        (
            "x-mux-consistency",
            &["all", "at_least:2", "most", "at_least:0"][..],
        ),
    ] {
        let schema = find(&params(kv, "put"), name)["schema"].clone();
        let matches = jsonschema::validator_for(&schema).unwrap();
        for value in samples {
            let documented_valid = matches.is_valid(&json!(value));
            let reply = request(a, "PUT", "/v1/kv/c/tags", &[(name, value)], b"v").await;
            assert_eq!(
                reply.status == 200,
                documented_valid,
                "{name}: {value:?}: the document says valid={documented_valid}, the server answered {}",
                reply.text()
            );
        }
    }
    let reply = request(
        a,
        "PUT",
        "/v1/kv/c/tags",
        &[("x-mux-consistency", "")],
        b"v",
    )
    .await;
    assert_eq!(reply.status, 400, "an empty option header is a mistake");

    let limit = find(&params("/v1/kv", "get"), "limit");
    assert_eq!(limit["schema"]["minimum"], 1);
    assert_eq!(limit["schema"]["maximum"], mux::MAX_LIST_LIMIT);

    server.shutdown(&mux).await;
}
