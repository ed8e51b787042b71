// kafkajs 2.2 against a broker, driven and judged by kafkajs_roundtrip.py (which builds the
// records with compat_common.py and runs every check): this program only drives kafkajs and
// writes down what kafkajs answered.
//
//   node kafkajs_roundtrip.mjs '<json plan>'
//
// The plan (from kafkajs_roundtrip.py): bootstrap, topic, partitions, codecs, records_file (one
// JSON record a line: index, codec, key and value in base64 or null, headers [[name, base64]],
// timestamp), out_file, timeout_ms, and the compaction scenario's topic, configs, plan and roll.
//
// out_file gets one JSON object a line: {"t": "call", "name", "ok", "result" | "error"} for every
// admin or client call, {"t": "codec", "codec", "available", "reason"}, {"t": "delivery",
// "index", "partition", "offset"}, {"t": "consumed", ...}, {"t": "compaction", ...}. stdout
// carries one exchange only: {"ev": "probes"} once every record was read, answered on stdin
// with a JSON list of timestamps to look up (ListOffsets by time); {"ev": "done"} at the end.
// kafkajs logs go to stderr.
//
// kafkajs specifics:
// - codecs: none and gzip are built in; snappy (kafkajs-snappy), lz4 (kafkajs-lz4) and zstd
//   (@sensejs/kafkajs-zstd-support) are plugins registered in CompressionCodecs. A plugin that
//   does not load is reported ("available": false, with the error; kafkajs_roundtrip.py fails
//   that codec: the install is broken) and its codec not run;
// - producer: idempotent: true, maxInFlightRequests: 1, acks -1 (what idempotence requires).
//   A send answers one base offset per partition, so each record's partition is chosen here
//   with kafkajs's own DefaultPartitioner (murmur2 of the key, round robin without one) and set
//   on the message: the n-th record of a send to partition p sits at base offset + n;
// - no assign(): a consumer always joins a group, so everything is read by a one-member group
//   (subscribe fromBeginning, no auto-commit), which commits the end offsets when done: the
//   group the admin calls list, describe, fetch offsets of and delete;
// - fetchTopicOffsetsByTimestamp answers the partition's end offset where Kafka says -1;
// - consumed headers come back as an object (a repeated name: an array of its values), so the
//   order kept is by first appearance of each name.
import fs from 'node:fs'
import readline from 'node:readline'
import kafkajs from 'kafkajs'

const { Kafka, logLevel, CompressionTypes, CompressionCodecs, Partitioners, ConfigResourceTypes } = kafkajs

const plan = JSON.parse(process.argv[2])
const lines = []
const emit = (object) => lines.push(JSON.stringify(object))
const flush = () => {
  if (lines.length) fs.appendFileSync(plan.out_file, lines.splice(0).join('\n') + '\n')
}
const say = (event) => process.stdout.write(JSON.stringify(event) + '\n')
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

const toStderr = () => ({ namespace, label, log }) => {
  const { message, ...extra } = log
  process.stderr.write(`${label} [${namespace}] ${message} ${JSON.stringify(extra)}\n`)
}

// call(name, fn): runs one client call, writes down its result or error, returns the result
// (undefined on error: the checks in kafkajs_roundtrip.py say what it means).
const call = async (name, fn, transform = (x) => x) => {
  try {
    const result = await fn()
    emit({ t: 'call', name, ok: true, result: transform(result) })
    return result
  } catch (error) {
    emit({ t: 'call', name, ok: false, error: `${error.name}: ${error.message}${error.type ? ` (${error.type})` : ''}` })
    return undefined
  } finally {
    flush()
  }
}

const codecTypes = {
  none: CompressionTypes.None,
  gzip: CompressionTypes.GZIP,
  snappy: CompressionTypes.Snappy,
  lz4: CompressionTypes.LZ4,
  zstd: CompressionTypes.ZSTD,
}
const plugins = {
  snappy: async () => {
    CompressionCodecs[CompressionTypes.Snappy] = (await import('kafkajs-snappy')).default
  },
  lz4: async () => {
    const LZ4Codec = (await import('kafkajs-lz4')).default
    CompressionCodecs[CompressionTypes.LZ4] = new LZ4Codec().codec
  },
  zstd: async () => {
    await import('@sensejs/kafkajs-zstd-support') // registers itself
  },
}

const kafka = new Kafka({
  clientId: 'tidepool-compat-kafkajs',
  brokers: plan.bootstrap.split(','),
  logLevel: logLevel.WARN,
  logCreator: toStderr,
  requestTimeout: 30000,
})
const admin = kafka.admin()
const producer = kafka.producer({
  idempotent: true,
  maxInFlightRequests: 1,
  allowAutoTopicCreation: false,
  createPartitioner: Partitioners.DefaultPartitioner,
})

