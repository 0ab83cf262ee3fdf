/**
 * The scale-out job queue: bull 4 on Redis. Any number of app nodes share the
 * queues under one key prefix; each job runs on one node at a time, and a job
 * whose node dies is run again elsewhere (jobs are idempotent, see the port).
 *
 * Per job name there are two bull `Queue` objects, both created lazily:
 *
 * - a producer (add, counts, failed, retry, whenIdle) on one connection that
 *   fails fast when Redis is away, because the ingest pipeline treats a
 *   refused enqueue as "log it, reconciliation will find the message";
 * - a worker (only on nodes that call `process`) on bull's own three
 *   connections with bull's patient defaults (commands queue up across a
 *   reconnect), because a worker's lock renewals and "job done" writes must
 *   survive a short Redis blip rather than fail and leave the job stalled.
 *
 * Redis cost: one connection per job name for producing, three more per job
 * name on a node that processes it.
 */
import { randomUUID } from 'node:crypto';
import Bull from 'bull';
import type { Logger } from 'pino';
import type { Config } from '../../config/config.js';
import { ConfigError, NotFoundError, ServiceUnavailableError } from '../../errors.js';
import type { JobHandler, JobInfo, JobOptions, JobQueue, QueueCounts } from '../../ports/job-queue.js';

type RedisClient = Bull.Queue['client'];
type RedisOptions = Exclude<NonNullable<Bull.QueueOptions['redis']>, string>;

/** Tries per job when the caller does not say (same default as InlineQueue). */
const DEFAULT_ATTEMPTS = 5;
/** First retry delay in ms when the caller does not say; doubles per retry: 1 s, 2 s, 4 s, 8 s. */
const DEFAULT_BACKOFF_MS = 1000;
/**
 * Completed jobs kept per queue for inspection; bull deletes older ones as new
 * ones complete. Each costs one Redis hash (payload + metadata, about 0.5 KB for
 * an index job), so this bounds Redis memory at about 0.5 MB per queue.
 */
const KEEP_COMPLETED = 1000;

/**
 * How long an enqueue waits for a producer connection that is (re)connecting,
 * in ms. Covers the first connect and a short blip. Once Redis has been away
 * longer than this, enqueues reject at once (no waiting per call): a prompt
 * rejection costs the caller a log line, a hang would pile up pending adds.
 */
const CONNECT_WAIT_MS = 2000;
/**
 * Per-command timeout on the producer connection, in ms: bounds an enqueue on
 * a half-open TCP connection (Redis host gone without a reset). Cost: a slow
 * but healthy Redis (> 5 s for one command) sees enqueues rejected, and a
 * timed-out add may still land later (a duplicate run, harmless: jobs are
 * idempotent).
 */
const PRODUCER_COMMAND_TIMEOUT_MS = 5000;
/**
 * Reconnect delays grow by 100 ms per attempt up to this cap (ms). Bull's
 * default grows to 20 s, so a node could take 20 s to notice Redis is back;
 * the cost of the lower cap is one connect attempt per 2 s per connection
 * while Redis is down.
 */
const RECONNECT_MAX_MS = 2000;
/** whenIdle polls the counts this often (ms); each poll is one MULTI of 6 cheap commands. */
const IDLE_POLL_MS = 50;
/**
 * Jobs per MULTI in addBulk. One MULTI runs as one block on Redis, so bigger
 * chunks block other clients longer; 1000 index jobs take a few ms.
 */
const ADD_BULK_CHUNK = 1000;
/**
 * How long an add waits for companions when the previous batch of its job
 * name went out less than this long ago, in ms: under a steady stream of
 * adds (ingest enqueues one index job per delivery) each round trip then
 * carries several jobs. An add after a quiet spell goes out at once. Cost: a
 * job reaches Redis (and a worker) up to this much later; ingest does not
 * wait for its enqueue.
 */
const ADD_LINGER_MS = 50;
/**
 * Most adds of one job name waiting for the batch under way. A Redis that
 * stalls (connected, not answering) holds each batch up to the command
 * timeout while ingest goes on adding, each index job with its envelope (up
 * to 16 KB); beyond this many an add is refused at once, like an add to a
 * Redis that is down (the message is stored; reconciliation indexes it).
 */
