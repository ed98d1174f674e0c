//! The job queue on Redis Streams: one stream per queue with one consumer group, a delayed set
//! for retries and scheduled jobs, a dead-letter stream, a set of the dead jobs that run again by
//! themselves (out of retries), and one hash per job (its envelope, its attempts, its state).
//! Every state change is one Lua script over keys of one hash tag.
//!
//! - Enqueue is idempotent on the job id: a second enqueue of an id that exists does nothing.
//! - A delivery is acknowledged only when its handler finished, and only by the consumer that
//!   still owns it (checked with XPENDING in the same script): a consumer whose delivery was
//!   reclaimed cannot also complete it.
//! - Completing can enqueue the next step of a flow in the same script, so a step never exists
//!   before its predecessor finished.
//! - Retries wait in the delayed set; `promote` moves due jobs back to the stream atomically.
//! - `reclaim` takes deliveries idle too long (a crashed consumer) to this consumer.
//! - The ready stream is never trimmed by length: entries are deleted once acknowledged.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use deadpool_redis::redis::aio::MultiplexedConnection;
use deadpool_redis::{redis, Pool};
use ecom_kernel::jobs::{DeadLetter, Enqueued, JobEnvelope, JobId, JobQueue, NewJob, QueueDepth, QueueName};
use ecom_kernel::{InfraError, InfraErrorKind};
use serde::{Deserialize, Serialize};

use crate::keys::QueueKeys;
use crate::shared::{millis, SharedConnection};
use crate::{infra_from_redis, RedisKeys};

const GROUP: &str = "workers";

/// KEYS: job, stream, delayed. ARGV: id, data, due_ms (0 = now), now_ms.
const ENQUEUE: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'data', ARGV[2], 'attempt', 0, 'state', 'waiting')
if tonumber(ARGV[3]) > tonumber(ARGV[4]) then
  redis.call('HSET', KEYS[1], 'state', 'delayed')
  redis.call('ZADD', KEYS[3], ARGV[3], ARGV[1])
else
  redis.call('XADD', KEYS[2], '*', 'id', ARGV[1])
end
return 1";

/// KEYS: job 1..n. Marks each delivery started. Returns, per job, {data, attempt, failed} (failed:
/// '1' when an earlier attempt since the job was last (re)started failed and was retried), or {}
/// for a job that vanished.
const START: &str = r"
local started = {}
for i = 1, #KEYS do
  local data = redis.call('HGET', KEYS[i], 'data')
  if data then
    local attempt = redis.call('HINCRBY', KEYS[i], 'attempt', 1)
    redis.call('HSET', KEYS[i], 'state', 'active')
    started[i] = {data, attempt, tostring(redis.call('HEXISTS', KEYS[i], 'error'))}
  else
    started[i] = {}
  end
end
return started";

