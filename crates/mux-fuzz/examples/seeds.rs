//! Writes every fuzz target's seeds to `<dir>/<target>/seed-<n>` (used by
//! `cargo xtask fuzz` to start each corpus).

fn main() {
    let dir = std::env::args()
        .nth(1)
        .expect("usage: seeds <corpus directory>");
    for target in mux_fuzz::TARGETS {
        let path = std::path::Path::new(&dir).join(target.name);
        std::fs::create_dir_all(&path).expect("the corpus directory");
        for (i, seed) in (target.seeds)().iter().enumerate() {
            std::fs::write(path.join(format!("seed-{i}")), seed).expect("a seed file");
        }
    }
}
