//! The main job until `muxd` exists: a `Mux` over the two embedded stores (fs and
//! redb, under `./data` or the directory given), with tagged routing.
//!
//! ```text
//! cargo run -p mux --features embedded --example embedded -- [DATA_DIR]
//! ```
use std::sync::Arc;
use std::time::Duration;

use mux::fs::FsBackend;
use mux::redb::RedbBackend;
use mux::{
    Backend, BackendExt, Key, ListRequest, Mux, Prefix, ReadOptions, ReadPolicy, Result, Role,
    RouteConfig, WriteConsistency, WriteOptions,
};

#[tokio::main]
async fn main() -> Result<()> {
    let data = std::env::args().nth(1).unwrap_or_else(|| "data".into());
    let fs = Arc::new(FsBackend::open("fs", format!("{data}/fs"))?);
    let redb = Arc::new(RedbBackend::open("redb", format!("{data}/mux.redb"))?);

    // Tagged storage: tenant configuration on redb first, parameters on fs first;
    // every record on both stores.
    let mux = Mux::builder()
        .backend(fs.clone())
        .backend(redb.clone())
        .route(
            RouteConfig::new("tenantconfig/")
                .backend("redb", Role::Primary)
                .backend("fs", Role::Replica)
                .write(WriteConsistency::All)
                .read(ReadPolicy::Hedged {
                    delay: Some(Duration::from_millis(5)),
                }),
        )
        .route(
            RouteConfig::new("paramconfig/")
                .backend("fs", Role::Primary)
                .backend("redb", Role::Replica)
                .write(WriteConsistency::Primary)
                .read(ReadPolicy::All),
        )
        .default_route(
            RouteConfig::new("")
                .backend("redb", Role::Primary)
                .backend("fs", Role::Replica)
                .write(WriteConsistency::Quorum),
        )
        .build()?;

    for (key, value) in [
        ("tenantconfig/acme/limits", "max_requests=100"),
        ("tenantconfig/globex/limits", "max_requests=250"),
        ("paramconfig/eu/timeout_ms", "1500"),
        ("notes/readme", "anything else goes to the default route"),
    ] {
        let text = WriteOptions {
            content_type: Some("text/plain".into()),
            ..Default::default()
        };
        let report = mux.write(Key::new(key)?, value, &text).await?;
        println!("put {report}");
    }
    mux.settle().await; // let the `Primary` route's replica finish

    // A stale write (an old version replayed late) is ignored everywhere.
    let key = Key::new("tenantconfig/acme/limits")?;
    let stale = WriteOptions {
        version: Some(mux::Version::new(1, 0, 9)),
        ..Default::default()
    };
    let report = mux.write(key.clone(), "max_requests=1", &stale).await?;
    println!("stale put -> {:?}", report.put_outcome());
    let current = mux.get(&key).await?.expect("written above");
    println!(
        "{key} = {:?} at {}",
        String::from_utf8_lossy(current.value()),
        current.version()
    );

    // Read repair: fs loses a parameter; an `All` read returns redb's copy and repairs fs.
    let param = Key::new("paramconfig/eu/timeout_ms")?;
    fs.purge(&param, mux::Version::new(u64::MAX, 0, 0)).await?;
    let all = ReadOptions {
        policy: Some(ReadPolicy::All),
        ..Default::default()
    };
    println!(
        "{param} = {:?} (read at all)",
        mux.get_with(&param, &all).await?.map(|r| r.value().clone())
    );
    mux.settle().await;
    println!(
        "fs has it again: {}, read repairs: {}",
        fs.get_live(&param).await?.is_some(),
        mux.stats().read_repairs
    );

    mux.delete(&Key::new("notes/readme")?, &WriteOptions::default())
        .await?;
    let page = mux
        .list(&ListRequest::new(Prefix::all()), &ReadOptions::default())
        .await?;
    let keys: Vec<&str> = page.entries.iter().map(|e| e.key.as_str()).collect();
    println!("live keys: {keys:?}");
    println!("data is under {data}/ (fs: one file per record; redb: table mux_records)");
    Ok(())
}
