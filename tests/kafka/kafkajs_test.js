// kafkajs against Keel's Kafka listener, from the client's public API.
// Usage: node kafkajs_test.js BOOTSTRAP PHASE PREFIX (phases: main, commit, resume).
const path = require('path');
const nodeModules = process.env.KEEL_NODE_MODULES;
const need = (name) => require(path.join(nodeModules, name));
const { Kafka, CompressionTypes, CompressionCodecs, ConfigResourceTypes, logLevel } = need('kafkajs');
CompressionCodecs[CompressionTypes.Snappy] = need('kafkajs-snappy');
const LZ4 = need('kafkajs-lz4');
CompressionCodecs[CompressionTypes.LZ4] = new LZ4().codec;

const [bootstrap, phase, prefix] = process.argv.slice(2);
const kafka = new Kafka({ clientId: 'keel-kafkajs', brokers: [bootstrap], logLevel: logLevel.WARN });
const PARTITIONS = 4;

function check(condition, what) {
  if (!condition) {
    console.log(`FAILED: ${what}`);
    process.exit(1);
  }
  console.log(`ok: ${what}`);
}

// Kafka's murmur2, as the Java client computes it (32-bit arithmetic).
function murmur2(data) {
  const m = 0x5bd1e995;
  let h = (0x9747b28c ^ data.length) >>> 0;
  const mul = (a, b) => Math.imul(a, b) >>> 0;
  const len4 = data.length >> 2;
  for (let i = 0; i < len4; i++) {
    let k = data.readUInt32LE(i * 4);
    k = mul(k, m); k = (k ^ (k >>> 24)) >>> 0; k = mul(k, m);
    h = mul(h, m); h = (h ^ k) >>> 0;
  }
  const tail = len4 * 4;
  switch (data.length & 3) {
    case 3: h = (h ^ (data[tail + 2] << 16)) >>> 0; // falls through
    case 2: h = (h ^ (data[tail + 1] << 8)) >>> 0; // falls through
    case 1: h = (h ^ data[tail]) >>> 0; h = mul(h, m);
  }
  h = (h ^ (h >>> 13)) >>> 0; h = mul(h, m); h = (h ^ (h >>> 15)) >>> 0;
  return h;
}
const partitionFor = (key) => (murmur2(Buffer.from(key)) & 0x7fffffff) % PARTITIONS;
check(murmur2(Buffer.from('21')) === (-973932308 >>> 0), 'murmur2 matches Kafka\'s vectors');

async function waitFor(what, condition, timeoutMs = 20000) {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    check(Date.now() < deadline, what);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function produce(topic, messages, compression = CompressionTypes.None) {
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  const result = await producer.send({ topic, acks: -1, compression, messages });
  await producer.disconnect();
  return result;
}

async function collect(groupId, topic, fromBeginning, count, options = {}) {
  const consumer = kafka.consumer({ groupId, ...options });
  const assigned = { partitions: [] };
  consumer.on(consumer.events.GROUP_JOIN, (e) => { assigned.partitions = e.payload.memberAssignment[topic] || []; });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning });
  const got = [];
  await consumer.run({ autoCommit: false, eachMessage: async ({ partition, message }) => { got.push({ partition, message }); } });
  return { consumer, got, assigned };
}

