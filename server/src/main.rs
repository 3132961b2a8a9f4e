//! keel-server: the Keel broker. The storage engine it serves is in `keel-engine`; the
//! network front end lands with the broker issue.

fn main() {
    eprintln!(
        "keel-server {}: the broker is not built yet (the storage engine is: see `keel-bench engine`). \
         Track the single-node broker issue.",
        env!("CARGO_PKG_VERSION")
    );
    std::process::exit(2);
}