const b64 = (buffer) => (buffer === null || buffer === undefined ? null : Buffer.from(buffer).toString('base64'))
const fromB64 = (text) => (text === null ? null : Buffer.from(text, 'base64'))
const offsetsOf = (list) => list.map(({ partition, offset, high, low }) => ({ partition, offset, high, low }))

async function readRecords() {
  const records = []
  const input = readline.createInterface({ input: fs.createReadStream(plan.records_file) })
  for await (const line of input) if (line.trim()) records.push(JSON.parse(line))
  return records
}

// Sends records in chunks, one codec at a time; writes each record's partition and offset.
async function produceCodec(codec, records, partitionMetadata) {
  const partitioner = Partitioners.DefaultPartitioner()
  const chunk = 500
  for (let start = 0; start < records.length; start += chunk) {
    const part = records.slice(start, start + chunk)
    const messages = part.map((record) => {
      const headers = {}
      for (const [name, value] of record.headers) {
        const buffer = fromB64(value)
        headers[name] = name in headers ? [].concat(headers[name], buffer) : buffer
      }
      const message = { key: fromB64(record.key), value: fromB64(record.value), headers, timestamp: String(record.timestamp) }
      message.partition = partitioner({ topic: plan.topic, partitionMetadata, message })
      return message
    })
    const answer = await producer.send({ topic: plan.topic, compression: codecTypes[codec], acks: -1, messages })
    const base = new Map(answer.map((r) => [r.partition, { offset: Number(r.baseOffset), error: r.errorCode }]))
    const rank = new Map()
    part.forEach((record, i) => {
      const partition = messages[i].partition
      const n = rank.get(partition) || 0
      rank.set(partition, n + 1)
      const reported = base.get(partition)
      if (reported && reported.error === 0) {
        emit({ t: 'delivery', index: record.index, partition, offset: reported.offset + n })
      }
    })
  }
  flush()
}

// Reads every partition from the start to `ends` with a one-member group; commits the ends.
async function consumeAll(topic, group, ends, onMessage) {
  const consumer = kafka.consumer({ groupId: group, maxWaitTimeInMs: 100, allowAutoTopicCreation: false })
  await consumer.connect()
  await consumer.subscribe({ topics: [topic], fromBeginning: true })
  const pending = new Set(Object.keys(ends).map(Number).filter((p) => ends[p] > 0))
  let finished
  const done = new Promise((resolve) => { finished = resolve })
  if (pending.size === 0) finished()
  await consumer.run({
    autoCommit: false,
    eachBatch: async ({ batch, isStale }) => {
      for (const message of batch.messages) {
        if (isStale()) return
        onMessage(batch.partition, message)
        if (Number(message.offset) + 1 >= ends[batch.partition]) pending.delete(batch.partition)
      }
      if (pending.size === 0) finished()
    },
  })
  const timer = setTimeout(() => finished(new Error(`not every partition read to its end in ${plan.timeout_ms} ms`)), plan.timeout_ms)
  const failure = await done
  clearTimeout(timer)
  if (!failure) {
    await call('consumer.commitOffsets (the end offsets)', () =>
      consumer.commitOffsets(Object.entries(ends).map(([partition, offset]) => ({ topic, partition: Number(partition), offset: String(offset) }))))
  }
  await consumer.disconnect()
  if (failure) throw failure
}

