//! keel: Keel's command-line tool. Commands arrive with the tools issue.

fn main() {
    eprintln!(
        "keel {}: commands are not built yet; see README.md",
        env!("CARGO_PKG_VERSION")
    );
    std::process::exit(2);
}