async function main(admin) {
  const topic = `${prefix}-t`;
  const doomed = `${prefix}-doomed`;
  const cluster = await admin.describeCluster();
  check(cluster.brokers.length >= 1, 'describe cluster lists the broker');
  await admin.createTopics({ topics: [{ topic, numPartitions: PARTITIONS }, { topic: doomed }], waitForLeaders: true });
  await admin.deleteTopics({ topics: [doomed] });
  await waitFor('deleted topic leaves the metadata', async () => !(await admin.listTopics()).includes(doomed));
  const metadata = await admin.fetchTopicMetadata({ topics: [topic] });
  check(metadata.topics[0].partitions.length === PARTITIONS, 'metadata: partitions');

  const codecs = [['none', CompressionTypes.None], ['gzip', CompressionTypes.GZIP],
    ['snappy', CompressionTypes.Snappy], ['lz4', CompressionTypes.LZ4]];
  const sent = new Map();
  for (const [name, codec] of codecs) {
    const messages = [];
    for (let i = 0; i < 40; i++) messages.push({ key: `${name}-key-${i}`, value: `${name}-value-${i}` });
    const result = await produce(topic, messages, codec);
    check(result.every((r) => r.errorCode === 0), `${name}: acknowledged with acks=all`);
    messages.forEach((m) => sent.set(m.key, m.value));
  }
  const middle = Date.now();
  await new Promise((r) => setTimeout(r, 50));
  await produce(topic, [{ key: 'late-key', value: 'late-value' }]);

  const earliest = await collect(`${prefix}-earliest`, topic, true, sent.size + 1);
  await waitFor('earliest: every record', async () => earliest.got.length >= sent.size + 1, 30000);
  await earliest.consumer.disconnect();
  check(earliest.got.length === sent.size + 1, `earliest: ${earliest.got.length} records`);
  const wrong = earliest.got.filter(({ partition, message }) => partition !== partitionFor(message.key));
  check(wrong.length === 0, 'every key on its murmur2 partition');
  check(earliest.got.every(({ message }) => (sent.get(message.key.toString()) || 'late-value') === message.value.toString()), 'values intact');

  const byTime = await admin.fetchTopicOffsetsByTimestamp(topic, middle);
  const latePartition = partitionFor('late-key');
  const lateRecord = earliest.got.find(({ message }) => message.key.toString() === 'late-key');
  const atTime = byTime.find((p) => p.partition === latePartition);
  check(atTime.offset === lateRecord.message.offset, `offset for time ${atTime.offset}`);

  const latest = await collect(`${prefix}-latest`, topic, false, 1);
  await new Promise((r) => setTimeout(r, 3000));
  await produce(topic, [{ key: 'newest-key', value: 'newest' }]);
  await waitFor('latest: the newest record', async () => latest.got.length >= 1);
  await new Promise((r) => setTimeout(r, 300));
  await latest.consumer.disconnect();
  check(latest.got.length === 1 && latest.got[0].message.value.toString() === 'newest', 'latest: only the newest record');

  const group = `${prefix}-pair`;
  const total = sent.size + 2;
  const pair = [];
  for (let i = 0; i < 2; i++) pair.push(await collect(group, topic, true, total, { sessionTimeout: 10000, heartbeatInterval: 500 }));
  await waitFor('the pair reads everything', async () => {
    const partitions = new Set(pair.flatMap((c) => c.got.map((g) => `${g.partition}:${g.message.offset}`)));
    return partitions.size >= total && pair.every((c) => c.got.length > 0);
  }, 60000);
  await waitFor('both members assigned', async () => pair.every((c) => c.assigned.partitions.length > 0));
  const [a, b] = pair.map((c) => c.assigned.partitions);
  check(a.every((p) => !b.includes(p)), `no partition twice: ${a} / ${b}`);
  check(new Set([...a, ...b]).size === PARTITIONS, 'every partition assigned');
  const described = await admin.describeGroups([group]);
  check(described.groups[0].members.length === 2, 'describe groups: two members');
  for (const c of pair) await c.consumer.disconnect();
  const reads = pair.flatMap((c) => c.got.map((g) => `${g.partition}:${g.message.offset}`));
  check(new Set(reads).size === total, `the pair read ${new Set(reads).size} of ${total}`);

  const configs = await admin.describeConfigs({ resources: [{ type: ConfigResourceTypes.TOPIC, name: topic }], includeSynonyms: false });
  check(configs.resources[0].configEntries.some((e) => e.configName === 'retention.ms'), 'describe configs lists retention.ms');
}

async function commit(admin) {
  const topic = `${prefix}-resume`;
  await admin.createTopics({ topics: [{ topic, numPartitions: 2 }], waitForLeaders: true });
  const messages = [];
  for (let i = 0; i < 20; i++) messages.push({ key: `k${i}`, value: `v${i}` });
  await produce(topic, messages);
  const consumer = kafka.consumer({ groupId: `${prefix}-resume` });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  let read = 0;
  await consumer.run({
    autoCommit: false,
    eachMessage: async ({ partition, message }) => {
      if (read >= 8) return;
      read += 1;
      await consumer.commitOffsets([{ topic, partition, offset: (BigInt(message.offset) + 1n).toString() }]);
    },
  });
  await waitFor('read part of the topic', async () => read >= 8);
  await consumer.disconnect();
  const offsets = await admin.fetchOffsets({ groupId: `${prefix}-resume`, topics: [topic] });
  const committed = offsets[0].partitions.reduce((sum, p) => sum + Math.max(0, Number(p.offset)), 0);
  check(committed === 8, `committed 8 records' offsets (${JSON.stringify(offsets[0].partitions)})`);
}

async function resume(admin) {
  const topic = `${prefix}-resume`;
  const offsets = await admin.fetchOffsets({ groupId: `${prefix}-resume`, topics: [topic] });
  const committed = offsets[0].partitions.reduce((sum, p) => sum + Math.max(0, Number(p.offset)), 0);
  check(committed === 8, 'offsets survived the restart');
  const { consumer, got } = await collect(`${prefix}-resume`, topic, true, 12);
  await waitFor('resumed', async () => got.length >= 12, 30000);
  await new Promise((r) => setTimeout(r, 500));
  await consumer.disconnect();
  check(got.length === 12, `resumed with the remaining 12 records (got ${got.length})`);
}

(async () => {
  const admin = kafka.admin();
  await admin.connect();
  try {
    await ({ main, commit, resume })[phase](admin);
  } finally {
    await admin.disconnect();
  }
  console.log('PASSED');
  process.exit(0);
})().catch((e) => {
  console.log(`FAILED: ${e.stack || e}`);
  process.exit(1);
});