export const MAX_QUEUED_ADDS = 10_000;
/** Redis errors (a down Redis repeats one per reconnect) are logged at most once per this many ms per connection. */
const ERROR_LOG_INTERVAL_MS = 30_000;
/** Rounds of "look at the slots, free one, add" before giving up on dedup for a jobId (see `enqueue`). */
const MAX_SLOT_ROUNDS = 3;

/** Suffix of the second bull id a jobId may use while its first one is running (see `enqueue`). */
const RERUN_SUFFIX = '#rerun';
/** Our backoff strategy: the port says the delay doubles (bull's `exponential` gives 1x, 3x, 7x). */
const BACKOFF_TYPE = 'archive-doubling';

/**
 * Worker settings (bull's `AdvancedSettings`). What happens to a job whose
 * worker dies: its lock is no longer renewed and expires after
 * `lockDuration`; the next stalled-job check on any live node (every
 * `stalledInterval`) moves it back to waiting, and it runs again on some node.
 * So a crashed node's jobs resume within lockDuration + stalledInterval (up to
 * 60 s).
 */
const WORKER_SETTINGS: Bull.AdvancedSettings = {
  /**
   * A job's lock, in ms. The worker renews it every `lockRenewTime`. Cost of a
   * lower value: faster recovery from a dead node, but a handler that blocks the
   * event loop for longer than this (a huge synchronous parse) loses its lock
   * and the job runs a second time concurrently.
   */
  lockDuration: 30_000,
  /** Lock renewal period (ms): one Redis call per active job per period. */
  lockRenewTime: 15_000,
  /** How often each worker looks for stalled jobs (ms): one Lua call over the active list. */
  stalledInterval: 30_000,
  /**
   * Times a job may stall (its worker died) and be run again; the next stall
   * fails it. A poison message that kills the worker each time (out of memory
   * in the parser) ends in `failed()` instead of crash-looping every node.
   */
  maxStalledCount: 1,
  /** Backstop poll for due retries (ms) if the pub/sub "delayed" notice was missed: a retry may start up to this late. */
  guardInterval: 5000,
  /** After an internal error (Redis down) a worker slot waits this long before fetching again (ms). */
  retryProcessDelay: 5000,
  /** Blocking fetch timeout, in seconds (not ms): an idle worker wakes up this often. */
  drainDelay: 5,
  backoffStrategies: {
    [BACKOFF_TYPE]: (attemptsMade: number, _err: Error, options?: { delay?: number }) =>
      (options?.delay ?? DEFAULT_BACKOFF_MS) * 2 ** Math.max(0, attemptsMade - 1),
  },
};

/**
 * Classifies the two bull ids a jobId may use, atomically, in one round trip.
 * KEYS[1] completed zset, KEYS[2] failed zset, then per id: job hash, job lock.
 * ARGV: the ids. Returns per id a SlotState.
 * "Pending" is waiting, delayed (retry backoff), paused, or active without a
 * lock (just fetched, or stalled): each of these will still (re)start its
 * handler, so a new add for it can be dropped.
 */
const CLASSIFY_LUA = `
local out = {}
for i = 1, #ARGV do
  local state = 0
  if redis.call('EXISTS', KEYS[1 + 2 * i]) == 1 then
    if redis.call('ZSCORE', KEYS[1], ARGV[i]) then state = 3
    elseif redis.call('ZSCORE', KEYS[2], ARGV[i]) then state = 4
    elseif redis.call('EXISTS', KEYS[2 + 2 * i]) == 1 then state = 2
    else state = 1 end
  end
  out[i] = state
end
return out
`;

/**
 * CLASSIFY_LUA as a command of the producer connection: ioredis sends it by
 * its SHA (EVALSHA, falling back to EVAL once after a NOSCRIPT), not the
 * whole script text with every enqueue.
 */
const CLASSIFY_COMMAND = 'archiveClassifySlots';
type ClassifyClient = Record<typeof CLASSIFY_COMMAND, (numKeys: number, ...args: string[]) => Promise<unknown>>;

/** What CLASSIFY_LUA reports for one bull id. */
const SlotState = { Absent: 0, Pending: 1, Running: 2, Completed: 3, Failed: 4 } as const;
type SlotState = (typeof SlotState)[keyof typeof SlotState];

