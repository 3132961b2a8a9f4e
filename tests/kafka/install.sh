#!/usr/bin/env bash
# Installs the Kafka clients the conformance tests (tests/tests/kafka_clients.rs) drive, into
# target/ and only once: a Python venv with confluent-kafka, kafka-python, aiokafka and the
# codecs they use, kafkajs with its snappy and lz4 codecs, and kcat from Debian's packages
# (as root) when it is missing. Versions are pinned so a run tests what was tested before.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"
venv="$target/kafka-venv"
node="$target/kafka-node"
if [[ ! -f "$venv/.installed-1" ]]; then
    echo "installing Python Kafka clients into $venv" >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check \
        confluent-kafka==2.16.1 kafka-python==3.0.12 aiokafka==0.14.0 \
        python-snappy==0.7.3 lz4==4.4.5 zstandard==0.25.0 cramjam==2.14.0
    touch "$venv/.installed-1"
fi
if [[ ! -f "$node/.installed-1" ]]; then
    echo "installing kafkajs into $node" >&2
    mkdir -p "$node"
    (cd "$node" && npm init -y >/dev/null &&
        npm install --no-audit --no-fund --silent kafkajs@2.2.4 kafkajs-snappy@1.1.0 kafkajs-lz4@1.2.1 >/dev/null)
    touch "$node/.installed-1"
fi
if ! command -v kcat >/dev/null; then
    if [[ "$(id -u)" -eq 0 ]]; then
        echo "installing kcat (Debian)" >&2
        apt-get update -qq && apt-get install -y -qq kcat >/dev/null
    else
        echo "kcat is missing and cannot be installed without root: apt-get install kcat" >&2
        exit 1
    fi
fi