/// KEYS: stream, job, delayed, dead, stats, spent. ARGV: consumer, entry, outcome (retry | defer |
/// dead | spent | skip), due_ms (for dead and spent: now), error, job id, wait_ms, max_wait_ms,
/// jitter (0 to 1). Settles a delivery that did not succeed (completions go through
/// `COMPLETE_MANY`). A deferred job is delayed like a retried one, its attempt given back. A
/// dead job remembers why it died (`dead`: for good; `spent`: out of retries), when, and its
/// dead-letter entry; a spent job also waits in the spent set to run again, `wait_ms` after its
/// death, doubled for every time it was revived before (at most `max_wait_ms`), plus up to a
/// quarter of that at random (`jitter`), so that jobs killed by one outage do not all come back
/// at once. Returns -1 when the consumer no longer owns the delivery.
const FINISH: &str = r"
local owned = redis.call('XPENDING', KEYS[1], 'workers', ARGV[2], ARGV[2], 1, ARGV[1])
if #owned == 0 then return -1 end
redis.call('XACK', KEYS[1], 'workers', ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
if ARGV[3] == 'retry' then
  redis.call('HINCRBY', KEYS[5], 'retried', 1)
  redis.call('HSET', KEYS[2], 'state', 'delayed', 'error', ARGV[5])
  redis.call('ZADD', KEYS[3], ARGV[4], ARGV[6])
elseif ARGV[3] == 'defer' then
  redis.call('HINCRBY', KEYS[2], 'attempt', -1)
  redis.call('HSET', KEYS[2], 'state', 'delayed')
  redis.call('ZADD', KEYS[3], ARGV[4], ARGV[6])
elseif ARGV[3] == 'dead' or ARGV[3] == 'spent' then
  redis.call('HINCRBY', KEYS[5], 'dead', 1)
  local entry = redis.call('XADD', KEYS[4], '*', 'id', ARGV[6], 'error', ARGV[5])
  redis.call('HSET', KEYS[2], 'state', 'dead', 'error', ARGV[5], 'died', ARGV[3], 'died_at', ARGV[4],
    'dead_entry', entry)
  if ARGV[3] == 'spent' then
    local revivals = tonumber(redis.call('HGET', KEYS[2], 'revivals')) or 0
    local wait = math.min(tonumber(ARGV[7]) * 2 ^ revivals, tonumber(ARGV[8]))
    redis.call('ZADD', KEYS[6], tonumber(ARGV[4]) + math.floor(wait * (1 + tonumber(ARGV[9]) / 4)), ARGV[6])
  end
end
return 1";

/// KEYS: stream. ARGV: consumer, entry id. Resets the entry's idle time while this consumer
/// still owns it (1); leaves it alone (0) once another consumer reclaimed it (the worker was
/// cut off longer than the reclaim delay) or it is gone. A plain XCLAIM would take the entry
/// back from the consumer now running it, and two workers would then both act on the job.
const HEARTBEAT: &str = r"
local owned = redis.call('XPENDING', KEYS[1], 'workers', ARGV[2], ARGV[2], 1, ARGV[1])
if #owned == 0 then return 0 end
redis.call('XCLAIM', KEYS[1], 'workers', ARGV[1], 0, ARGV[2], 'JUSTID')
return 1";

/// KEYS: job, stream, dead, spent. ARGV: id, data, now_ms, wait_ms, max_wait_ms. Enqueues a job
/// that does not exist (1); runs a job that died out of retries again with fresh attempts, its
/// dead-letter entry removed and out of the spent set (2), once it has been dead for `wait_ms`
/// doubled for every time it was revived before (at most `max_wait_ms`); leaves any other job as
/// it is (0).
const REOFFER: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('HSET', KEYS[1], 'data', ARGV[2], 'attempt', 0, 'state', 'waiting')
  redis.call('XADD', KEYS[2], '*', 'id', ARGV[1])
  return 1
end
local job = redis.call('HMGET', KEYS[1], 'state', 'died', 'dead_entry', 'died_at', 'revivals')
if job[1] ~= 'dead' or job[2] ~= 'spent' then return 0 end
local revivals = tonumber(job[5]) or 0
local wait = math.min(tonumber(ARGV[4]) * 2 ^ revivals, tonumber(ARGV[5]))
if tonumber(ARGV[3]) - (tonumber(job[4]) or 0) < wait then return 0 end
if job[3] then redis.call('XDEL', KEYS[3], job[3]) end
redis.call('ZREM', KEYS[4], ARGV[1])
redis.call('HSET', KEYS[1], 'attempt', 0, 'state', 'waiting', 'revivals', revivals + 1)
redis.call('HDEL', KEYS[1], 'error', 'died', 'died_at', 'dead_entry')
redis.call('XADD', KEYS[2], '*', 'id', ARGV[1])
return 2";

/// The longest a job that keeps running out of retries waits between two revivals (unless the
/// consumer's `revive_after` is longer), before its random quarter.
const MAX_REVIVE_WAIT: Duration = Duration::from_secs(3600);

/// A random fraction (0 to 1, in steps of 1/255) for spreading revivals.
fn jitter() -> f64 {
    let mut byte = [0u8; 1];
    if getrandom::fill(&mut byte).is_ok() {
        f64::from(byte[0]) / 255.0
    } else {
        0.0
    }
}

/// KEYS: stream, dead, spent, then jobs. ARGV: now_ms, then the jobs' ids. Runs again, with fresh
/// attempts and its dead letter removed, each job of the spent set whose time has come and that
/// is still dead out of retries (an operator may have run it again meanwhile); drops from the set
/// those that are not. Returns how many run again.
const REVIVE: &str = r"
local revived = 0
for i = 4, #KEYS do
  local id = ARGV[i - 2]
  local due = tonumber(redis.call('ZSCORE', KEYS[3], id))
  if due and due <= tonumber(ARGV[1]) then
    redis.call('ZREM', KEYS[3], id)
    local job = redis.call('HMGET', KEYS[i], 'state', 'died', 'dead_entry', 'revivals')
    if job[1] == 'dead' and job[2] == 'spent' then
      if job[3] then redis.call('XDEL', KEYS[2], job[3]) end
      redis.call('HSET', KEYS[i], 'attempt', 0, 'state', 'waiting', 'revivals', (tonumber(job[4]) or 0) + 1)
      redis.call('HDEL', KEYS[i], 'error', 'died', 'died_at', 'dead_entry')
      redis.call('XADD', KEYS[1], '*', 'id', id)
      revived = revived + 1
    end
  end
end
return revived";

/// KEYS: stream, stats, then per delivery its job and its flow's next job (the job again when
/// there is none). ARGV: consumer, retention_ms, then per delivery its entry, the next job's id
/// ('' = none) and data. Completes many deliveries at once (a group commit): one XACK, one XDEL
/// and one counter update for all; a step's next step is enqueued in the same script, so a step
/// never exists before its predecessor finished.
/// Returns, per delivery, 1 if acknowledged or 0 if this consumer no longer owned it.
const COMPLETE_MANY: &str = r"
local owned = {}
local result = {}
for i = 1, (#KEYS - 2) / 2 do
  local job, next = KEYS[1 + 2 * i], KEYS[2 + 2 * i]
  local entry, next_id = ARGV[3 * i], ARGV[3 * i + 1]
  if #redis.call('XPENDING', KEYS[1], 'workers', entry, entry, 1, ARGV[1]) == 0 then
    result[i] = 0
  else
    result[i] = 1
    owned[#owned + 1] = entry
    redis.call('HSET', job, 'state', 'done')
    redis.call('PEXPIRE', job, ARGV[2])
    if next_id ~= '' and redis.call('EXISTS', next) == 0 then
      redis.call('HSET', next, 'data', ARGV[3 * i + 2], 'attempt', 0, 'state', 'waiting')
      redis.call('XADD', KEYS[1], '*', 'id', next_id)
    end
  end
end
if #owned > 0 then
  redis.call('XACK', KEYS[1], 'workers', unpack(owned))
  redis.call('XDEL', KEYS[1], unpack(owned))
  redis.call('HINCRBY', KEYS[2], 'completed', #owned)
end
return result";

/// Most deliveries one group commit acknowledges (Lua's `unpack` has a stack limit).
const MAX_GROUP_COMMIT: usize = 500;

/// KEYS: delayed, stream. ARGV: now_ms, limit. Moves due jobs to the stream; returns how many.
const PROMOTE: &str = r"
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
for _, id in ipairs(due) do
  redis.call('ZREM', KEYS[1], id)
  redis.call('XADD', KEYS[2], '*', 'id', id)
end
return #due";

/// What a job hash stores besides its counters.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StoredJob {
    kind: String,
    payload: serde_json::Value,
    schema_version: u16,
    max_attempts: u32,
    trace_id: Option<String>,
    enqueued_at: DateTime<Utc>,
}

impl StoredJob {
    fn of(job: &NewJob, now: DateTime<Utc>) -> Self {
        Self {
            kind: job.kind.clone(),
            payload: job.payload.clone(),
            schema_version: job.schema_version,
            max_attempts: job.max_attempts.max(1),
            trace_id: job.trace_id.clone(),
            enqueued_at: now,
        }
    }
}

fn encode(job: &NewJob, now: DateTime<Utc>) -> Result<String, InfraError> {
    serde_json::to_string(&StoredJob::of(job, now)).map_err(|e| InfraError::unexpected("job encoding").with_source(e))
}

/// KEYS: stream. ARGV: min_idle_ms, this consumer's name. Removes from the group every other
/// consumer that holds no delivery and has not been heard of for `min_idle_ms` (workers stopped
/// or replaced: each start joins under a new name); returns how many. Checked and removed in one
/// script: a consumer given a delivery meanwhile would lose it with its removal.
const FORGET_IDLE_CONSUMERS: &str = r"
local listed = redis.pcall('XINFO', 'CONSUMERS', KEYS[1], 'workers')
if listed['err'] then return 0 end
local forgotten = 0
for _, consumer in ipairs(listed) do
  local fields = {}
  for i = 1, #consumer, 2 do fields[consumer[i]] = consumer[i + 1] end
  if fields['name'] ~= ARGV[2] and tonumber(fields['pending']) == 0 and tonumber(fields['idle']) > tonumber(ARGV[1]) then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], 'workers', fields['name'])
    forgotten = forgotten + 1
  end
end
return forgotten";

struct Scripts {
    forget_idle_consumers: redis::Script,
    enqueue: redis::Script,
    start: redis::Script,
    finish: redis::Script,
    heartbeat: redis::Script,
    complete_many: redis::Script,
    promote: redis::Script,
    reoffer: redis::Script,
    revive: redis::Script,
}

impl Scripts {
    fn new() -> Self {
        Self {
            forget_idle_consumers: redis::Script::new(FORGET_IDLE_CONSUMERS),
            enqueue: redis::Script::new(ENQUEUE),
            start: redis::Script::new(START),
            finish: redis::Script::new(FINISH),
            heartbeat: redis::Script::new(HEARTBEAT),
            complete_many: redis::Script::new(COMPLETE_MANY),
            promote: redis::Script::new(PROMOTE),
            reoffer: redis::Script::new(REOFFER),
            revive: redis::Script::new(REVIVE),
        }
    }
}

/// The producer side, shared by the api and the workers.
pub struct RedisJobQueue {
    redis: SharedConnection,
    keys: RedisKeys,
    scripts: Scripts,
}

impl RedisJobQueue {
    pub fn new(pool: Pool, keys: RedisKeys) -> Self {
        Self { redis: SharedConnection::new(pool), keys, scripts: Scripts::new() }
    }

    /// The ENQUEUE script call for one job.
    fn enqueue_call(
        &self,
        job: &NewJob,
        due: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<redis::ScriptInvocation<'_>, InfraError> {
        let keys = self.keys.queue(job.queue.as_str());
        let mut call = self.scripts.enqueue.prepare_invoke();
        call.key(keys.job(job.id.as_str()))
            .key(keys.stream())
            .key(keys.delayed())
            .arg(job.id.as_str())
            .arg(encode(job, now)?)
            .arg(due.map_or(0, |d| d.timestamp_millis()))
            .arg(now.timestamp_millis());
        Ok(call)
    }

    async fn put(&self, job: NewJob, due: Option<DateTime<Utc>>) -> Result<Enqueued, InfraError> {
        let call = self.enqueue_call(&job, due, Utc::now())?;
        let created: i64 = self.redis.script(&call).await?;
        Ok(if created == 1 { Enqueued::Created } else { Enqueued::AlreadyPresent })
    }
}

impl RedisJobQueue {
    /// Enqueues many jobs in one round trip, each idempotent on its id.
    pub async fn enqueue_batch(&self, jobs: &[NewJob]) -> Result<Vec<Enqueued>, InfraError> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let now = Utc::now();
        let mut pipe = redis::pipe();
        for job in jobs {
            pipe.invoke_script(&self.enqueue_call(job, None, now)?);
        }
        // Enqueue is idempotent on the job id, so the batch may run again if the server lost
        // the script.
        let created: Vec<i64> = self.redis.script_pipe(&pipe, &[&self.scripts.enqueue]).await?;
        Ok(created.into_iter().map(|c| if c == 1 { Enqueued::Created } else { Enqueued::AlreadyPresent }).collect())
    }

    /// `JobQueue::reoffer`, in one round trip.
    async fn reoffer_batch(&self, jobs: &[NewJob], revive_after: Duration) -> Result<Vec<Enqueued>, InfraError> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let now = Utc::now();
        let max_wait = MAX_REVIVE_WAIT.max(revive_after);
        let mut pipe = redis::pipe();
        for job in jobs {
            let keys = self.keys.queue(job.queue.as_str());
            let mut call = self.scripts.reoffer.prepare_invoke();
            call.key(keys.job(job.id.as_str()))
                .key(keys.stream())
                .key(keys.dead())
                .key(keys.spent())
                .arg(job.id.as_str())
                .arg(encode(job, now)?)
                .arg(now.timestamp_millis())
                .arg(millis(revive_after))
                .arg(millis(max_wait));
            pipe.invoke_script(&call);
        }
        // Idempotent too: a job runs again only while it is dead.
        let answers: Vec<i64> = self.redis.script_pipe(&pipe, &[&self.scripts.reoffer]).await?;
        Ok(answers
            .into_iter()
            .map(|a| match a {
                1 => Enqueued::Created,
                2 => Enqueued::Redriven,
                _ => Enqueued::AlreadyPresent,
            })
            .collect())
    }
}

