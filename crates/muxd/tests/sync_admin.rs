//! Consistency checks and migration through muxd's admin API (`mux-sync`): verify,
//! repair, backfill and GC jobs, export and import, operators only, over real sockets
//! and memory stores. Every answer is checked against the OpenAPI document too.

mod common;

use std::time::Duration;

use common::{Reply, request};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use mux::{Key, Record};
use muxd::ServerConfig;
use serde_json::{Value, json};

const TENANT_SECRET: &str = "the-tenants-hs256-secret-32-bytes-long";
const OPERATOR_SECRET: &str = "the-operators-hs256-secret-32-bytes-long";

/// Two memory stores `a` (primary) and `b` (replica) under every key, JWT tenants and
/// an operator; a small body limit, which imports are not bound by.
const CONFIG: &str = r#"
listen = "127.0.0.1:0"
grpc_listen = "127.0.0.1:0"
max_body_bytes = 4096

[auth]
mode = "jwt"
algorithm = "HS256"
secret = "the-tenants-hs256-secret-32-bytes-long"
audience = "muxd"

[auth.operator]
algorithm = "HS256"
secret = "the-operators-hs256-secret-32-bytes-long"
audience = "muxd-operator"

[[backends]]
name = "a"
kind = "memory"

[[backends]]
name = "b"
kind = "memory"

[mux]
node_id = 1

[mux.default]
backends = [{ backend = "a", role = "primary" }, { backend = "b", role = "replica" }]
write = "all"
"#;

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn sign(claims: Value, secret: &str) -> String {
    let token = encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap();
    format!("Bearer {token}")
}

fn operator() -> String {
    sign(
        json!({"sub": "ops", "aud": "muxd-operator", "exp": now() + 600}),
        OPERATOR_SECRET,
    )
}

fn tenant_admin() -> String {
    sign(
        json!({"tenant": "acme", "scope": "read write admin", "aud": "muxd", "exp": now() + 600}),
        TENANT_SECRET,
    )
}

struct Node {
    server: muxd::Server,
    mux: mux::Mux,
    doc: Value,
}

impl Node {
    async fn start() -> Node {
        let config = ServerConfig::from_toml(CONFIG).unwrap();
        let state = muxd::build(&config).await.unwrap();
        let mux = state.mux();
        let server = muxd::serve(&config, state).await.unwrap();
        let doc = request(server.addr, "GET", "/openapi.json", &[], b"")
            .await
            .json();
        Node { server, mux, doc }
    }

    /// An operator's request, its answer checked against the document (`template`:
    /// the documented path).
    async fn call(&self, method: &str, template: &str, path: &str, body: &[u8]) -> Reply {
        let auth = operator();
        let reply = request(
            self.server.addr,
            method,
            path,
            &[("authorization", auth.as_str())],
            body,
        )
        .await;
        check(&self.doc, template, method, &reply);
        reply
    }

    async fn start_job(&self, job: Value) -> Value {
        let r = self
            .call(
                "POST",
                "/v1/admin/jobs",
                "/v1/admin/jobs",
                job.to_string().as_bytes(),
            )
            .await;
        assert_eq!(r.status, 202, "{job}: {}", r.text());
        let view = r.json();
        assert!(view["id"].is_string(), "{view}");
        view
    }

    /// Starts `job` and polls it until it is no longer running (at most 10 s).
    async fn run_job(&self, job: Value) -> Value {
        let started = self.start_job(job).await;
        self.wait(&started).await
    }

