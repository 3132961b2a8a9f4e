"""What every Python conformance script shares: Kafka's murmur2 partitioner (as the Java
client computes it), checks that fail loudly, and the phase argument."""
import sys


def murmur2(data: bytes) -> int:
    length = len(data)
    m, r = 0x5BD1E995, 24
    h = (0x9747B28C ^ length) & 0xFFFFFFFF
    for i in range(length // 4):
        k = int.from_bytes(data[i * 4:i * 4 + 4], "little")
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> r
        k = (k * m) & 0xFFFFFFFF
        h = (h * m) & 0xFFFFFFFF
        h ^= k
    tail = length & ~3
    extra = length % 4
    if extra == 3:
        h ^= data[tail + 2] << 16
    if extra >= 2:
        h ^= data[tail + 1] << 8
    if extra >= 1:
        h ^= data[tail]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return h


def partition_for(key: bytes, partitions: int) -> int:
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def check(condition, what):
    if not condition:
        print(f"FAILED: {what}", flush=True)
        sys.exit(1)
    print(f"ok: {what}", flush=True)


def args():
    if len(sys.argv) != 4:
        print(f"usage: {sys.argv[0]} BOOTSTRAP PHASE TOPIC-PREFIX", file=sys.stderr)
        sys.exit(2)
    return sys.argv[1], sys.argv[2], sys.argv[3]


# Kafka's published UtilsTest.testMurmur2 vectors: the partitioner itself is checked.
for _key, _hash in [(b"21", -973932308), (b"foobar", -790332482), (b"abc", 479470107),
                    (b"a-little-bit-long-string", -985981536)]:
    assert murmur2(_key) == _hash & 0xFFFFFFFF, _key