#[async_trait]
impl JobQueue for RedisJobQueue {
    async fn enqueue(&self, job: NewJob) -> Result<Enqueued, InfraError> {
        self.put(job, None).await
    }

    async fn enqueue_at(&self, job: NewJob, at: DateTime<Utc>) -> Result<Enqueued, InfraError> {
        self.put(job, Some(at)).await
    }

    async fn enqueue_many(&self, jobs: &[NewJob]) -> Result<Vec<Enqueued>, InfraError> {
        self.enqueue_batch(jobs).await
    }

    async fn reoffer(&self, jobs: &[NewJob], revive_after: Duration) -> Result<Vec<Enqueued>, InfraError> {
        self.reoffer_batch(jobs, revive_after).await
    }
}

/// One delivery of a job to a consumer.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub entry_id: String,
    pub job: JobEnvelope,
    /// An earlier attempt of this round failed and was retried (its outcome was recorded): a job
    /// delivered more often than allowed after that lost only its last outcome (an outage, a
    /// worker stopped), rather than crashing every worker that ran it.
    pub failed_before: bool,
}

/// Settings of a consumer.
#[derive(Debug, Clone)]
pub struct ConsumerSettings {
    /// How long finished jobs are remembered (so a re-enqueue of their id does nothing).
    pub retention: Duration,
    /// A job dead-lettered because its retries ran out runs again this long after, twice as long
    /// after each revival, at most an hour (or this, if longer), each time plus up to a quarter
    /// at random.
    pub revive_after: Duration,
}