async function roundTrip() {
  const { topic } = plan
  await call('admin.createTopics', () =>
    admin.createTopics({ topics: [{ topic, numPartitions: Math.max(1, plan.partitions - 1), replicationFactor: 1 }], waitForLeaders: true }))
  if (plan.partitions > 1) {
    await call('admin.createPartitions', () => admin.createPartitions({ topicPartitions: [{ topic, count: plan.partitions }] }))
  }
  let metadata
  for (let attempt = 0; attempt < 50; attempt++) {
    metadata = await call('admin.fetchTopicMetadata', () => admin.fetchTopicMetadata({ topics: [topic] }))
    const partitions = metadata ? metadata.topics[0].partitions : []
    if (partitions.length >= plan.partitions && partitions.every((p) => p.leader >= 0)) break
    await sleep(200)
  }
  await call('admin.describeCluster', () => admin.describeCluster())
  await call('admin.fetchTopicOffsets (before producing)', () => admin.fetchTopicOffsets(topic), offsetsOf)

  const records = await readRecords()
  const partitionMetadata = metadata.topics[0].partitions
  await producer.connect()
  for (const codec of plan.codecs) {
    const plugin = plugins[codec]
    if (plugin) {
      try {
        await plugin()
      } catch (error) {
        emit({ t: 'codec', codec, available: false, reason: `the ${codec} codec plugin did not load (run npm ci in tests/compat): ${error.message.split('\n')[0]}` })
        flush()
        continue
      }
    }
    emit({ t: 'codec', codec, available: true })
    const started = Date.now()
    await call(`producer.send (${codec})`, () => produceCodec(codec, records.filter((r) => r.codec === codec), partitionMetadata), () => null)
    process.stderr.write(`produced ${codec} in ${Date.now() - started} ms\n`)
  }

  const latest = await call('admin.fetchTopicOffsets (after producing)', () => admin.fetchTopicOffsets(topic), offsetsOf)
  const ends = {}
  for (const { partition, high } of latest || []) ends[partition] = Number(high)
  const group = `${topic}-reader`
  const started = Date.now()
  await call('consumer: read every partition to its end', () =>
    consumeAll(topic, group, ends, (partition, message) => {
      const headers = []
      for (const [name, value] of Object.entries(message.headers || {})) {
        for (const one of Array.isArray(value) ? value : [value]) headers.push([name, b64(one)])
      }
      const type = message.batchContext ? message.batchContext.timestampType : -1
      emit({
        t: 'consumed',
        partition,
        offset: Number(message.offset),
        key: b64(message.key),
        value: b64(message.value),
        headers,
        timestamp: Number(message.timestamp),
        timestamp_type: type === 0 ? 'create' : type === 1 ? 'log_append' : 'unknown',
      })
    }), () => null)
  process.stderr.write(`consumed in ${Date.now() - started} ms\n`)
  flush()

  // ListOffsets by timestamp: the driver names the timestamps from what was read.
  say({ ev: 'probes' })
  const probes = JSON.parse(await new Promise((resolve) => {
    const input = readline.createInterface({ input: process.stdin })
    input.once('line', (line) => { input.close(); resolve(line) })
  }))
  for (const timestamp of probes) {
    await call(`admin.fetchTopicOffsetsByTimestamp ${timestamp}`, () => admin.fetchTopicOffsetsByTimestamp(topic, timestamp))
  }

  // Group administration, on the reader's group (empty now, with committed offsets).
  await call('admin.listGroups', () => admin.listGroups())
  await call('admin.describeGroups', () => admin.describeGroups([group]))
  await call('admin.fetchOffsets', () => admin.fetchOffsets({ groupId: group, topics: [topic] }))
  await call('admin.deleteGroups', () => admin.deleteGroups([group]))
  await call('admin.listGroups (after deleteGroups)', () => admin.listGroups())
}

async function configs() {
  const topic = plan.configs_topic
  const resource = { type: ConfigResourceTypes.TOPIC, name: topic }
  const describe = (name) =>
    call(name, () => admin.describeConfigs({ resources: [resource], includeSynonyms: false }), (answer) =>
      answer.resources[0].configEntries.map(({ configName, configValue, configSource, isDefault, readOnly }) => ({ configName, configValue, configSource, isDefault, readOnly })))
  await call('admin.createTopics (with configs)', () =>
    admin.createTopics({
      topics: [{ topic, numPartitions: 1, replicationFactor: 1, configEntries: Object.entries(plan.configs).map(([name, value]) => ({ name, value })) }],
      waitForLeaders: true,
    }))
  await describe('admin.describeConfigs (created)')
  await call('admin.alterConfigs (validateOnly)', () =>
    admin.alterConfigs({ validateOnly: true, resources: [{ ...resource, configEntries: [{ name: 'retention.ms', value: '1000' }] }] }))
  await describe('admin.describeConfigs (after validateOnly)')
  await call('admin.alterConfigs', () =>
    admin.alterConfigs({ validateOnly: false, resources: [{ ...resource, configEntries: plan.altered.map(([name, value]) => ({ name, value })) }] }))
  // Kafka answers an alter once its controller committed it and applies it from the metadata
  // log a moment later: wait (up to 5 s) for a describe that shows the altered values.
  for (let tries = 0; tries < 50; tries++) {
    const answer = await admin.describeConfigs({ resources: [resource], includeSynonyms: false })
    const entries = answer.resources[0].configEntries
    if (plan.altered.every(([name, value]) => entries.some((e) => e.configName === name && e.configValue === value))) break
    await sleep(100)
  }
  await describe('admin.describeConfigs (altered)')
  await call('admin.alterConfigs (a bad value)', () =>
    admin.alterConfigs({ validateOnly: false, resources: [{ ...resource, configEntries: [{ name: 'retention.ms', value: 'x' }] }] }))
}