    /// Polls the job `started` until it is no longer running (at most 10 s).
    async fn wait(&self, started: &Value) -> Value {
        let job = &started["kind"];
        let path = format!("/v1/admin/jobs/{}", started["id"].as_str().unwrap());
        for _ in 0..100 {
            let r = self.call("GET", "/v1/admin/jobs/{id}", &path, b"").await;
            assert_eq!(r.status, 200, "{}", r.text());
            let view = r.json();
            if view["state"] != "running" {
                return view;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{job} still running after 10 s");
    }

    fn store(&self, name: &str) -> std::sync::Arc<dyn mux::Backend> {
        self.mux.backend(name).unwrap().clone()
    }

    async fn stop(self) {
        self.server.shutdown(&self.mux).await;
    }
}

/// The documented response of `method template` for the reply's status; a JSON body
/// must validate against its schema.
fn check(doc: &Value, template: &str, method: &str, reply: &Reply) {
    let what = format!("{method} {template} → {}", reply.status);
    let operation = &doc["paths"][template][method.to_lowercase()];
    assert!(operation.is_object(), "{what}: not in the document");
    let response = &operation["responses"][reply.status.to_string()];
    assert!(
        response.is_object(),
        "{what}: status not documented: {}",
        operation["responses"]
    );
    let content_type = reply.header("content-type").unwrap_or("");
    let schema = &response["content"]["application/json"]["schema"];
    if content_type.starts_with("application/json") {
        assert!(schema.is_object(), "{what}: an undocumented JSON body");
        let mut root = schema.clone();
        root.as_object_mut()
            .unwrap()
            .insert("components".into(), doc["components"].clone());
        let validator = jsonschema::validator_for(&root).unwrap();
        let errors: Vec<String> = validator
            .iter_errors(&reply.json())
            .map(|e| format!("{e} at {}", e.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "{what}: not as documented: {errors:?}\n{}",
            reply.text()
        );
    } else {
        let media = content_type.split(';').next().unwrap_or("");
        assert!(
            response["content"][media].is_object(),
            "{what}: content type {content_type:?} not documented: {}",
            response["content"]
        );
    }
}

fn key(k: &str) -> Key {
    Key::new(k).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_finds_drift_repair_fixes_it_and_verify_agrees() {
    let node = Node::start().await;
    for i in 0..20 {
        node.mux
            .put(key(&format!("app/k{i:02}")), format!("v{i}"))
            .await
            .unwrap();
    }
    node.mux.put(key("other/x"), "elsewhere").await.unwrap();
    // Drift, written to the stores directly, bypassing mux: b has a newer app/k01, a
    // tombstone for app/k02; a alone has app/new.
    let (a, b) = (node.store("a"), node.store("b"));
    let clock = node.mux.clock();
    b.put(&Record::new(key("app/k01"), "drifted", clock.now()))
        .await
        .unwrap();
    b.put(&Record::tombstone(key("app/k02"), clock.now()))
        .await
        .unwrap();
    a.put(&Record::new(key("app/new"), "only on a", clock.now()))
        .await
        .unwrap();

    let verify = node
        .run_job(json!({"kind": "verify", "prefix": "app"}))
        .await;
    assert_eq!(verify["state"], "done", "{verify}");
    assert_eq!(verify["kind"], "verify");
    assert_eq!(verify["backends"], json!(["a", "b"]), "the route's stores");
    let report = &verify["report"];
    assert_eq!(report["checked"], 21, "{report}");
    assert_eq!(report["divergent"], 3, "{report}");
    assert_eq!(report["missing"], 1, "{report}");
    assert_eq!(report["tombstone_one_side"], 1, "{report}");
    assert_eq!(report["version_differs"], 1, "{report}");
    assert_eq!(report["repaired"], 0, "{report}");
    assert_eq!(verify["progress"]["divergent"], 3, "{verify}");
    assert!(verify["error"].is_null() && verify["finished_at_ms"].is_u64());
    let keys: Vec<&str> = report["sample"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["app/k01", "app/k02", "app/new"]);

    let repair = node
        .run_job(json!({"kind": "repair", "prefix": "app/", "ops_per_second": 1000}))
        .await;
    assert_eq!(repair["state"], "done", "{repair}");
    assert_eq!(repair["report"]["divergent"], 3, "{repair}");
    assert_eq!(repair["report"]["repaired"], 3, "{repair}");
    assert_eq!(repair["ops_per_second"], 1000);
    // The highest version won everywhere, tombstones included.
    assert_eq!(
        a.get(&key("app/k01")).await.unwrap().unwrap().value(),
        "drifted"
    );
    assert!(
        a.get(&key("app/k02"))
            .await
            .unwrap()
            .unwrap()
            .is_tombstone()
    );
    assert_eq!(
        b.get(&key("app/new")).await.unwrap().unwrap().value(),
        "only on a"
    );

    let again = node
        .run_job(
            json!({"kind": "verify", "prefix": "app", "backends": ["b", "a"], "checkpoint": true}),
        )
        .await;
    assert_eq!(again["state"], "done", "{again}");
    assert_eq!(again["report"]["divergent"], 0, "{again}");
    assert_eq!(again["report"]["checked"], 21, "{again}");
    assert_eq!(again["backends"], json!(["b", "a"]));
    let checkpoint = again["checkpoint"].as_str().expect("a checkpoint path");
    assert!(
        !std::path::Path::new(checkpoint).exists(),
        "a finished job clears its checkpoint: {checkpoint}"
    );

    // The same checkpointed job twice at once would share its checkpoint: refused.
    let slow = json!({"kind": "verify", "prefix": "app", "ops_per_second": 1, "checkpoint": true});
    let first = node.start_job(slow.clone()).await;
    let r = node
        .call(
            "POST",
            "/v1/admin/jobs",
            "/v1/admin/jobs",
            slow.to_string().as_bytes(),
        )
        .await;
    assert_eq!(r.status, 409, "{}", r.text());
    assert!(
        r.text().contains(first["id"].as_str().unwrap()),
        "{}",
        r.text()
    );
    let first = node.wait(&first).await;
    assert_eq!(first["report"]["divergent"], 0, "{first}");

    let r = node
        .call("GET", "/v1/admin/jobs", "/v1/admin/jobs", b"")
        .await;
    assert_eq!(r.status, 200);
    let jobs = r.json();
    let kinds: Vec<&str> = jobs["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["verify", "repair", "verify", "verify"]);

    let r = node
        .call("GET", "/v1/admin/jobs/{id}", "/v1/admin/jobs/nope", b"")
        .await;
    assert_eq!(r.status, 404, "{}", r.text());

    // Refused before anything starts, each with its reason.
    for (job, needle) in [
        (json!({"kind": "verify", "prefix": ""}), "empty prefix"),
        (
            json!({"kind": "verify", "prefix": "app", "backends": ["a"]}),
            "at least two",
        ),
        (
            json!({"kind": "verify", "prefix": "app", "backends": ["a", "zz"]}),
            "zz",
        ),
        (
            json!({"kind": "verify", "prefix": "app", "backends": ["a", "a"]}),
            "twice",
        ),
        (json!({"kind": "backfill", "prefix": "app"}), "target"),
        (
            json!({"kind": "gc", "prefix": "app", "backends": []}),
            "empty",
        ),
        (
            json!({"kind": "gc", "prefix": "app", "grace": "soon"}),
            "grace",
        ),
        (json!({"kind": "verify", "prefix": "a//b"}), "prefix"),
        (json!({"kind": "shuffle", "prefix": "app"}), "kind"),
        (
            json!({"kind": "verify", "prefix": "app", "colour": 1}),
            "colour",
        ),
    ] {
        let r = node
            .call(
                "POST",
                "/v1/admin/jobs",
                "/v1/admin/jobs",
                job.to_string().as_bytes(),
            )
            .await;
        assert_eq!(r.status, 400, "{job}: {}", r.text());
        let message = r.json()["error"]["message"].as_str().unwrap().to_owned();
        assert!(message.contains(needle), "{job}: {message}");
    }
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_fills_a_store_and_gc_purges_old_tombstones() {
    let node = Node::start().await;
    let (a, b) = (node.store("a"), node.store("b"));
    let clock = node.mux.clock();
    // b "joined" empty: a holds everything.
    for i in 0..30 {
        a.put(&Record::new(
            key(&format!("fill/k{i:02}")),
            format!("v{i}"),
            clock.now(),
        ))
        .await
        .unwrap();
    }
    let fill = node
        .run_job(json!({"kind": "backfill", "prefix": "fill", "target": "b"}))
        .await;
    assert_eq!(fill["state"], "done", "{fill}");
    assert_eq!(fill["target"], "b");
    assert_eq!(fill["backends"], json!(["a"]), "the sources");
    assert_eq!(fill["report"]["copied"], 30, "{fill}");
    assert_eq!(fill["report"]["failed"], 0, "{fill}");
    assert_eq!(
        b.get(&key("fill/k29")).await.unwrap().unwrap().value(),
        "v29"
    );
    let verify = node
        .run_job(json!({"kind": "verify", "prefix": "fill"}))
        .await;
    assert_eq!(verify["report"]["divergent"], 0, "{verify}");

    // Two deletes on both stores, one more only on a: GC purges the first two.
    for k in ["fill/k00", "fill/k01"] {
        node.mux
            .delete(&key(k), &mux::WriteOptions::default())
            .await
            .unwrap();
    }
    a.put(&Record::tombstone(key("fill/k02"), clock.now()))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let gc = node
        .run_job(json!({"kind": "gc", "prefix": "fill", "grace": "5ms"}))
        .await;
    assert_eq!(gc["state"], "done", "{gc}");
    assert_eq!(gc["report"]["tombstones"], 3, "{gc}");
    assert_eq!(gc["report"]["purged"], 2, "{gc}");
    assert_eq!(gc["report"]["held_back"], 1, "{gc}");
    for store in [&a, &b] {
        assert!(store.get(&key("fill/k00")).await.unwrap().is_none());
    }
    assert!(a.get(&key("fill/k02")).await.unwrap().is_some());
    let young = node.run_job(json!({"kind": "gc", "prefix": "fill"})).await;
    assert_eq!(
        young["report"]["young"], 1,
        "the default grace is 10 days: {young}"
    );
    node.stop().await;
}

fn lines(reply: &Reply) -> Vec<String> {
    reply.text().lines().map(str::to_owned).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_then_import_into_a_fresh_muxd_round_trips_exactly() {
    let source = Node::start().await;
    let writes = mux::WriteOptions {
        content_type: Some("application/octet-stream".into()),
        tags: [("class".to_owned(), "pii".to_owned())].into(),
        ..mux::WriteOptions::default()
    };
    source
        .mux
        .write(key("app/bin"), vec![0u8, 255, 10, 13], &writes)
        .await
        .unwrap();
    for i in 0..50 {
        source
            .mux
            .put(key(&format!("app/k{i:02}")), format!("value {i}\n"))
            .await
            .unwrap();
    }
    source
        .mux
        .delete(&key("app/k07"), &mux::WriteOptions::default())
        .await
        .unwrap();
    source
        .mux
        .put(key("skip/me"), "not exported")
        .await
        .unwrap();

    let path = "/v1/admin/export?prefix=app";
    let exported = source.call("GET", "/v1/admin/export", path, b"").await;
    assert_eq!(exported.status, 200, "{}", exported.text());
    assert_eq!(
        exported.header("content-type"),
        Some("application/x-ndjson")
    );
    let original = lines(&exported);
    assert_eq!(original.len(), 1 + 51 + 1, "header, 51 records, end");
    let header: Value = serde_json::from_str(&original[0]).unwrap();
    assert_eq!(
        (header["mux_export"].clone(), header["prefix"].clone()),
        (json!(1), json!("app"))
    );
    assert_eq!(original[52], r#"{"end":true,"records":51}"#);
    assert!(
        original[9].contains(r#""tombstone":true"#),
        "{}",
        original[9]
    );

    // The same records from the stores named.
    let r = source
        .call(
            "GET",
            "/v1/admin/export",
            "/v1/admin/export?prefix=app&backends=b,a",
            b"",
        )
        .await;
    assert_eq!(lines(&r)[1..], original[1..]);
    let r = source
        .call(
            "GET",
            "/v1/admin/export",
            "/v1/admin/export?prefix=app&backends=zz",
            b"",
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text());
    let r = source
        .call(
            "GET",
            "/v1/admin/export",
            "/v1/admin/export?prefix=app&as_of=soon",
            b"",
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text());
    // Found by schemathesis: an export that fails once streaming (here every key
    // changed after `as_of` and no store keeps history) ends with an error line in
    // place of its end line, which says why and which an import refuses; it used to
    // break the connection mid-chunk.
    let r = source
        .call(
            "GET",
            "/v1/admin/export",
            "/v1/admin/export?prefix=app&as_of=1",
            b"",
        )
        .await;
    assert_eq!(r.status, 200, "the status went out first: {}", r.text());
    let last = lines(&r).pop().unwrap();
    let error: Value = serde_json::from_str(&last).unwrap();
    assert_eq!(error["error"]["kind"], "unsupported", "{last}");
    let refused = mux_sync::format::parse_line(&last, 2).unwrap_err();
    assert!(refused.message().contains("cut short"), "{refused}");

    assert!(exported.body.len() > 4096, "larger than max_body_bytes");
    let target = Node::start().await;
    let imported = target
        .call(
            "POST",
            "/v1/admin/import",
            "/v1/admin/import",
            &exported.body,
        )
        .await;
    assert_eq!(imported.status, 200, "{}", imported.text());
    assert_eq!(
        imported.json(),
        json!({"records": 51, "applied": 51, "superseded": 0, "prefix": "app", "targets": ["mux"]})
    );
    let copy = target
        .call(
            "GET",
            "/v1/admin/export",
            "/v1/admin/export?prefix=app",
            b"",
        )
        .await;
    let copied = lines(&copy);
    assert_eq!(copied[1..], original[1..], "every record byte for byte");
    let copy_header: Value = serde_json::from_str(&copied[0]).unwrap();
    assert_eq!(copy_header["prefix"], "app");
    // Both stores of the route got each record.
    for store in ["a", "b"] {
        let r = target
            .store(store)
            .get(&key("app/bin"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(r.value().as_ref(), [0u8, 255, 10, 13]);
        assert_eq!(r.meta().tags.get("class").map(String::as_str), Some("pii"));
    }

    // Again: nothing changes. Into one store: only there.
    let again = target
        .call(
            "POST",
            "/v1/admin/import",
            "/v1/admin/import",
            &exported.body,
        )
        .await;
    assert_eq!(again.json()["superseded"], 51, "{}", again.text());
    assert_eq!(again.json()["applied"], 0, "{}", again.text());
    let fresh = Node::start().await;
    let one = fresh
        .call(
            "POST",
            "/v1/admin/import",
            "/v1/admin/import?backends=b",
            &exported.body,
        )
        .await;
    assert_eq!(one.json()["targets"], json!(["b"]), "{}", one.text());
    assert!(
        fresh
            .store("a")
            .get(&key("app/k00"))
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        fresh
            .store("b")
            .get(&key("app/k00"))
            .await
            .unwrap()
            .is_some()
    );

    // A damaged or cut file is refused with its reason (what came before it is in).
    let text = exported.text();
    let cut = &text[..text.rfind("{\"end\"").unwrap()];
    for (body, needle) in [
        (cut.as_bytes().to_vec(), "cut short"),
        (b"hello\n".to_vec(), "line 1"),
        (
            text.replace("\"mux_export\":1", "\"mux_export\":9")
                .into_bytes(),
            "version 9",
        ),
        (format!("{text}{text}").into_bytes(), "after the end line"),
        (vec![0xff, b'\n'], "UTF-8"),
    ] {
        let r = fresh
            .call("POST", "/v1/admin/import", "/v1/admin/import", &body)
            .await;
        assert_eq!(r.status, 400, "{needle}: {}", r.text());
        let message = r.json()["error"]["message"].as_str().unwrap().to_owned();
        assert!(message.contains(needle), "{needle}: {message}");
    }
    for node in [source, target, fresh] {
        node.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_token_is_refused_everywhere() {
    let node = Node::start().await;
    let a = node.server.addr;
    let job = node
        .start_job(json!({"kind": "verify", "prefix": "app"}))
        .await;
    let job_path = format!("/v1/admin/jobs/{}", job["id"].as_str().unwrap());
    let body = json!({"kind": "verify", "prefix": "tenants/acme/app"}).to_string();
    let cases: [(&str, &str, &str, &[u8]); 5] = [
        ("POST", "/v1/admin/jobs", "/v1/admin/jobs", body.as_bytes()),
        ("GET", "/v1/admin/jobs", "/v1/admin/jobs", b""),
        ("GET", "/v1/admin/jobs/{id}", &job_path, b""),
        (
            "GET",
            "/v1/admin/export",
            "/v1/admin/export?prefix=tenants",
            b"",
        ),
        ("POST", "/v1/admin/import", "/v1/admin/import", b"{}\n"),
    ];
    let tenant = tenant_admin();
    for (method, template, path, body) in cases {
        let r = request(a, method, path, &[("authorization", tenant.as_str())], body).await;
        assert_eq!(r.status, 403, "{method} {path}: {}", r.text());
        assert_eq!(r.json()["error"]["kind"], "permission_denied");
        assert!(r.text().contains("operator token"), "{}", r.text());
        check(&node.doc, template, method, &r);
        let r = request(a, method, path, &[], body).await;
        assert_eq!(r.status, 401, "{method} {path}: {}", r.text());
        check(&node.doc, template, method, &r);
    }
    node.stop().await;
}
