//! Writes a few tenant and parameter records to both embedded stores (fs and redb),
//! shows that a stale write is ignored by both, and lists what each store holds.
//!
//! ```text
//! cargo run -p mux --features embedded --example embedded -- [DATA_DIR]
//! ```
use std::sync::Arc;

use mux::fs::FsBackend;
use mux::redb::RedbBackend;
use mux::{Backend, BackendExt, Clock, Key, Prefix, Record, Result};

#[tokio::main]
async fn main() -> Result<()> {
    let data = std::env::args().nth(1).unwrap_or_else(|| "data".into());
    let stores: Vec<Arc<dyn Backend>> = vec![
        Arc::new(FsBackend::open("fs", format!("{data}/fs"))?),
        Arc::new(RedbBackend::open("redb", format!("{data}/mux.redb"))?),
    ];
    let clock = Clock::new(1);

    let records = [
        ("tenantconfig/acme/limits", "max_requests=100"),
        ("tenantconfig/globex/limits", "max_requests=250"),
        ("paramconfig/eu/timeout_ms", "1500"),
    ];
    for (key, value) in records {
        let record =
            Record::new(Key::new(key)?, value, clock.now()).with_content_type("text/plain");
        for store in &stores {
            let outcome = store.put(&record).await?;
            println!(
                "{:<5} put {key} = {value:?} -> {outcome:?}",
                store.info().name
            );
        }
    }

    // A write carrying an older version arrives late: every store ignores it.
    let key = Key::new("tenantconfig/acme/limits")?;
    let stale = Record::new(key.clone(), "max_requests=1", mux::Version::new(1, 0, 9));
    for store in &stores {
        let outcome = store.put(&stale).await?;
        let current = store.get_live(&key).await?.expect("written above");
        println!(
            "{:<5} stale put -> {outcome:?}; {key} is still {:?} at {}",
            store.info().name,
            String::from_utf8_lossy(current.value()),
            current.version()
        );
    }

    for store in &stores {
        let entries = store.list_all(&Prefix::new("tenantconfig")?).await?;
        let keys: Vec<&str> = entries.iter().map(|e| e.key.as_str()).collect();
        println!("{:<5} lists tenantconfig: {keys:?}", store.info().name);
    }
    println!("data is under {data}/ (fs: one file per record; redb: table mux_records)");
    Ok(())
}