async function deleteTopics() {
  const topics = [plan.topic, plan.configs_topic, plan.compaction.topic]
  await call('admin.deleteTopics', () => admin.deleteTopics({ topics }))
  let listed = []
  for (let attempt = 0; attempt < 100; attempt++) {
    listed = (await admin.listTopics()).filter((name) => topics.includes(name))
    if (listed.length === 0) break
    await sleep(200)
  }
  emit({ t: 'call', name: 'admin.listTopics (after deleteTopics)', ok: true, result: listed })
  flush()
}

// The compaction scenario of tests/matrix/README.md (plan, configs and wait from
// compaction_matrix.py): produce, roll, then read from offset 0 every second until settled.
// It runs before any topic is deleted: a kafkajs producer keeps refreshing the metadata of every
// topic it sent to, and a send fails (UNKNOWN_TOPIC_OR_PARTITION, retried until it gives up)
// once one of them is gone. deleteTopics deletes its topic with the others.
async function compaction() {
  const c = plan.compaction
  const topic = c.topic
  const created = await call('compaction: admin.createTopics', () =>
    admin.createTopics({
      topics: [{ topic, numPartitions: 1, replicationFactor: 1, configEntries: Object.entries(c.configs).map(([name, value]) => ({ name, value })) }],
      waitForLeaders: true,
    }))
  if (created === undefined) return
  const send = async (records) => {
    const answer = await producer.send({
      topic,
      acks: -1,
      messages: records.map(([key, value]) => ({ key: fromB64(key), value: fromB64(value), partition: 0 })),
    })
    return records.map((_, i) => Number(answer[0].baseOffset) + i)
  }
  const offsets = await call('compaction: producer.send (updates and tombstones)', () => send(c.plan))
  await sleep(c.roll_after_ms)
  const roll = await call('compaction: producer.send (roll)', () => send([[c.roll_key, c.roll_value]]))
  if (offsets === undefined || roll === undefined) return
  const rollOffset = roll[0]

  const consumer = kafka.consumer({ groupId: `${topic}-reader`, maxWaitTimeInMs: 100, allowAutoTopicCreation: false })
  await consumer.connect()
  await consumer.subscribe({ topics: [topic], fromBeginning: true })
  let round = { records: [] }
  let roundDone
  let waiting = new Promise((resolve) => { roundDone = resolve })
  await consumer.run({
    autoCommit: false,
    eachBatch: async ({ batch, isStale }) => {
      if (!round || isStale()) return
      for (const message of batch.messages) {
        if (isStale() || !round) return
        round.records.push([Number(message.offset), b64(message.key), b64(message.value)])
        if (Number(message.offset) >= rollOffset) {
          const finished = round
          round = null
          consumer.pause([{ topic }])
          roundDone(finished)
          return
        }
      }
    },
  })
  const started = Date.now()
  let last = null
  let rounds = 0
  for (;;) {
    const timer = setTimeout(() => roundDone(null), plan.timeout_ms)
    last = await waiting
    clearTimeout(timer)
    rounds += 1
    if (last === null) break
    const counts = new Map()
    for (const [, key] of last.records) if (key !== null && key !== c.roll_key) counts.set(key, (counts.get(key) || 0) + 1)
    const settled = counts.size === c.keys && [...counts.values()].every((n) => n === 1)
    if (settled || Date.now() - started >= c.wait_ms) break
    await sleep(1000)
    waiting = new Promise((resolve) => { roundDone = resolve })
    round = { records: [] }
    consumer.seek({ topic, partition: 0, offset: '0' })
    consumer.resume([{ topic }])
  }
  await consumer.disconnect()
  emit({ t: 'compaction', offsets, roll_offset: rollOffset, read: last ? last.records : null, rounds, seconds: (Date.now() - started) / 1000 })
  flush()
}

try {
  await admin.connect()
  await roundTrip()
  await compaction()
  await configs()
  await deleteTopics()
  await producer.disconnect()
  await admin.disconnect()
} catch (error) {
  emit({ t: 'call', name: 'run completed', ok: false, error: `${error.name}: ${error.message}` })
  flush()
  process.stderr.write(`${error.stack || error}\n`)
  say({ ev: 'done' })
  process.exit(1)
}
say({ ev: 'done' })
process.exit(0)