interface Producer {
  queue: Bull.Queue;
  /** When the producer connection was last lost (or created); undefined while it is ready. */
  downSince?: number;
}

interface Lane {
  producer?: Producer;
  worker?: Bull.Queue;
}

type AddItem = { payload: unknown; opts?: JobOptions };

/** The adds of one job name waiting to go to Redis together, and whether a batch of them is under way. */
interface AddBatch {
  queued: { item: AddItem; resolve: () => void; reject: (err: unknown) => void }[];
  sending: boolean;
  /** Set while the first add after a recent send lingers for companions (see ADD_LINGER_MS). */
  linger?: NodeJS.Timeout;
  /** When the last batch went out (Date.now()). */
  lastSentAt: number;
}

export interface BullQueueOptions {
  /** redis:// or rediss:// (TLS) URL, with optional password and /db. */
  redisUrl: string;
  /** Key prefix of every queue; nodes sharing work must use the same one. */
  prefix: string;
  /** See MAX_QUEUED_ADDS (tests lower it). */
  maxQueuedAdds?: number;
}

export class BullQueue implements JobQueue {
  readonly driver = 'redis';
  private readonly lanes = new Map<string, Lane>();
  private readonly lastErrorLog = new Map<string, number>();
  private closing?: Promise<void>;
  /** Enqueues under way; close() waits for them before disconnecting the producers. */
  private readonly inflight = new Set<Promise<void>>();
  /** Per job name: the adds waiting for the batch under way (see `add`). */
  private readonly addBatches = new Map<string, AddBatch>();

  constructor(
    private readonly opts: BullQueueOptions,
    private readonly log: Logger,
  ) {}

  static fromConfig(config: Config, log: Logger): BullQueue {
    let url: URL;
    try {
      url = new URL(config.ARCHIVE_REDIS_URL);
    } catch {
      throw new ConfigError('Invalid configuration:\n  ARCHIVE_REDIS_URL: not a URL (e.g. redis://127.0.0.1:6379)');
    }
    if (url.protocol !== 'redis:' && url.protocol !== 'rediss:') {
      throw new ConfigError('Invalid configuration:\n  ARCHIVE_REDIS_URL: must start with redis:// or rediss://');
    }
    return new BullQueue({ redisUrl: config.ARCHIVE_REDIS_URL, prefix: config.ARCHIVE_QUEUE_PREFIX }, log);
  }

  // ---------------------------------------------------------------- producing

  /**
   * Group commit: while an add of this name is on its way to Redis, the adds
   * that come meanwhile wait for it and then go out together as one batch
   * (one classify and one addBulk, i.e. two round trips for the batch); under
   * a steady stream, an add also lingers up to ADD_LINGER_MS for companions.
   * An add after a quiet spell goes out at once. The ingest pipeline adds one
   * index job per delivery, from every SMTP connection at once; batching
   * turns a pair of round trips per delivery into a pair per batch. Each add
   * still resolves only when its own job is in Redis (or rejects with its
   * batch).
   */
  add<P>(name: string, payload: P, opts: JobOptions = {}): Promise<void> {
    if (this.closing) return Promise.reject(this.unavailable(name, 'enqueue', new Error('queue is closing')));
    const lane = this.addBatch(name);
    if (lane.queued.length >= (this.opts.maxQueuedAdds ?? MAX_QUEUED_ADDS)) {
      return Promise.reject(this.unavailable(name, 'enqueue', new Error(`${lane.queued.length} adds already wait for Redis to answer`)));
    }
    const p = this.track(new Promise<void>((resolve, reject) => lane.queued.push({ item: { payload, opts }, resolve, reject })));
    if (!lane.sending && !lane.linger) {
      // A steady stream of adds (the last batch went out moments ago) lingers briefly to go out together.
      if (Date.now() - lane.lastSentAt < ADD_LINGER_MS) lane.linger = setTimeout(() => this.sendAdds(name, lane), ADD_LINGER_MS);
      else this.sendAdds(name, lane);
    }
    return p;
  }

