//! A full disk (a real 32 MiB ext4 filesystem on a loop device, mounted by the test as
//! root): produce with acks=1 (and now and then acks=all) until writes fail, then free
//! space and restart: every acknowledged record is there, intact. Before, acks=1 was answered before the write, and
//! 16 records acknowledged that way were never written when the disk filled.

use bytes::Bytes;
use keel_protocol::api::ErrorCode;
use keel_protocol::batch::{BatchBuilder, NewRecord};
use keel_tests::broker::{server_binary, Broker};
use std::path::{Path, PathBuf};
use std::process::Command;

/// A small ext4 filesystem mounted on a directory; unmounted when dropped.
struct SmallDisk {
    mount: PathBuf,
    _dir: tempfile::TempDir,
}

impl SmallDisk {
    fn new(megabytes: u32) -> SmallDisk {
        // SAFETY: geteuid(2) has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        assert!(
            root,
            "the full-disk test mounts a loop filesystem: run it as root"
        );
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("disk.img");
        let mount = dir.path().join("mnt");
        std::fs::create_dir(&mount).unwrap();
        let run = |program: &str, args: &[&str]| {
            let status = Command::new(program).args(args).status();
            assert!(
                status.as_ref().is_ok_and(|s| s.success()),
                "{program} {args:?} failed ({status:?}): the full-disk test needs e2fsprogs and loop devices"
            );
        };
        let size = format!("{megabytes}M");
        run("truncate", &["-s", &size, image.to_str().unwrap()]);
        run("mkfs.ext4", &["-q", "-F", image.to_str().unwrap()]);
        run(
            "mount",
            &[
                "-o",
                "loop",
                image.to_str().unwrap(),
                mount.to_str().unwrap(),
            ],
        );
        SmallDisk { mount, _dir: dir }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.mount).status();
    }
}

fn batch(tag: u32) -> Bytes {
    let mut builder = BatchBuilder::new();
    builder.push(NewRecord::value(0, batch_value(tag)));
    Bytes::from(builder.finish().unwrap())
}

fn fill(dir: &Path, bytes: usize) {
    std::fs::write(dir.join("filler"), vec![7u8; bytes]).unwrap();
}

#[test]
fn a_full_disk_loses_no_acknowledged_record_with_acks_1_or_all() {
    let disk = SmallDisk::new(32);
    // Room the test gives back once the disk is full.
    fill(&disk.mount, 4 << 20);
    let data = disk.mount.join("data");
    let mut broker = Broker::start(&server_binary(), &data, &["--shards", "1"]);
    let mut client = broker.client();
    client.create_topic("fill", 1);
    let (mut acked, mut failures) = (Vec::new(), 0);
    for tag in 0..2_000u32 {
        // Mostly acks=1, whose acknowledgements once ran ahead of the writes.
        let acks = if tag % 50 == 49 { -1 } else { 1 };
        match client.produce("fill", 0, acks, batch(tag)) {
            ErrorCode::None => acked.push(tag),
            ErrorCode::StorageError | ErrorCode::RequestTimedOut => failures += 1,
            other => panic!("produce {tag} answered {other:?}"),
        }
        if failures >= 20 {
            break;
        }
    }
    assert!(
        failures >= 20,
        "the disk filled ({} acknowledged)",
        acked.len()
    );
    assert!(
        acked.len() > 100,
        "records were stored before it did: {}",
        acked.len()
    );
    drop(client);
    broker.stop_with(libc::SIGKILL);
    std::fs::remove_file(disk.mount.join("filler")).unwrap();
    broker.restart();
    let stored: Vec<(i64, String)> = broker
        .client()
        .read_partition("fill", 0)
        .into_iter()
        .map(|(offset, _, value)| (offset, value))
        .collect();
    let tags: Vec<u32> = stored
        .iter()
        .map(|(_, value)| value.split(':').next().unwrap().parse().unwrap())
        .collect();
    for tag in &acked {
        assert!(tags.contains(tag), "acknowledged batch {tag} lost");
    }
    for (offset, value) in &stored {
        let tag: u32 = value.split(':').next().unwrap().parse().unwrap();
        assert_eq!(
            value.as_bytes(),
            &batch_value(tag)[..],
            "offset {offset} intact"
        );
    }
}

fn batch_value(tag: u32) -> Vec<u8> {
    let mut value = format!("{tag}:").into_bytes();
    value.resize(60_000, b'0' + (tag % 10) as u8);
    value
}