impl Default for ConsumerSettings {
    fn default() -> Self {
        Self { retention: Duration::from_secs(24 * 3600), revive_after: Duration::from_secs(60) }
    }
}

/// Depth of one queue, for operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QueueStats {
    /// Waiting to be read.
    pub waiting: u64,
    /// Read, not yet acknowledged.
    pub in_flight: u64,
    pub delayed: u64,
    pub dead: u64,
}

/// The consumer side of one queue, for one process. Its name must be unique among consumers.
pub struct QueueConsumer {
    queue: QueueName,
    keys: QueueKeys,
    name: String,
    redis: SharedConnection,
    /// Blocking reads need a connection of their own without a reply timeout.
    client: redis::Client,
    reader: tokio::sync::Mutex<Option<MultiplexedConnection>>,
    scripts: Scripts,
    settings: ConsumerSettings,
    acks: GroupCommit,
    /// Where the next reclaim scan starts: XAUTOCLAIM looks at ten times its count of pending
    /// entries per call, so each call goes on from where the last one stopped (back to the start
    /// once it reached the end); from the start each time, idle deliveries behind many running
    /// ones would never be reached.
    reclaim_from: std::sync::Mutex<String>,
}

/// Completions waiting for the next group commit. Whoever gets the flush lock acknowledges
/// everything waiting, its own completion included unless an earlier flush took it: while one
/// commit runs the next batch gathers, so a busy consumer acks many jobs per round trip and an
/// idle one waits for nobody.
#[derive(Default)]
struct GroupCommit {
    waiting: std::sync::Mutex<Vec<WaitingAck>>,
    flush: tokio::sync::Mutex<()>,
}

struct WaitingAck {
    entry_id: String,
    job_id: String,
    /// The next step of the job's flow: its id and its encoded envelope.
    next: Option<(String, String)>,
    reply: tokio::sync::oneshot::Sender<Result<bool, (InfraErrorKind, String)>>,
}

impl QueueConsumer {
    pub fn new(
        pool: Pool,
        redis_url: &str,
        keys: &RedisKeys,
        queue: QueueName,
        name: impl Into<String>,
        settings: ConsumerSettings,
    ) -> Result<Self, InfraError> {
        Ok(Self {
            queue,
            keys: keys.queue(queue.as_str()),
            name: name.into(),
            redis: SharedConnection::new(pool),
            client: redis::Client::open(redis_url).map_err(infra_from_redis)?,
            reader: tokio::sync::Mutex::new(None),
            scripts: Scripts::new(),
            settings,
            acks: GroupCommit::default(),
            reclaim_from: std::sync::Mutex::new("0-0".to_owned()),
        })
    }

