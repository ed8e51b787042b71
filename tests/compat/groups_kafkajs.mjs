// One kafkajs consumer-group member, started by groups_kafkajs.py (the orchestrator, with the
// scenarios and checks of groups_common.py):
//
//   node groups_kafkajs.mjs '<json spec>'
//
// Speaks groups_common.py's member protocol: JSON lines on stdout (assign, records, commit,
// commit_error, error, warning, held, closed); on stdin "go" (for a held member), and "stop" or
// end of file to close cleanly.
//
// kafkajs specifics:
// - eager only (its assigners are round robin and custom ones; no cooperative protocol) and no
//   static membership (no group.instance.id);
// - no revocation callback: GROUP_JOIN carries the member's whole new assignment after each
//   rebalance, reported as an eager "assign";
// - heartbeats are sent from the fetch loop, so the fetch long-poll (maxWaitTimeInMs, 5 s by
//   default) must stay well under the 6 s session timeout: it is 100 ms here;
// - its default logger writes to stdout (console.info), which is the protocol channel here, so
//   logs go to stderr.
import { Kafka, logLevel } from 'kafkajs'
import readline from 'node:readline'

const spec = JSON.parse(process.argv[2])
const out = (event) => process.stdout.write(JSON.stringify(event) + '\n')

const toStderr = () => ({ namespace, level, label, log }) => {
  const { message, ...extra } = log
  process.stderr.write(`${label} [${namespace}] ${message} ${JSON.stringify(extra)}\n`)
}

const kafka = new Kafka({
  clientId: spec.name,
  brokers: spec.bootstrap.split(','),
  logLevel: logLevel.WARN,
  logCreator: toStderr,
})

const consumer = kafka.consumer({
  groupId: spec.group,
  sessionTimeout: spec.session_timeout_ms,
  heartbeatInterval: spec.heartbeat_interval_ms,
  rebalanceTimeout: spec.max_poll_interval_ms,
  maxWaitTimeInMs: 100,
  allowAutoTopicCreation: false,
})

consumer.on(consumer.events.GROUP_JOIN, ({ payload }) => {
  const partitions = (payload.memberAssignment[spec.topic] || []).slice().sort((a, b) => a - b)
  out({ ev: 'assign', mode: 'eager', partitions, member_id: payload.memberId })
})
// A crash kafkajs restarts the consumer after (restart: true, e.g. a retriable JoinGroup error
// such as COORDINATOR_LOAD_IN_PROGRESS) is its way of retrying: a warning. Any other is an error.
consumer.on(consumer.events.CRASH, ({ payload }) => {
  const text = `crash: ${payload.error && payload.error.message}`
  if (payload.restart) out({ ev: 'warning', warning: `${text} (kafkajs restarted the consumer)` })
  else out({ ev: 'error', error: text })
})

let stopping = null
const stop = () => {
  if (!stopping) {
    stopping = (async () => {
      await consumer.disconnect()
      out({ ev: 'closed' })
      process.exit(0)
    })().catch((error) => {
      process.stderr.write(`disconnect failed: ${error.stack || error}\n`)
      process.exit(1)
    })
  }
  return stopping
}
// A member started with "hold" waits for "go" before it connects (see groups_common.py).
let go
const released = new Promise((resolve) => { go = resolve })
const input = readline.createInterface({ input: process.stdin })
input.on('line', (line) => {
  if (line.trim() === 'go') go()
  if (line.trim() === 'stop') stop()
})
input.on('close', stop)
if (spec.hold) {
  out({ ev: 'held' })
  await released
}

await consumer.connect()
await consumer.subscribe({ topics: [spec.topic], fromBeginning: true })
await consumer.run({
  autoCommit: false,
  eachBatchAutoResolve: false,
  eachBatch: async ({ batch, resolveOffset, isRunning, isStale }) => {
    const records = []
    let last = null
    for (const message of batch.messages) {
      if (!isRunning() || isStale()) break
      records.push([batch.partition, Number(message.offset), message.value.toString()])
      last = message.offset
    }
    if (last === null) return
    out({ ev: 'records', records })
    resolveOffset(last)
    const next = String(BigInt(last) + 1n)
    try {
      await consumer.commitOffsets([{ topic: batch.topic, partition: batch.partition, offset: next }])
      out({ ev: 'commit', offsets: { [batch.partition]: Number(next) } })
    } catch (error) {
      out({ ev: 'commit_error', error: `${error.type || error.name}: ${error.message}` })
    }
  },
})