  /**
   * Joins the adds of the name (same queue, same order: an earlier add of a
   * jobId still wins over a later one), without lingering, in chunks of
   * ADD_BULK_CHUNK. Resolves when every job is in Redis; rejects if a chunk
   * could not be added (the other chunks are still tried: adds are idempotent).
   */
  addBulk<P>(name: string, jobs: { payload: P; opts?: JobOptions }[]): Promise<void> {
    if (this.closing) return Promise.reject(this.unavailable(name, 'enqueue', new Error('queue is closing')));
    if (!jobs.length) return Promise.resolve();
    const lane = this.addBatch(name);
    const each = jobs.map((j) => new Promise<void>((resolve, reject) => lane.queued.push({ item: { payload: j.payload, opts: j.opts }, resolve, reject })));
    const p = this.track(Promise.all(each).then(() => undefined));
    if (!lane.sending) this.sendAdds(name, lane);
    return p;
  }

  /**
   * Registers an add under way, for close() to wait for: the ingest pipeline
   * enqueues without waiting, and an import that ends at once would
   * otherwise lose the index jobs of its last messages.
   */
  private track(p: Promise<void>): Promise<void> {
    this.inflight.add(p);
    void p.then(
      () => this.inflight.delete(p),
      () => this.inflight.delete(p),
    );
    return p;
  }

  private addBatch(name: string): AddBatch {
    let lane = this.addBatches.get(name);
    if (!lane) {
      lane = { queued: [], sending: false, lastSentAt: 0 };
      this.addBatches.set(name, lane);
    }
    return lane;
  }

  /** Sends the queued adds of a name (at most ADD_BULK_CHUNK per round), one batch at a time, until none is left. */
  private sendAdds(name: string, lane: AddBatch): void {
    if (lane.linger) clearTimeout(lane.linger);
    lane.linger = undefined;
    const batch = lane.queued.splice(0, ADD_BULK_CHUNK);
    lane.sending = batch.length > 0;
    if (!batch.length) return;
    lane.lastSentAt = Date.now();
    // These adds were accepted before any close() and are tracked, so they
    // go out even while the queue is closing.
    void this.enqueueNow(name, batch.map((b) => b.item))
      .then(
        () => batch.forEach((b) => b.resolve()),
        (err: unknown) => batch.forEach((b) => b.reject(err)),
      )
      .finally(() => this.sendAdds(name, lane));
  }

  /**
   * jobId semantics, matching InlineQueue: while a job with the id is pending
   * (waiting, or delayed for a retry) a new add is a no-op; otherwise the new
   * add runs, also when an earlier job with the id completed, failed or is
   * running right now (a new envelope may have arrived after the running job
   * read the store).
   *
   * Bull keeps one job per id, whatever its state, and silently ignores an add
   * whose id exists. So a jobId K maps to two bull ids, K and K#rerun, used
   * in turn: an add looks at both (one Lua call), drops out if either is
   * pending, else takes a free slot (absent first, then a completed one, then
   * a failed one, which it removes first, so failures stay visible as long as
   * possible). If both are running, the add gets a unique id (K#uuid): it runs,
   * without dedup, which needs three adds of one id inside one job's run time.
   * Races between nodes are safe: two adds to the same free slot are deduped by
   * bull; removing a slot that someone just re-filled fails if it already runs
   * (then we look again) or takes back a waiting job we then re-add.
   */
  private async enqueueNow(name: string, items: AddItem[]): Promise<void> {
    const producer = this.producer(name);
    // Within one batch the first add of an id wins, as in InlineQueue.
    const seen = new Set<string>();
    let todo = items.filter((it) => {
      const key = it.opts?.jobId;
      if (key === undefined) return true;
      if (seen.has(key)) return false;
      seen.add(key);
      return true;
    });
    try {
      await this.whenConnected(name, producer);
      for (let round = 1; todo.length; round++) {
        const keys = todo.flatMap((it) => (it.opts?.jobId === undefined ? [] : [it.opts.jobId]));
        const states = keys.length ? await this.classify(name, producer, keys) : new Map<string, SlotState[]>();
        const bullIds = await Promise.all(
          // Per item: the bull id to add under; undefined: bull numbers it; false: dedup, skip; null: look again.
          todo.map(async (it): Promise<string | null | undefined | false> => {
            const key = it.opts?.jobId;
            if (key === undefined) return undefined;
            const slot = pickSlot(key, states.get(key)!, round > MAX_SLOT_ROUNDS);
            if (slot === 'skip') return false;
            if (slot.free && !(await this.removeFinished(producer.queue, slot.id))) return null; // became active: look again
            return slot.id;
          }),
        );
        const batch = todo.flatMap((it, i) => {
          const id = bullIds[i];
          return id === null || id === false ? [] : [{ data: it.payload, opts: jobOptions(it.opts ?? {}, id) }];
        });
        if (batch.length === 1) await producer.queue.add(batch[0]!.data, batch[0]!.opts);
        else if (batch.length) await producer.queue.addBulk(batch);
        todo = todo.filter((_it, i) => bullIds[i] === null);
      }
    } catch (err) {
      throw this.unavailable(name, 'enqueue', err);
    }
  }