    pub fn queue(&self) -> QueueName {
        self.queue
    }

    /// Creates the consumer group (reading the stream from its start) if it does not exist.
    pub async fn ensure_group(&self) -> Result<(), InfraError> {
        let created: Result<(), InfraError> = self
            .redis
            .cmd(redis::cmd("XGROUP").arg("CREATE").arg(self.keys.stream()).arg(GROUP).arg("0").arg("MKSTREAM"))
            .await;
        match created {
            Err(err) if err.to_string().contains("BUSYGROUP") || format!("{err:?}").contains("BUSYGROUP") => Ok(()),
            other => other,
        }
    }

    /// Removes from the group the consumers (other than this one) that hold no delivery and were
    /// not heard of for `min_idle`: each worker start joins under a new name, and nothing else
    /// ever removes the old ones. Returns how many.
    pub async fn forget_idle_consumers(&self, min_idle: Duration) -> Result<u64, InfraError> {
        let mut call = self.scripts.forget_idle_consumers.prepare_invoke();
        call.key(self.keys.stream()).arg(millis(min_idle)).arg(&self.name);
        self.redis.script(&call).await
    }

    /// Reads up to `max` new deliveries, waiting up to `block` for the first.
    pub async fn read(&self, max: usize, block: Duration) -> Result<Vec<Delivery>, InfraError> {
        let mut slot = self.reader.lock().await;
        if slot.is_none() {
            let config = redis::AsyncConnectionConfig::new().set_response_timeout(None);
            *slot = Some(
                self.client.get_multiplexed_async_connection_with_config(&config).await.map_err(infra_from_redis)?,
            );
        }
        let Some(conn) = slot.as_mut() else { return Ok(Vec::new()) };
        let reply: redis::RedisResult<Option<redis::streams::StreamReadReply>> = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(GROUP)
            .arg(&self.name)
            .arg("COUNT")
            .arg(max.max(1))
            .arg("BLOCK")
            .arg(millis(block))
            .arg("STREAMS")
            .arg(self.keys.stream())
            .arg(">")
            .query_async(conn)
            .await;
        let reply = match reply {
            Ok(reply) => reply,
            Err(err) => {
                *slot = None;
                if err.to_string().contains("NOGROUP") {
                    drop(slot);
                    self.ensure_group().await?;
                    return Ok(Vec::new());
                }
                return Err(infra_from_redis(err));
            }
        };
        drop(slot);
        let entries: Vec<(String, String)> = reply
            .map(|r| {
                r.keys
                    .into_iter()
                    .flat_map(|k| k.ids)
                    .filter_map(|e| Some((e.id.clone(), e.get::<String>("id")?)))
                    .collect()
            })
            .unwrap_or_default();
        self.start(entries).await
    }

    /// Takes deliveries idle longer than `min_idle` (their consumer crashed or hangs).
    pub async fn reclaim(&self, min_idle: Duration, max: usize) -> Result<Vec<Delivery>, InfraError> {
        let from = self.reclaim_from.lock().map(|f| f.clone()).unwrap_or_else(|_| "0-0".to_owned());
        let reply: redis::streams::StreamAutoClaimReply = self
            .redis
            .cmd(
                redis::cmd("XAUTOCLAIM")
                    .arg(self.keys.stream())
                    .arg(GROUP)
                    .arg(&self.name)
                    .arg(millis(min_idle))
                    .arg(&from)
                    .arg("COUNT")
                    .arg(max.max(1)),
            )
            .await?;
        if let Ok(mut next) = self.reclaim_from.lock() {
            next.clone_from(&reply.next_stream_id);
        }
        let entries = reply.claimed.into_iter().filter_map(|e| Some((e.id.clone(), e.get::<String>("id")?))).collect();
        self.start(entries).await
    }

    /// Marks each delivery started (counting the attempt) and loads its envelope. Deliveries of
    /// jobs that no longer exist are acknowledged and skipped; a job that cannot be read is
    /// dead-lettered.
    async fn start(&self, entries: Vec<(String, String)>) -> Result<Vec<Delivery>, InfraError> {
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        // One script call for the whole batch.
        let mut call = self.scripts.start.prepare_invoke();
        for (_, job_id) in &entries {
            call.key(self.keys.job(job_id));
        }
        let started: Vec<Vec<String>> = self.redis.script(&call).await?;
        let mut deliveries = Vec::with_capacity(entries.len());
        for ((entry_id, job_id), started) in entries.into_iter().zip(started) {
            let [data, attempt, failed] = started.as_slice() else {
                // Settled on its own: a failure here leaves the entry pending (reclaimed later)
                // and must not cost the batch's other deliveries, already started.
                if let Err(err) = self.finish_raw(&entry_id, &job_id, "skip", 0, "").await {
                    tracing::warn!(job_id, error = %err, "a vanished job's delivery stays pending");
                }
                continue;
            };
            let stored: StoredJob = match serde_json::from_str(data) {
                Ok(stored) => stored,
                Err(err) => {
                    // Not runnable here (stored by a newer release, or damaged): dead-lettered as
                    // one whose retries ran out, so that it runs again by itself later (a newer
                    // worker can read it), instead of failing the batch around it again and again
                    // (reclaim would offer it first every time).
                    let error = format!("the stored job cannot be read: {err}");
                    tracing::error!(job_id, %error, "job dead-lettered");
                    let now = Utc::now().timestamp_millis();
                    if let Err(err) = self.finish_raw(&entry_id, &job_id, "spent", now, &error).await {
                        tracing::warn!(job_id, error = %err, "an unreadable job's delivery stays pending");
                    }
                    continue;
                }
            };
            deliveries.push(Delivery {
                entry_id,
                job: JobEnvelope {
                    id: JobId::new(job_id),
                    queue: self.queue,
                    kind: stored.kind,
                    payload: stored.payload,
                    schema_version: stored.schema_version,
                    attempt: attempt.parse().unwrap_or(1),
                    max_attempts: stored.max_attempts,
                    trace_id: stored.trace_id,
                    enqueued_at: stored.enqueued_at,
                },
                failed_before: failed == "1",
            });
        }
        Ok(deliveries)
    }

