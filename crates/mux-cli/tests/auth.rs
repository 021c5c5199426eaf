//! `mux` against a muxd that requires tokens: refusals read "not authorised".

mod common;

use common::{Muxd, mux};
use jsonwebtoken::{EncodingKey, Header, encode};

const SECRET: &str = "an-hs256-secret-of-at-least-32-bytes!";

fn token(scope: &str) -> String {
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    let claims = serde_json::json!({"tenant": "acme", "scope": scope, "aud": "muxd", "exp": exp});
    encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_say_not_authorised_with_exit_status_3() {
    let server = Muxd::start_with(|text| {
        let jwt = format!(
            "[auth]\nmode = \"jwt\"\nalgorithm = \"HS256\"\nsecret = \"{SECRET}\"\naudience = \"muxd\""
        );
        let edited = text.replace("[auth]\nmode = \"off\"", &jwt);
        assert_ne!(edited, text, "the embedded config has an [auth] mode = \"off\" section");
        edited
    })
    .await;
    let url = server.url.as_str();

    let r = mux(&["--url", url, "get", "k"]).await;
    assert_eq!(r.code, Some(3), "{r:?}");
    assert!(r.err.starts_with("mux: not authorised: "), "{r:?}");
    assert!(r.err.contains("--token or MUX_TOKEN"), "{r:?}");

    let reader = token("read");
    let r = mux(&["--url", url, "--token", &reader, "put", "k", "v"]).await;
    assert_eq!(r.code, Some(3), "{r:?}");
    assert!(r.err.starts_with("mux: not authorised: "), "{r:?}");
    assert!(r.err.contains("the token does not allow this"), "{r:?}");

    let writer = token("read write");
    let r = mux(&["--url", url, "--token", &writer, "put", "k", "v"]).await;
    assert_eq!(r.code, Some(0), "{r:?}");
    let r = mux(&["--url", url, "--token", &reader, "get", "k"]).await;
    assert_eq!((r.code, r.out.as_str()), (Some(0), "v"), "{r:?}");

    let r = mux(&["--grpc", &server.grpc, "watch"]).await;
    assert_eq!(r.code, Some(3), "{r:?}");
    assert!(r.err.starts_with("mux: not authorised: "), "{r:?}");
    server.stop().await;
}
