//! Shared benchmark plumbing: timed concurrent loops, rows and the JSON output.

use std::sync::Arc;
use std::time::{Duration, Instant};

/// The runtime every benchmark runs on: two worker threads, like the machines here.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// One operation of a benchmark row, given its index.
pub type Op =
    Arc<dyn Fn(usize) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// One benchmark row.
#[derive(Debug, Clone)]
pub struct Row {
    /// What was measured.
    pub name: &'static str,
    /// Throughput.
    pub ops_per_sec: f64,
    /// Median latency in µs.
    pub p50_us: f64,
    /// 99th percentile latency in µs.
    pub p99_us: f64,
}

fn percentile(sorted: &[Duration], q: f64) -> f64 {
    let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64() * 1e6
}

/// Runs `op(i)` for i in `0..total` over `tasks` concurrent tasks and prints a row.
pub async fn measure<F, Fut>(name: &'static str, total: usize, tasks: usize, op: F) -> Row
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send,
{
    let op = Arc::new(op);
    let started = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|t| {
            let op = op.clone();
            tokio::spawn(async move {
                let mut lat = Vec::with_capacity(total / tasks + 1);
                for i in (t..total).step_by(tasks) {
                    let s = Instant::now();
                    op(i).await;
                    lat.push(s.elapsed());
                }
                lat
            })
        })
        .collect();
    let mut all = Vec::with_capacity(total);
    for h in handles {
        all.extend(h.await.expect("bench task"));
    }
    let elapsed = started.elapsed();
    all.sort_unstable();
    let row = Row {
        name,
        ops_per_sec: total as f64 / elapsed.as_secs_f64(),
        p50_us: percentile(&all, 0.50),
        p99_us: percentile(&all, 0.99),
    };
    print_row(&row);
    row
}

/// Prints the table header.
pub fn print_header() {
    println!(
        "{:<28} {:>12} {:>10} {:>10}",
        "row", "ops/s", "p50 µs", "p99 µs"
    );
}

/// Prints one row.
pub fn print_row(row: &Row) {
    println!(
        "{:<28} {:>12.0} {:>10.1} {:>10.1}",
        row.name, row.ops_per_sec, row.p50_us, row.p99_us
    );
}

/// The row with the median throughput of several rounds.
pub fn median(mut rounds: Vec<Row>) -> Row {
    rounds.sort_by(|a, b| a.ops_per_sec.total_cmp(&b.ops_per_sec));
    rounds.swap_remove(rounds.len() / 2)
}

/// The median of a few figures (the upper one of an even count).
pub fn median_figure(figures: &[f64]) -> f64 {
    let mut sorted = figures.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() / 2]
}

/// Prints the ratios and writes `{"rows":[…],"ratios":{…}}` to `$MUX_BENCH_OUT`
/// (default `target/bench/<name>.json`).
pub fn write_json(name: &str, rows: &[Row], ratios: &[(&str, f64)]) {
    println!();
    for (k, v) in ratios {
        println!("{k:<32} {v:.3}");
    }
    let json = serde_json::json!({
        "rows": rows.iter().map(|r| serde_json::json!({
            "name": r.name, "ops_per_sec": r.ops_per_sec, "p50_us": r.p50_us, "p99_us": r.p99_us,
        })).collect::<Vec<_>>(),
        "ratios": ratios.iter().map(|(k, v)| ((*k).to_owned(), serde_json::json!(v))).collect::<serde_json::Map<_, _>>(),
    });
    let out =
        std::env::var("MUX_BENCH_OUT").unwrap_or_else(|_| format!("target/bench/{name}.json"));
    if let Some(dir) = std::path::Path::new(&out).parent() {
        std::fs::create_dir_all(dir).expect("create the bench output directory");
    }
    std::fs::write(&out, serde_json::to_string_pretty(&json).expect("json"))
        .expect("write the bench output");
    println!("\nwrote {out}");
}

/// Makes a row's operation for one round (the round number lets a row use fresh keys).
pub type MakeOp = Box<dyn Fn(usize) -> Op>;

/// Runs `rows` (name, operation for round r) in `rounds` alternating rounds of `per`
/// operations each at `concurrency`, and returns each row's median. A warm-up round
/// (round number `rounds`, a tenth of the operations, not counted) fills the pools
/// first, and every other round runs the rows in reverse order, so no row always
/// follows another's writes.
pub async fn alternate(
    rows: &[(&'static str, MakeOp)],
    rounds: usize,
    per: usize,
    concurrency: usize,
) -> Vec<Row> {
    for (name, make) in rows {
        let op = make(rounds);
        measure(name, per / 10, concurrency, move |i| op(i)).await;
    }
    println!("(warm-up above)");
    print_header();
    let mut results: Vec<Vec<Row>> = vec![Vec::new(); rows.len()];
    for round in 0..rounds {
        let mut order: Vec<usize> = (0..rows.len()).collect();
        if round % 2 == 1 {
            order.reverse();
        }
        for n in order {
            let (name, make) = &rows[n];
            let op = make(round);
            results[n].push(measure(name, per, concurrency, move |i| op(i)).await);
        }
    }
    println!("medians over {rounds} alternating rounds:");
    let medians: Vec<Row> = results.into_iter().map(median).collect();
    for r in &medians {
        print_row(r);
    }
    medians
}