  /** SlotState of `K` and `K#rerun` for each jobId K. */
  private async classify(name: string, producer: Producer, keys: string[]): Promise<Map<string, SlotState[]>> {
    const ids = keys.flatMap((k) => [k, k + RERUN_SUFFIX]);
    const redisKeys = [this.key(name, 'completed'), this.key(name, 'failed')];
    for (const id of ids) redisKeys.push(this.key(name, id), this.key(name, `${id}:lock`));
    const states = (await (producer.queue.client as unknown as ClassifyClient)[CLASSIFY_COMMAND](redisKeys.length, ...redisKeys, ...ids)) as number[];
    return new Map(keys.map((k, i) => [k, [states[2 * i] as SlotState, states[2 * i + 1] as SlotState]]));
  }

  /** Removes a finished job to free its id. False if it became active meanwhile (bull refuses to remove a locked job). */
  private async removeFinished(queue: Bull.Queue, id: string): Promise<boolean> {
    const job = await queue.getJob(id);
    if (!job) return true;
    try {
      await job.remove();
      return true;
    } catch (err) {
      if ((err as Error).message.startsWith('Could not remove job')) return false;
      throw err;
    }
  }

  // ---------------------------------------------------------------- consuming

  process<P>(name: string, concurrency: number, handler: JobHandler<P>): void {
    if (this.closing) throw new Error('queue is closing');
    if (!Number.isInteger(concurrency) || concurrency < 1) throw new Error(`concurrency must be a positive integer, got ${concurrency}`);
    const lane = this.lane(name);
    if (lane.worker) throw new Error(`a handler for ${name} is already registered`);
    const worker = new Bull(name, this.opts.redisUrl, {
      prefix: this.opts.prefix,
      redis: this.redisOptions({}),
      settings: WORKER_SETTINGS,
    });
    lane.worker = worker;
    worker.on('error', (err: Error) => this.logRedisError(name, 'worker', err));
    worker.on('failed', (job: Bull.Job | null, err: Error) => {
      if (!job) return; // a stalled job that was removed meanwhile
      const fields = { job: String(job.id), name, attempts: job.attemptsMade, err };
      if (job.attemptsMade < (job.opts.attempts ?? 1)) this.log.warn(fields, 'job failed, will retry');
      else this.log.error(fields, 'job failed permanently');
    });
    worker.on('stalled', (job: Bull.Job) => this.log.warn({ job: String(job.id), name }, 'job stalled (its worker died or blocked); running it again'));
    // Resolves only when the worker closes; rejects if it cannot start.
    worker
      .process(concurrency, async (job: Bull.Job) => {
        try {
          await handler(job.data as P, { id: String(job.id), attempt: job.attemptsMade + 1 });
        } catch (err) {
          throw err instanceof Error ? err : new Error(String(err));
        }
      })
      .catch((err: unknown) => {
        if (!this.closing) this.log.error({ err, name }, 'job worker stopped');
      });
  }

  // ---------------------------------------------------------------- inspecting

  async counts(name: string): Promise<QueueCounts> {
    const producer = this.producer(name);
    try {
      await this.whenConnected(name, producer);
      const c = (await producer.queue.getJobCounts()) as Bull.JobCounts & { paused?: number };
      return { waiting: c.waiting + (c.paused ?? 0), active: c.active, delayed: c.delayed, failed: c.failed, completed: c.completed };
    } catch (err) {
      throw this.unavailable(name, 'counts', err);
    }
  }