    async fn finish_raw(
        &self,
        entry_id: &str,
        job_id: &str,
        outcome: &str,
        due_ms: i64,
        error: &str,
    ) -> Result<bool, InfraError> {
        let mut call = self.scripts.finish.prepare_invoke();
        call.key(self.keys.stream())
            .key(self.keys.job(job_id))
            .key(self.keys.delayed())
            .key(self.keys.dead())
            .key(self.keys.stats())
            .key(self.keys.spent())
            .arg(&self.name)
            .arg(entry_id)
            .arg(outcome)
            .arg(due_ms)
            .arg(error)
            .arg(job_id)
            .arg(millis(self.settings.revive_after))
            .arg(millis(MAX_REVIVE_WAIT.max(self.settings.revive_after)))
            .arg(jitter());
        let owned: i64 = self.redis.script(&call).await?;
        Ok(owned == 1)
    }

    /// Acknowledges a finished job, enqueuing the next step of its flow (same queue) atomically.
    /// Returns `false` (and changes nothing) when this consumer no longer owns the delivery.
    pub async fn complete(&self, delivery: &Delivery, next: Option<&NewJob>) -> Result<bool, InfraError> {
        let next = match next {
            Some(n) if n.queue != self.queue => {
                return Err(InfraError::unexpected("a flow's next step must be on the same queue"))
            }
            Some(n) => Some((n.id.as_str().to_owned(), encode(n, Utc::now())?)),
            None => None,
        };
        let (reply, answer) = tokio::sync::oneshot::channel();
        if let Ok(mut waiting) = self.acks.waiting.lock() {
            waiting.push(WaitingAck {
                entry_id: delivery.entry_id.clone(),
                job_id: delivery.job.id.as_str().to_owned(),
                next,
                reply,
            });
        }
        {
            let _flushing = self.acks.flush.lock().await;
            loop {
                let batch: Vec<WaitingAck> = match self.acks.waiting.lock() {
                    Ok(mut waiting) => {
                        let take = waiting.len().min(MAX_GROUP_COMMIT);
                        waiting.drain(..take).collect()
                    }
                    Err(_) => Vec::new(),
                };
                if batch.is_empty() {
                    break;
                }
                self.commit_group(batch).await;
            }
        }
        match answer.await {
            Ok(Ok(owned)) => Ok(owned),
            Ok(Err((InfraErrorKind::Unavailable, message))) => Err(InfraError::unavailable(message)),
            Ok(Err((_, message))) => Err(InfraError::unexpected(message)),
            Err(_) => Err(InfraError::unexpected("group commit dropped a completion")),
        }
    }

    async fn commit_group(&self, batch: Vec<WaitingAck>) {
        let mut call = self.scripts.complete_many.prepare_invoke();
        call.key(self.keys.stream()).key(self.keys.stats()).arg(&self.name).arg(millis(self.settings.retention));
        for ack in &batch {
            let job = self.keys.job(&ack.job_id);
            match &ack.next {
                Some((id, data)) => call.key(job).key(self.keys.job(id)).arg(&ack.entry_id).arg(id).arg(data),
                None => call.key(&job).key(&job).arg(&ack.entry_id).arg("").arg(""),
            };
        }
        match self.redis.script::<Vec<i64>>(&call).await {
            Ok(owned) => {
                for (ack, owned) in batch.into_iter().zip(owned) {
                    let _ = ack.reply.send(Ok(owned == 1));
                }
            }
            Err(err) => {
                let (kind, message) = (err.kind(), err.to_string());
                for ack in batch {
                    let _ = ack.reply.send(Err((kind, message.clone())));
                }
            }
        }
    }

    /// Schedules another attempt at `now + delay`.
    pub async fn retry(&self, delivery: &Delivery, delay: Duration, error: &str) -> Result<bool, InfraError> {
        self.finish_raw(&delivery.entry_id, delivery.job.id.as_str(), "retry", due_in(delay), error).await
    }

    /// Puts the job back for `delay` without counting this delivery as an attempt: it was not
    /// this worker's to run (a newer release's payload).
    pub async fn defer(&self, delivery: &Delivery, delay: Duration, reason: &str) -> Result<bool, InfraError> {
        self.finish_raw(&delivery.entry_id, delivery.job.id.as_str(), "defer", due_in(delay), reason).await
    }

