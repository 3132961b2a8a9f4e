//! Architecture boundaries, checked on the source text.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn code_lines(path: &Path) -> Vec<(usize, String)> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .enumerate()
        .filter(|(_, line)| !line.trim_start().starts_with("//"))
        .map(|(index, line)| (index + 1, line.to_owned()))
        .collect()
}

#[test]
fn only_engine_io_and_server_name_the_runtime() {
    // Goal: glommio stays behind `engine::io` so a runtime change is a local edit.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let mut files = Vec::new();
    for krate in ["protocol", "auth", "kafka", "engine", "client", "tools"] {
        rust_files(&root.join(krate).join("src"), &mut files);
    }
    let mut offenders = Vec::new();
    for file in &files {
        if file.starts_with(root.join("engine/src/io")) {
            continue;
        }
        for (number, line) in code_lines(file) {
            if line.contains("glommio::") || line.contains("use glommio") {
                offenders.push(format!("{}:{number}: {}", file.display(), line.trim()));
            }
        }
    }
    assert!(files.len() > 5, "the check looked at {} files", files.len());
    assert!(
        offenders.is_empty(),
        "glommio named outside engine::io and server:\n{}",
        offenders.join("\n")
    );
}

#[test]
fn protocol_does_no_io() {
    // Goal: the formats crate stays pure.
    assert_crate_does_no_io("protocol");
}

#[test]
fn auth_does_no_io() {
    // Goal: the authentication mechanisms stay state machines (randomness is an input).
    assert_crate_does_no_io("auth");
}

#[test]
fn controller_does_no_io() {
    // Goal: the controller (records, state machine, Raft driver, simulator) stays sans-IO:
    // no runtime, no sockets, no files, no clock.
    assert_crate_does_no_io("controller");
}

#[test]
fn kafka_codec_does_no_io() {
    // Goal: the Kafka wire protocol crate (frames, request decoding, fetch encoding) stays
    // sans-IO; the listener's I/O lives in server/src/kafka/.
    assert_crate_does_no_io("kafka");
}

fn assert_crate_does_no_io(krate: &str) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let mut files = Vec::new();
    rust_files(&root.join(krate).join("src"), &mut files);
    for file in &files {
        for (number, line) in code_lines(file) {
            for banned in [
                "std::fs",
                "std::net",
                "tokio",
                "glommio",
                "Instant::now",
                "SystemTime",
            ] {
                assert!(
                    !line.contains(banned),
                    "{}:{number} uses {banned}",
                    file.display()
                );
            }
        }
    }
    assert!(!files.is_empty());
}

#[test]
fn every_file_architecture_md_names_exists() {
    // Goal: the architecture map drifted from the code (files renamed or split while the
    // map kept their old names). Every `*.rs` and `*.md` path it names in backticks, whole
    // or as the end of a path (`log/mod.rs` inside the engine's section), is a file here.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let text = std::fs::read_to_string(root.join("ARCHITECTURE.md")).unwrap();
    let mut files = Vec::new();
    for krate in [
        "auth",
        "bench",
        "client",
        "controller",
        "engine",
        "fuzz",
        "kafka",
        "protocol",
        "server",
        "tests",
        "tools",
    ] {
        rust_files(&root.join(krate), &mut files);
    }
    let files: Vec<String> = files
        .iter()
        .filter(|f| !f.components().any(|c| c.as_os_str() == "target"))
        .map(|f| f.strip_prefix(root).unwrap().to_string_lossy().into_owned())
        .collect();
    let named: Vec<&str> = text
        .split('`')
        .skip(1)
        .step_by(2)
        .map(|quoted| quoted.split(':').next().unwrap())
        .filter(|quoted| quoted.ends_with(".rs") || quoted.ends_with(".md"))
        .filter(|quoted| !quoted.contains('*'))
        .collect();
    assert!(named.len() > 50, "{} paths named", named.len());
    let missing: Vec<&&str> = named
        .iter()
        .filter(|path| {
            if path.ends_with(".md") {
                return !root.join(path).exists();
            }
            !files
                .iter()
                .any(|file| file == *path || file.ends_with(&format!("/{path}")))
        })
        .collect();
    assert!(
        missing.is_empty(),
        "ARCHITECTURE.md names files that do not exist: {missing:?}"
    );
}

#[test]
fn the_server_imports_only_from_layers_below() {
    // Goal: the server's modules imported each other in one circle (shards calling into
    // services and the Kafka listener). Layers: listeners → services → shards (and the
    // engine crates below); a module may name its own layer or lower ones. `config/`, read
    // by all, is the lowest and names no other module.
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .join("server/src");
    let layer = |module: &str| -> usize {
        match module {
            "main" | "lib" | "broker" | "accept" | "conn" | "stream" | "native_acls"
            | "native_security" | "kafka" | "background" | "ports" => 3,
            "handlers" | "group" | "offsets_migration" | "mirror" => 2,
            "shard" | "peers" | "replication" | "cluster" | "compaction" | "producers"
            | "producer_ids" | "registry" | "metrics" | "security" => 1,
            "config" => 0,
            other => {
                panic!("server/src/{other}: which layer? (add it here and to ARCHITECTURE.md)")
            }
        }
    };
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut upward = Vec::new();
    for file in &files {
        let relative = file.strip_prefix(&src).unwrap();
        let module = relative
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_owned();
        for (number, line) in code_lines(file) {
            for named in line.split("crate::").skip(1) {
                let target: String = named
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if target != module && layer(&target) > layer(&module) {
                    upward.push(format!(
                        "{}:{number}: {module} names {target}",
                        relative.display()
                    ));
                }
            }
        }
    }
    assert!(
        upward.is_empty(),
        "imports from a layer above:\n{}",
        upward.join("\n")
    );
}
