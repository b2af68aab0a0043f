// graphile-worker measured the way `bg-run bench --queue postgres` measures bg-run, so the two can
// be compared on one machine against one PostgreSQL (see scripts/compare-graphile-worker).
//
//   node bench.mjs TASKS CONCURRENCY BATCH PICKUP_SAMPLES
//
// Throughput: TASKS no-op jobs are added first, then a worker runs them; the clock runs from the
// worker's start to the last completion. BATCH 1 is graphile-worker's default mode (one job per
// transaction); BATCH > 1 turns on its batching (a local queue of BATCH jobs, batched completions).
// Pickup: with the worker idle, jobs are added one at a time from a separate connection, and each
// sample is the time from just before the add to the start of the job's task function.
// Prints one JSON line with the same keys as `bg-run bench`.
import { Logger, makeWorkerUtils, run, runMigrations } from "graphile-worker";

const [tasks, concurrency, batch, samples] = process.argv.slice(2, 6).map(Number);
if (![tasks, concurrency, batch, samples].every((n) => Number.isInteger(n) && n >= 0) || !tasks || !concurrency || !batch) {
  console.error("usage: node bench.mjs TASKS CONCURRENCY BATCH PICKUP_SAMPLES (whole numbers, the first three at least 1)");
  process.exit(2);
}
const connectionString = process.env.DATABASE_URL;
if (!connectionString) {
  console.error("DATABASE_URL is not set");
  process.exit(2);
}
const schema = "graphile_worker_bench";
const worker = {
  connectionString,
  schema,
  concurrentJobs: concurrency,
  maxPoolSize: Math.min(concurrency + 2, 50),
  // Pickup must come from LISTEN/NOTIFY, not from a lucky poll.
  pollInterval: 5000,
  ...(batch > 1 ? { localQueue: { size: batch }, completeJobBatchDelay: 0, failJobBatchDelay: 0 } : {}),
};
const silent = new Logger(() => () => {});

// A fresh schema every run: graphile-worker deletes finished jobs, and the dead rows an earlier
// run left behind would slow this one down until autovacuum catches up.
const setup = await makeWorkerUtils({ connectionString, schema, logger: silent });
await setup.withPgClient((client) => client.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`));
await setup.release();
await runMigrations({ connectionString, schema, logger: silent });
const utils = await makeWorkerUtils({ connectionString, schema, logger: silent });
for (let added = 0; added < tasks; added += 10000) {
  const n = Math.min(10000, tasks - added);
  await utils.addJobs(Array.from({ length: n }, (_, k) => ({ identifier: "noop", payload: { n: added + k } })));
}
// Planner statistics for the new tables, as a long-running installation has them.
await utils.withPgClient((client) => client.query(`ANALYZE ${schema}._private_jobs, ${schema}._private_tasks`));

let completed = 0;
let allDone;
const finished = new Promise((resolve) => (allDone = resolve));
let sampleStarted = () => {};
const started = process.hrtime.bigint();
const runner = await run({
  preset: { worker },
  noHandleSignals: true,
  logger: silent,
  taskList: {
    noop: async (payload) => {
      if (payload.sample !== undefined) sampleStarted(payload.sample);
    },
  },
});
runner.events.on("job:complete", () => {
  if (++completed === tasks) allDone();
});
await finished;
const seconds = Number(process.hrtime.bigint() - started) / 1e9;

const latencies = [];
await new Promise((resolve) => setTimeout(resolve, 200));
for (let sample = 0; sample < samples; sample++) {
  const before = process.hrtime.bigint();
  const picked = new Promise((resolve) => (sampleStarted = (n) => n === sample && resolve()));
  await utils.addJob("noop", { sample });
  await picked;
  latencies.push(Number(process.hrtime.bigint() - before) / 1e6);
  // Let the worker go idle again, as bg-run bench does.
  await new Promise((resolve) => setTimeout(resolve, 20));
}
await runner.stop();
await utils.release();

const round3 = (x) => Math.round(x * 1000) / 1000;
const line = {
  queue: "graphile-worker",
  tasks,
  concurrency,
  batch,
  seconds: round3(seconds),
  tasks_per_sec: round3(tasks / seconds),
};
if (latencies.length) {
  latencies.sort((a, b) => a - b);
  const at = (p) => latencies[Math.round((latencies.length - 1) * p)];
  Object.assign(line, { pickup_samples: latencies.length, pickup_p50_ms: round3(at(0.5)), pickup_p95_ms: round3(at(0.95)) });
}
console.log(JSON.stringify(line));
