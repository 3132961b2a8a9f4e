// kafkajs against a SASL_PLAINTEXT or SASL_SSL Kafka listener (tests/tests/sasl.rs, tls.rs),
// from its public API; over TLS when KEEL_SSL_CA names the CA the broker's certificate is
// checked against.
// Usage: node kafkajs_sasl_test.js BOOTSTRAP PHASE PREFIX, the mechanism, user and password
// in KEEL_SASL_MECHANISM (scram-sha-512, scram-sha-256, plain), KEEL_SASL_USER,
// KEEL_SASL_PASSWORD. Phases: `work` (create a topic, produce 100 keyed records acks=all,
// read them in a group, delete the topic) and `refused` (the credentials are wrong:
// kafkajs's KafkaJSSASLAuthenticationError).
const path = require('path');
const need = (name) => require(path.join(process.env.KEEL_NODE_MODULES, name));
const { Kafka, logLevel } = need('kafkajs');

const [bootstrap, phase, prefix] = process.argv.slice(2);
const sasl = {
  mechanism: process.env.KEEL_SASL_MECHANISM,
  username: process.env.KEEL_SASL_USER,
  password: process.env.KEEL_SASL_PASSWORD,
};
const ca = process.env.KEEL_SSL_CA;
const ssl = ca ? { ca: [require('fs').readFileSync(ca)] } : false;
const kafka = new Kafka({
  clientId: 'keel-kafkajs-sasl', brokers: [bootstrap], ssl, sasl,
  logLevel: logLevel.NOTHING, retry: { retries: 2 },
});
const topic = `${prefix}-topic`;
const COUNT = 100;

function check(condition, what) {
  if (!condition) {
    console.log(`FAILED: ${what}`);
    process.exit(1);
  }
  console.log(`ok: ${what}`);
}

async function work() {
  const admin = kafka.admin();
  await admin.connect();
  await admin.createTopics({ topics: [{ topic, numPartitions: 2 }], waitForLeaders: true });
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  const messages = [...Array(COUNT).keys()].map((i) => ({ key: `k${i}`, value: `v${i}` }));
  await producer.send({ topic, acks: -1, messages });
  await producer.disconnect();
  const consumer = kafka.consumer({ groupId: `${prefix}-group` });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  const seen = new Map();
  await consumer.run({ eachMessage: async ({ message }) => {
    seen.set(message.key.toString(), message.value.toString());
  } });
  const deadline = Date.now() + 60000;
  while (seen.size < COUNT && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 100));
  }
  await consumer.disconnect();
  check(seen.size === COUNT && seen.get('k7') === 'v7', `the group read every record (${seen.size})`);
  await admin.deleteTopics({ topics: [topic] });
  check(!(await admin.listTopics()).includes(topic), 'the topic is deleted');
  await admin.disconnect();
}

async function refused() {
  const admin = kafka.admin();
  try {
    await admin.connect();
    await admin.listTopics();
    check(false, 'the admin client is refused');
  } catch (e) {
    const name = e.name || '';
    const cause = (e.cause && e.cause.name) || '';
    check(name === 'KafkaJSSASLAuthenticationError' || cause === 'KafkaJSSASLAuthenticationError'
      || /SASL/.test(String(e.message)), `kafkajs reports a SASL authentication error (${name}: ${e.message})`);
  }
}

({ work, refused })[phase]().then(() => {
  console.log('PASSED');
  process.exit(0);
}, (e) => {
  console.log(`FAILED: ${e.stack || e}`);
  process.exit(1);
});
