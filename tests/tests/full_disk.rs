//! A full disk (a real 32 MiB ext4 filesystem on a loop device, mounted by the test as
//! root): produce with acks=1 (and now and then acks=all) until writes fail, then free
//! space: writes resume without a restart, and after one every acknowledged record is
//! there, intact. Before, acks=1 was answered before the write, and
//! 16 records acknowledged that way were never written when the disk filled.

use bytes::Bytes;
use keel_protocol::api::ErrorCode;
use keel_protocol::batch::{BatchBuilder, NewRecord};
use keel_tests::broker::{server_binary, Broker};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::replicated;
use replicated::{isr, leader};

/// A small ext4 filesystem mounted on a directory; unmounted when dropped.
pub(crate) struct SmallDisk {
    pub(crate) mount: PathBuf,
    _dir: tempfile::TempDir,
}

impl SmallDisk {
    pub(crate) fn new(megabytes: u32) -> SmallDisk {
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
        // No blocks reserved for root (the broker runs as root here): full is full.
        run(
            "mkfs.ext4",
            &["-q", "-F", "-m", "0", image.to_str().unwrap()],
        );
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
        let unmounted = Command::new("umount").arg(&self.mount).status();
        if !unmounted.is_ok_and(|s| s.success()) {
            // Still busy (a process on it is exiting): detach it now, freed when idle.
            let _ = Command::new("umount").arg("-l").arg(&self.mount).status();
        }
    }
}

fn batch(tag: u32) -> Bytes {
    let mut builder = BatchBuilder::new();
    builder.push(NewRecord::value(0, batch_value(tag)));
    Bytes::from(builder.finish().unwrap())
}

fn fill(path: &Path, bytes: usize) {
    std::fs::write(path, vec![7u8; bytes]).unwrap();
}