    /// Moves the job to the dead-letter stream with its last error: it failed for good (or kept
    /// crashing its workers), and only an operator runs it again.
    pub async fn dead_letter(&self, delivery: &Delivery, error: &str) -> Result<bool, InfraError> {
        self.finish_raw(&delivery.entry_id, delivery.job.id.as_str(), "dead", Utc::now().timestamp_millis(), error)
            .await
    }

    /// Moves the job to the dead-letter stream because its retries ran out on failures that
    /// may pass (an outage): [`QueueConsumer::revive_due`] runs it again once it has been dead
    /// for the settings' `revive_after` (doubled per revival), and a sweep's `JobQueue::reoffer`
    /// of its id may do so earlier.
    pub async fn dead_letter_spent(&self, delivery: &Delivery, error: &str) -> Result<bool, InfraError> {
        self.finish_raw(&delivery.entry_id, delivery.job.id.as_str(), "spent", Utc::now().timestamp_millis(), error)
            .await
    }

    /// Keeps a long-running delivery owned (resets its idle time) while this consumer still owns
    /// it. `false`: another consumer has reclaimed it (this one was cut off from Redis, or
    /// paused, for longer than the reclaim delay); it is theirs now, and this consumer's outcome
    /// will not be recorded.
    pub async fn heartbeat(&self, delivery: &Delivery) -> Result<bool, InfraError> {
        let mut call = self.scripts.heartbeat.prepare_invoke();
        call.key(self.keys.stream()).arg(&self.name).arg(&delivery.entry_id);
        let owned: i64 = self.redis.script(&call).await?;
        Ok(owned == 1)
    }

    /// Moves delayed jobs that are due to the stream. Any number of processes may run it.
    pub async fn promote(&self, limit: usize) -> Result<usize, InfraError> {
        let mut call = self.scripts.promote.prepare_invoke();
        call.key(self.keys.delayed()).key(self.keys.stream()).arg(Utc::now().timestamp_millis()).arg(limit);
        let moved: i64 = self.redis.script(&call).await?;
        Ok(usize::try_from(moved).unwrap_or(0))
    }

    /// Runs again, with fresh attempts, up to `limit` jobs dead-lettered out of retries whose
    /// time to run again has come. Any number of processes may run it. Returns how many.
    pub async fn revive_due(&self, limit: usize) -> Result<usize, InfraError> {
        let now = Utc::now().timestamp_millis();
        let due: Vec<String> = self
            .redis
            .cmd(
                redis::cmd("ZRANGEBYSCORE")
                    .arg(self.keys.spent())
                    .arg("-inf")
                    .arg(now)
                    .arg("LIMIT")
                    .arg(0)
                    .arg(limit.max(1)),
            )
            .await?;
        if due.is_empty() {
            return Ok(0);
        }
        let mut call = self.scripts.revive.prepare_invoke();
        call.key(self.keys.stream()).key(self.keys.dead()).key(self.keys.spent()).arg(now);
        for id in &due {
            call.key(self.keys.job(id)).arg(id);
        }
        let revived: i64 = self.redis.script(&call).await?;
        Ok(usize::try_from(revived).unwrap_or(0))
    }

    pub async fn stats(&self) -> Result<QueueStats, InfraError> {
        let depth = depth_of(&self.redis, &self.keys, self.queue).await?;
        Ok(QueueStats { waiting: depth.waiting, in_flight: depth.in_flight, delayed: depth.delayed, dead: depth.dead })
    }

    /// The dead letters: (job id, last error), oldest first.
    pub async fn dead_letters(&self, max: usize) -> Result<Vec<(String, String)>, InfraError> {
        let reply: redis::streams::StreamRangeReply =
            self.redis.cmd(redis::cmd("XRANGE").arg(self.keys.dead()).arg("-").arg("+").arg("COUNT").arg(max)).await?;
        Ok(reply
            .ids
            .into_iter()
            .filter_map(|e| Some((e.get::<String>("id")?, e.get::<String>("error").unwrap_or_default())))
            .collect())
    }
}

/// The depth and counters of one queue.
async fn depth_of(redis: &SharedConnection, keys: &QueueKeys, queue: QueueName) -> Result<QueueDepth, InfraError> {
    let mut pipe = redis::pipe();
    pipe.cmd("XLEN").arg(keys.stream());
    pipe.cmd("ZCARD").arg(keys.delayed()).cmd("XLEN").arg(keys.dead());
    pipe.cmd("HMGET").arg(keys.stats()).arg("completed").arg("retried").arg("dead");
    pipe.cmd("XRANGE").arg(keys.stream()).arg("-").arg("+").arg("COUNT").arg(1);
    type Reply = (u64, u64, u64, (Option<u64>, Option<u64>, Option<u64>), redis::streams::StreamRangeReply);
    let (len, delayed, dead, (completed, retried, dead_total), oldest): Reply = redis.pipe(&pipe).await?;
    // XPENDING before any worker created the group is an error: nothing is in flight then, but
    // jobs may already wait in the stream.
    let pending = match redis.cmd::<redis::Value>(redis::cmd("XPENDING").arg(keys.stream()).arg(GROUP)).await {
        Ok(pending) => pending,
        Err(err) if format!("{err:?}").contains("NOGROUP") => redis::Value::Nil,
        Err(err) => return Err(err),
    };
    let in_flight = match pending {
        redis::Value::Array(items) => match items.first() {
            Some(redis::Value::Int(n)) => u64::try_from(*n).unwrap_or(0),
            _ => 0,
        },
        _ => 0,
    };
    let oldest_ms = oldest.ids.first().and_then(|e| e.id.split_once('-')).and_then(|(ms, _)| ms.parse::<i64>().ok());
    let oldest_age_ms =
        oldest_ms.map_or(0, |ms| u64::try_from(Utc::now().timestamp_millis().saturating_sub(ms)).unwrap_or(0));
    Ok(QueueDepth {
        queue,
        waiting: len.saturating_sub(in_flight),
        in_flight,
        delayed,
        dead,
        completed_total: completed.unwrap_or(0),
        retried_total: retried.unwrap_or(0),
        dead_total: dead_total.unwrap_or(0),
        oldest_age_ms,
    })
}