  async failed(name: string, limit = 100): Promise<JobInfo[]> {
    if (limit <= 0) return [];
    const producer = this.producer(name);
    try {
      await this.whenConnected(name, producer);
      // getFailed reads the failed zset by finish time, newest first.
      const jobs = await producer.queue.getFailed(0, limit - 1);
      return jobs
        .filter((j): j is Bull.Job => !!j) // removed between the range read and the fetch
        .map((j) => ({
          id: String(j.id),
          name,
          payload: j.data as unknown,
          attempts: j.attemptsMade,
          failedReason: j.failedReason,
          timestamp: j.timestamp,
        }));
    } catch (err) {
      throw this.unavailable(name, 'failed', err);
    }
  }

  async retry(name: string, id: string): Promise<void> {
    const producer = this.producer(name);
    const notFound = () => new NotFoundError(`no failed job ${id} in ${name}`);
    try {
      await this.whenConnected(name, producer);
      const job = await producer.queue.getJob(id);
      if (!job || !(await job.isFailed())) throw notFound();
      // A retried job gets its full attempts again, as in InlineQueue. Bull's
      // retry keeps attemptsMade, which would fail it after one more try.
      await producer.queue.client.hset(this.key(name, id), 'attemptsMade', 0);
      await job.retry();
    } catch (err) {
      if (err instanceof NotFoundError) throw err;
      const msg = (err as Error).message ?? '';
      // Another caller retried it (or removed it) between our check and the move.
      if (msg.startsWith("Couldn't retry job")) throw notFound();
      throw this.unavailable(name, 'retry', err);
    }
  }