#[test]
fn a_full_disk_loses_no_acknowledged_record_with_acks_1_or_all() {
    let disk = SmallDisk::new(32);
    // Room the test gives back once the disk is full, and again before the restart (the
    // resumed segment preallocates what was freed).
    let (filler, spare) = (disk.mount.join("filler"), disk.mount.join("spare"));
    fill(&filler, 4 << 20);
    fill(&spare, 4 << 20);
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
    // Space comes back: writes resume without a restart.
    std::fs::remove_file(&filler).unwrap();
    let freed = std::time::Instant::now();
    let mut tag = 10_000u32;
    while acked.last() != Some(&tag) {
        tag += 1;
        assert!(
            freed.elapsed().as_secs() < 60,
            "writes resumed after space was freed"
        );
        match client.produce("fill", 0, 1, batch(tag)) {
            ErrorCode::None => acked.push(tag),
            _ => std::thread::sleep(std::time::Duration::from_millis(200)),
        }
    }
    eprintln!("writes resumed {:?} after space was freed", freed.elapsed());
    for tag in tag + 1..tag + 10 {
        assert_eq!(client.produce("fill", 0, -1, batch(tag)), ErrorCode::None);
        acked.push(tag);
    }
    drop(client);
    broker.stop_with(libc::SIGKILL);
    std::fs::remove_file(&spare).unwrap();
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

/// Fills what is left of the filesystem at `dir` with one file; returns its path.
pub(crate) fn fill_up(dir: &Path) -> PathBuf {
    use std::io::Write;
    let path = dir.join("all-the-rest");
    let mut file = std::fs::File::create(&path).unwrap();
    for size in [1 << 20, 4096, 512] {
        let chunk = vec![9u8; size];
        while file
            .write_all(&chunk)
            .and_then(|()| file.sync_all())
            .is_ok()
        {}
    }
    path
}

#[test]
fn a_full_disk_under_the_metadata_log_waits_instead_of_crash_looping() {
    // Goal: before, a failed metadata-log write ended the broker (exit 70), and at every
    // restart it failed again while the disk stayed full.
    let disk = SmallDisk::new(32);
    let data = disk.mount.join("data");
    let node = format!("1@127.0.0.1:{}", keel_tests::broker::free_port());
    let broker = Broker::start(&server_binary(), &data, &["--controller-voters", &node]);
    let keel = |args: &[&str]| keel_tests::tool::keel(Some(&broker), args, None);
    // The broker registers with its own controller first.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !keel(&["topic", "create", "before", "--partitions", "1"])
        .status
        .success()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "a topic before the disk fills"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let filler = fill_up(&disk.mount);
    // The metadata log's last block has room for a few more rounds; then writes fail.
    let refused = (0..200).find(|n| {
        let name = format!("during-{n}");
        !keel(&["topic", "create", &name, "--partitions", "1"])
            .status
            .success()
    });
    assert!(
        refused.is_some(),
        "metadata changes stop while the disk is full"
    );
    let mut client = broker.client();
    assert!(
        matches!(
            client.call(keel_protocol::api::Request::Metadata { topics: vec![] }),
            keel_protocol::api::Response::Metadata { .. }
        ),
        "the broker still serves"
    );
    std::fs::remove_file(filler).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let again = keel(&["topic", "create", "after", "--partitions", "1"]);
        let listed = String::from_utf8(keel(&["topic", "list"]).stdout).unwrap();
        if again.status.success() || listed.contains("after") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "metadata changes resume once space is free"
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    assert!(String::from_utf8(keel(&["topic", "list"]).stdout)
        .unwrap()
        .contains("before"));
}

#[test]
fn a_leader_whose_disk_fills_hands_leadership_to_an_in_sync_replica() {
    // Goal: before, a broker went on leading a partition whose log was offline (every
    // produce answered KafkaStorageError) until it restarted. Broker 4 (not a controller
    // voter, so only its partition logs live on the small disk) leads; its disk fills.
    use keel_tests::cluster::Cluster;
    use keel_tests::tool::ok;
    // Made first, unmounted last (after the processes on it are gone).
    let disk = SmallDisk::new(48);
    let cluster = Cluster::start(3);
    let args = [
        "--node-id",
        "4",
        "--controller-voters",
        &cluster.voters,
        "--shards",
        "1",
    ];
    let mut fourth = Broker::start(&server_binary(), &disk.mount.join("data"), &args);
    cluster.wait_for(Duration::from_secs(30), "four brokers alive", |c| {
        c.alive_brokers(0).is_some_and(|alive| alive.len() == 4)
    });
    ok(&cluster.keel(
        0,
        &["topic", "create", "spill", "--replication-factor", "3"],
    ));
    ok(&cluster.keel(
        0,
        &[
            "partition",
            "reassign",
            "spill",
            "--partition",
            "0",
            "--replicas",
            "4,1,2",
        ],
    ));
    cluster.wait_for(
        Duration::from_secs(30),
        "broker 4 leads with a full ISR",
        |c| {
            let _ = c.keel(
                0,
                &["partition", "elect-leaders", "spill", "--partition", "0"],
            );
            leader(c, 0, "spill", 0) == Some(3)
                && isr(c, 0, "spill", 0).is_some_and(|i| i.len() == 3)
        },
    );
    let filler = fill_up(&disk.mount);
    let mut client = fourth.client();
    let refused = (0..2_000).find_map(|tag| match client.produce("spill", 0, -1, batch(tag)) {
        ErrorCode::None => None,
        error => Some((tag, error)),
    });
    eprintln!("broker 4 refused: {refused:?}");
    assert!(refused.is_some(), "the full disk refuses writes");
    let full = std::time::Instant::now();
    cluster.wait_for(Duration::from_secs(20), "another replica leads", |c| {
        leader(c, 0, "spill", 0).is_some_and(|l| l != 3)
    });
    eprintln!(
        "leadership moved {:?} after the disk filled",
        full.elapsed()
    );
    let now = leader(&cluster, 0, "spill", 0).unwrap();
    let mut client = cluster.nodes[now].client();
    assert_eq!(
        client.produce("spill", 0, -1, batch(9_999)),
        ErrorCode::None
    );
    std::fs::remove_file(filler).unwrap();
    fourth.stop();
}