/// KEYS: dead stream, job, stream, spent. ARGV: job id. Re-drives a dead job with fresh attempts:
/// its dead letter is the entry the job recorded when it died (one XDEL, never a scan of every
/// dead letter, which would hold Redis for everyone); a job dead before entries were recorded is
/// looked for in the dead stream.
const REDRIVE: &str = r"
local job = redis.call('HMGET', KEYS[2], 'state', 'dead_entry')
if job[1] ~= 'dead' then return 0 end
if job[2] then
  redis.call('XDEL', KEYS[1], job[2])
else
  for _, entry in ipairs(redis.call('XRANGE', KEYS[1], '-', '+')) do
    local fields = entry[2]
    for i = 1, #fields, 2 do
      if fields[i] == 'id' and fields[i + 1] == ARGV[1] then redis.call('XDEL', KEYS[1], entry[1]) end
    end
  end
end
redis.call('ZREM', KEYS[4], ARGV[1])
redis.call('HSET', KEYS[2], 'attempt', 0, 'state', 'waiting')
redis.call('HDEL', KEYS[2], 'error', 'died', 'died_at', 'dead_entry')
redis.call('XADD', KEYS[3], '*', 'id', ARGV[1])
return 1";

/// Operators' view of every queue.
pub struct RedisJobAdmin {
    redis: SharedConnection,
    keys: RedisKeys,
    redrive: redis::Script,
}

impl RedisJobAdmin {
    pub fn new(pool: Pool, keys: RedisKeys) -> Self {
        Self { redis: SharedConnection::new(pool), keys, redrive: redis::Script::new(REDRIVE) }
    }
}

/// The queue side of `JobAdmin` (the platform adds canaries, which also need the outbox).
impl RedisJobAdmin {
    pub async fn depths(&self) -> Result<Vec<QueueDepth>, InfraError> {
        let mut depths = Vec::with_capacity(QueueName::ALL.len());
        for queue in QueueName::ALL {
            depths.push(depth_of(&self.redis, &self.keys.queue(queue.as_str()), queue).await?);
        }
        Ok(depths)
    }

    pub async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, InfraError> {
        let mut letters = Vec::new();
        for queue in QueueName::ALL {
            let keys = self.keys.queue(queue.as_str());
            let reply: redis::streams::StreamRangeReply = self
                .redis
                .cmd(redis::cmd("XREVRANGE").arg(keys.dead()).arg("+").arg("-").arg("COUNT").arg(limit))
                .await?;
            let found: Vec<(String, String, String)> = reply
                .ids
                .into_iter()
                .filter_map(|e| {
                    Some((e.id.clone(), e.get::<String>("id")?, e.get::<String>("error").unwrap_or_default()))
                })
                .collect();
            if found.is_empty() {
                continue;
            }
            // When each runs again by itself (scores of the spent set; none for a final death).
            let mut scores = redis::cmd("ZMSCORE");
            scores.arg(keys.spent());
            for (_, id, _) in &found {
                scores.arg(id);
            }
            let revives: Vec<Option<f64>> = self.redis.cmd(&scores).await?;
            letters.extend(found.into_iter().zip(revives).map(|((entry, id, error), at)| {
                #[allow(clippy::cast_possible_truncation)]
                let revives_at = at.and_then(|ms| DateTime::from_timestamp_millis(ms as i64));
                (entry, DeadLetter { queue, job_id: JobId::new(id), error, revives_at })
            }));
        }
        // Stream ids start with their time: newest first across queues.
        letters.sort_by_key(|l| std::cmp::Reverse(stream_id_key(&l.0)));
        Ok(letters.into_iter().take(limit).map(|(_, l)| l).collect())
    }

    pub async fn retry_dead(&self, job: &JobId) -> Result<Option<QueueName>, InfraError> {
        for queue in QueueName::ALL {
            let keys = self.keys.queue(queue.as_str());
            let mut call = self.redrive.prepare_invoke();
            call.key(keys.dead()).key(keys.job(job.as_str())).key(keys.stream()).key(keys.spent()).arg(job.as_str());
            if self.redis.script::<i64>(&call).await? == 1 {
                return Ok(Some(queue));
            }
        }
        Ok(None)
    }
}

/// The time (ms since the epoch) `delay` from now.
fn due_in(delay: Duration) -> i64 {
    Utc::now().timestamp_millis().saturating_add(i64::try_from(millis(delay)).unwrap_or(i64::MAX))
}

fn stream_id_key(id: &str) -> (u64, u64) {
    let (ms, seq) = id.split_once('-').unwrap_or((id, "0"));
    (ms.parse().unwrap_or(0), seq.parse().unwrap_or(0))
}