  /**
   * Polls the counts of the whole queue (all nodes), every IDLE_POLL_MS.
   * Transient Redis errors are retried until the timeout; the timeout error
   * carries the last one as its cause.
   */
  async whenIdle(name: string, timeoutMs = 60_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let lastError: unknown;
    for (;;) {
      try {
        const c = await this.counts(name);
        if (c.waiting + c.active + c.delayed === 0) return;
        lastError = undefined;
      } catch (err) {
        lastError = err;
      }
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`queue ${name} not idle after ${timeoutMs} ms`, { cause: lastError });
      await new Promise((r) => setTimeout(r, Math.min(IDLE_POLL_MS, left)));
    }
  }

  // ---------------------------------------------------------------- lifecycle

  /**
   * Graceful: new adds are refused at once. Each worker's `Queue.close()`
   * stops fetching jobs, waits for the handlers that are running to finish
   * and their results to be written to Redis, then disconnects; a handler that
   * never settles keeps close() waiting. Jobs still waiting or in retry
   * backoff stay in Redis for the other nodes or the next start. Adds
   * under way finish, then producers close. Calling close() again returns the same promise.
   */
  close(): Promise<void> {
    this.closing ??= (async () => {
      // Adds lingering for companions go out now.
      for (const [name, lane] of this.addBatches) if (lane.linger) this.sendAdds(name, lane);
      const lanes = [...this.lanes.values()];
      await Promise.all(lanes.map((l) => l.worker?.close()));
      // Each add is bounded (connect wait, command timeout), so this ends.
      await Promise.allSettled([...this.inflight]);
      await Promise.all(lanes.map((l) => l.producer?.queue.close()));
    })();
    return this.closing;
  }

  // ---------------------------------------------------------------- plumbing

  private lane(name: string): Lane {
    let lane = this.lanes.get(name);
    if (!lane) {
      lane = {};
      this.lanes.set(name, lane);
    }
    return lane;
  }

  private producer(name: string): Producer {
    const lane = this.lane(name);
    if (lane.producer) return lane.producer;
    if (this.closing) throw new Error('queue is closing');
    const queue = new Bull(name, this.opts.redisUrl, {
      prefix: this.opts.prefix,
      redis: this.redisOptions({
        // Fail fast instead of queueing commands in memory while disconnected:
        // whenConnected() waits for a (re)connect for a bounded time instead.
        enableOfflineQueue: false,
        // A command in flight when the connection drops is retried once, then rejected.
        maxRetriesPerRequest: 1,
        commandTimeout: PRODUCER_COMMAND_TIMEOUT_MS,
      }),
      // Only used if this connection ever runs the backoff (it does not process); kept equal for safety.
      settings: WORKER_SETTINGS,
    });
    const producer: Producer = { queue, downSince: Date.now() };
    const client = queue.client;
    // No numberOfKeys: the key count is the first argument of each call.
    client.defineCommand(CLASSIFY_COMMAND, { lua: CLASSIFY_LUA });
    client.on('ready', () => {
      producer.downSince = undefined;
    });
    client.on('close', () => {
      producer.downSince ??= Date.now();
    });
    queue.on('error', (err: Error) => this.logRedisError(name, 'producer', err));
    lane.producer = producer;
    return producer;
  }

  /**
   * Resolves when the producer connection is ready. Waits at most
   * CONNECT_WAIT_MS after the connection was lost (or created); after that,
   * rejects at once.
   */
  private async whenConnected(name: string, producer: Producer): Promise<void> {
    const client: RedisClient = producer.queue.client;
    if (client.status === 'ready') return;
    if (client.status === 'end') throw new Error('redis connection closed');
    const left = CONNECT_WAIT_MS - (Date.now() - (producer.downSince ?? Date.now()));
    if (left <= 0) throw new Error(`redis not connected (for ${Date.now() - producer.downSince!} ms)`);
    await new Promise<void>((resolve, reject) => {
      const onReady = () => {
        clearTimeout(timer);
        resolve();
      };
      const timer = setTimeout(() => {
        client.off('ready', onReady);
        reject(new Error(`redis not connected after ${CONNECT_WAIT_MS} ms`));
      }, left);
      client.once('ready', onReady);
    });
  }

  private redisOptions(extra: RedisOptions): RedisOptions {
    return {
      // bull's URL parser ignores the scheme; rediss:// means TLS.
      ...(this.opts.redisUrl.startsWith('rediss:') ? { tls: {} } : {}),
      retryStrategy: (times: number) => Math.min(times * 100, RECONNECT_MAX_MS),
      ...extra,
    };
  }

  /** A key as bull names it: `<prefix>:<queue>:<suffix>`. */
  private key(name: string, suffix: string): string {
    return `${this.opts.prefix}:${name}:${suffix}`;
  }

  private unavailable(name: string, op: string, err: unknown): Error {
    if (err instanceof ServiceUnavailableError) return err;
    const msg = err instanceof Error ? err.message : String(err);
    return new ServiceUnavailableError('queue_unavailable', `job queue ${name}: ${op} failed: ${msg}`, { cause: err });
  }

  private logRedisError(name: string, role: string, err: Error): void {
    const key = `${name}/${role}`;
    const now = Date.now();
    if (now - (this.lastErrorLog.get(key) ?? 0) < ERROR_LOG_INTERVAL_MS) return;
    this.lastErrorLog.set(key, now);
    this.log.error({ err, queue: name, role }, 'job queue redis error (repeats are logged at most every 30 s)');
  }
}

/** bull options of one job. `id` undefined lets bull number it. */
function jobOptions(opts: JobOptions, id: string | undefined): Bull.JobOptions {
  return {
    jobId: id,
    attempts: opts.attempts ?? DEFAULT_ATTEMPTS,
    backoff: { type: BACKOFF_TYPE, options: { delay: opts.backoffMs ?? DEFAULT_BACKOFF_MS } },
    removeOnComplete: KEEP_COMPLETED,
    // Failed jobs stay until retried or superseded: they are what an operator must see.
    removeOnFail: false,
  };
}

/** Which bull id a new add of jobId `key` takes; see `enqueue`. `free`: the slot holds a finished job to remove first. */
function pickSlot(key: string, states: SlotState[], giveUp: boolean): 'skip' | { id: string; free: boolean } {
  if (states.includes(SlotState.Pending)) return 'skip';
  const ids = [key, key + RERUN_SUFFIX];
  if (!giveUp) {
    for (const want of [SlotState.Absent, SlotState.Completed, SlotState.Failed]) {
      const i = states.indexOf(want);
      if (i >= 0) return { id: ids[i]!, free: want !== SlotState.Absent };
    }
  }
  return { id: `${key}#${randomUUID()}`, free: false };
}
