//! Connections to Redis: one multiplexed connection per slot, opened lazily, replaced
//! after a failure, with one deadline per call and a shared reconnection backoff.
//!
//! Why not a pool crate: `deadpool-redis` and `bb8-redis` lend *exclusive* connections,
//! one command at a time each, where a multiplexed connection carries every concurrent
//! request at once (four of them serve hundreds of requests in flight). The `redis`
//! crate's own `ConnectionManager` is one such connection that reconnects by itself,
//! but it has none of what an SSO server needs from its store when Redis is down: a
//! hard bound on each call (one connection attempt plus one command, so a login never
//! hangs), a backoff shared by all slots (so requests fail at once during an outage
//! instead of each waiting out a connect timeout), and one more attempt on a fresh
//! connection after a broken one, for commands that answer the same when repeated (the
//! one-shot scripts keep a receipt for that). A broken connection means Redis closed
//! them all (a restart): every slot is reopened, not only the one that found out. This
//! file is those rules over the crate's multiplexed connections, and nothing more.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use redis::AsyncConnectionConfig;
use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{
    MultipleNodeRoutingInfo, Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr,
};

use crate::tickets::RegistryError;

/// After a failed connection attempt, requests fail at once for this long instead of each
/// waiting out its own connect timeout while Redis is down.
const RECONNECT_BACKOFF: Duration = Duration::from_millis(500);

/// One multiplexed connection per slot, opened on first use and reopened after a failure,
/// so the server starts, and recovers, whatever state Redis is in.
pub(super) struct Pool {
    target: Target,
    config: AsyncConnectionConfig,
    slots: Vec<tokio::sync::Mutex<Slot>>,
    failed_at: std::sync::Mutex<Option<Instant>>,
    next: AtomicUsize,
    command_timeout: Duration,
    /// The most any operation may take: one connection attempt and one command.
    deadline: Duration,
}

/// Where connections go: one Redis, the primary that Sentinel names at the time, or the
/// primaries of a Redis Cluster.
pub(super) enum Target {
    Direct(redis::Client),
    Sentinel(super::sentinel::Sentinels),
    /// The crate's cluster connection keeps one connection per node, routes each command
    /// by the slot of its first key and follows `MOVED` and `ASK` (a resharding).
    Cluster(Box<redis::cluster::ClusterClient>),
}

/// A connection to one Redis, or to every node of a cluster.
#[derive(Clone)]
pub(super) enum Connection {
    Single(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(
        &'a mut self,
        cmd: &'a redis::Cmd,
    ) -> redis::RedisFuture<'a, redis::Value> {
        match self {
            Self::Single(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        match self {
            Self::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}

impl Connection {
    /// `cmd` on every primary, each answer with the primary's `host:port`: the one Redis
    /// (named `""`), or each primary of the cluster, for what a cluster keeps per node
    /// (its configuration, a scan of its keys).
    pub(super) async fn on_each_primary(
        &mut self,
        cmd: &redis::Cmd,
    ) -> redis::RedisResult<Vec<(String, redis::Value)>> {
        match self {
            Self::Single(c) => Ok(vec![(String::new(), cmd.query_async(c).await?)]),
            Self::Cluster(c) => {
                let routing = RoutingInfo::MultiNode((MultipleNodeRoutingInfo::AllMasters, None));
                let answers = c.route_command(cmd.clone(), routing).await?;
                let redis::Value::Map(answers) = answers else {
                    return Err(redis::RedisError::from((
                        redis::ErrorKind::Client,
                        "one answer per primary expected",
                    )));
                };
                answers
                    .into_iter()
                    .map(|(node, answer)| {
                        let node: String = redis::FromRedisValue::from_redis_value(node)?;
                        match answer {
                            redis::Value::ServerError(e) => Err(e.into()),
                            answer => Ok((node, answer)),
                        }
                    })
                    .collect()
            }
        }
    }

    /// `WAIT` for `wanted` replicas (at most `timeout_ms`) on the primary that holds
    /// `key`: it counts the replicas that have every write sent so far on this
    /// connection to that primary. (The cluster connection would send a bare `WAIT` to
    /// every primary, where one without its replicas would fail every login.)
    pub(super) async fn wait_for_replicas(
        &mut self,
        key: &str,
        wanted: i64,
        timeout_ms: i64,
    ) -> redis::RedisResult<i64> {
        let mut cmd = redis::cmd("WAIT");
        cmd.arg(wanted).arg(timeout_ms);
        match self {
            Self::Single(c) => cmd.query_async(c).await,
            Self::Cluster(c) => {
                let route = Route::new(slot(key), SlotAddr::Master);
                let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route));
                Ok(redis::FromRedisValue::from_redis_value(
                    c.route_command(cmd, routing).await?,
                )?)
            }
        }
    }

    /// `cmd` on the node at `node` (`host:port`, as [`Self::on_each_primary`] names it).
    pub(super) async fn on_node<T: redis::FromRedisValue>(
        &mut self,
        node: &str,
        cmd: &redis::Cmd,
    ) -> redis::RedisResult<T> {
        match self {
            Self::Single(c) => cmd.query_async(c).await,
            Self::Cluster(c) => {
                let (host, port) = node
                    .rsplit_once(':')
                    .and_then(|(host, port)| Some((host.to_owned(), port.parse().ok()?)))
                    .ok_or_else(|| {
                        redis::RedisError::from((redis::ErrorKind::Client, "not host:port"))
                    })?;
                let routing =
                    RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress { host, port });
                Ok(redis::FromRedisValue::from_redis_value(
                    c.route_command(cmd.clone(), routing).await?,
                )?)
            }
        }
    }
}

/// The hash slot of `key`, as Redis Cluster computes it: CRC16 (XMODEM) of its hash tag,
/// the part between the first `{` and the next `}` if not empty, else of the whole key.
fn slot(key: &str) -> u16 {
    let key = key.as_bytes();
    let tagged = key.iter().position(|b| *b == b'{').and_then(|open| {
        let rest = &key[open + 1..];
        let close = rest.iter().position(|b| *b == b'}')?;
        (close > 0).then(|| &rest[..close])
    });
    crc16::State::<crc16::XMODEM>::calculate(tagged.unwrap_or(key)) % 16384
}

#[derive(Default)]
struct Slot {
    connection: Option<Connection>,
}

impl Pool {
    pub(super) fn new(
        target: Target,
        size: usize,
        connect_timeout: Duration,
        command_timeout: Duration,
    ) -> Self {
        Self {
            target,
            config: AsyncConnectionConfig::new()
                .set_connection_timeout(Some(connect_timeout))
                .set_response_timeout(Some(command_timeout)),
            slots: (0..size.max(1))
                .map(|_| tokio::sync::Mutex::new(Slot::default()))
                .collect(),
            failed_at: std::sync::Mutex::new(None),
            next: AtomicUsize::new(0),
            command_timeout,
            deadline: connect_timeout + command_timeout,
        }
    }

    /// The most any operation may take.
    pub(super) fn deadline(&self) -> Duration {
        self.deadline
    }

    async fn connection(&self, index: usize) -> Result<Connection, RegistryError> {
        let mut slot = self.slots[index].lock().await;
        if let Some(c) = &slot.connection {
            return Ok(c.clone());
        }
        if self
            .failed_at()
            .is_some_and(|at| at.elapsed() < RECONNECT_BACKOFF)
        {
            return Err(RegistryError::Unreachable);
        }
        let connected = match &self.target {
            Target::Direct(client) => client
                .get_multiplexed_async_connection_with_config(&self.config)
                .await
                .map(Connection::Single),
            Target::Sentinel(sentinels) => sentinels
                .primary(&self.config)
                .await
                .map(Connection::Single),
            Target::Cluster(client) => client.get_async_connection().await.map(Connection::Cluster),
        };
        match connected {
            Ok(c) => {
                if self.set_failed_at(None).is_some() {
                    tracing::info!("ticket registry: connected to redis again");
                }
                slot.connection = Some(c.clone());
                Ok(c)
            }
            Err(e) => {
                if self.set_failed_at(Some(Instant::now())).is_none() {
                    tracing::warn!(error = %e, "ticket registry: cannot connect to redis");
                }
                Err(RegistryError::Redis(e))
            }
        }
    }

    /// When a connection attempt last failed, if none has succeeded since: shared by the
    /// slots, so that one success ends the backoff for all.
    fn failed_at(&self) -> Option<Instant> {
        *self
            .failed_at
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn set_failed_at(&self, at: Option<Instant>) -> Option<Instant> {
        std::mem::replace(
            &mut *self
                .failed_at
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
            at,
        )
    }

    async fn forget(&self, index: usize) {
        let mut slot = self.slots[index].lock().await;
        slot.connection = None;
    }

    /// After a dropped connection: Redis closed them all, most likely (a restart), and the
    /// others would each fail their next command. A slot busy connecting is left alone.
    async fn forget_all(&self) {
        for slot in &self.slots {
            if let Ok(mut slot) = slot.try_lock() {
                slot.connection = None;
            }
        }
    }

    /// Runs `command` on a pooled connection. A connection that broke (Redis restarted,
    /// say) is replaced and the command sent once more, so a restart costs no request:
    /// every command of the store answers the same when repeated (the one-shot scripts
    /// through their receipts).
    pub(super) async fn run<T, F, Fut>(&self, command: F) -> Result<T, RegistryError>
    where
        F: Fn(Connection) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        self.within_deadline(self.attempt(command, 2)).await
    }

    /// However the attempts go, a request waits at most one connection and one command.
    async fn within_deadline<T>(
        &self,
        work: impl std::future::Future<Output = Result<T, RegistryError>>,
    ) -> Result<T, RegistryError> {
        tokio::time::timeout(self.deadline, work)
            .await
            .unwrap_or_else(|_| Err(RegistryError::Timeout(self.deadline)))
    }

    async fn attempt<T, F, Fut>(&self, command: F, attempts: usize) -> Result<T, RegistryError>
    where
        F: Fn(Connection) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let index = self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len();
        let mut last = None;
        for _ in 0..attempts {
            let connection = self.connection(index).await?;
            // A cluster connection reconnects to each node by itself: one node down must
            // not cost the connections to the others.
            let cluster = matches!(connection, Connection::Cluster(_));
            match tokio::time::timeout(self.command_timeout, command(connection)).await {
                Ok(Ok(value)) => return Ok(value),
                Ok(Err(e))
                    if e.is_connection_dropped()
                        || e.is_connection_refusal()
                        || (e.is_io_error() && !e.is_timeout()) =>
                {
                    if !cluster {
                        self.forget_all().await;
                        self.forget(index).await;
                    }
                    last = Some(RegistryError::Redis(e));
                }
                // A replica now (the old primary after a failover): the write was refused,
                // and the primary is elsewhere.
                Ok(Err(e))
                    if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::ReadOnly) =>
                {
                    self.forget_all().await;
                    self.forget(index).await;
                    last = Some(RegistryError::RefusesWrites(e));
                }
                // A slow Redis is not retried: that would only double the wait.
                Ok(Err(e)) if e.is_timeout() => {
                    self.forget(index).await;
                    return Err(RegistryError::Timeout(self.command_timeout));
                }
                Ok(Err(e)) if e.is_io_error() => {
                    self.forget(index).await;
                    return Err(RegistryError::Redis(e));
                }
                Ok(Err(e)) => return Err(RegistryError::Redis(e)),
                Err(_) => {
                    self.forget(index).await;
                    return Err(RegistryError::Timeout(self.command_timeout));
                }
            }
        }
        Err(last.unwrap_or(RegistryError::Unreachable))
    }
}

#[cfg(test)]
mod tests {
    use super::slot;

    #[test]
    fn slots_are_those_redis_cluster_computes() {
        // From the Redis Cluster specification and `CLUSTER KEYSLOT`.
        assert_eq!(slot("somekey"), 11058);
        assert_eq!(slot("foo{hash_tag}"), 2515);
        assert_eq!(slot("{hash_tag}bar"), 2515);
        assert_eq!(slot("foo{}{bar}"), slot("foo{}{bar}"));
        assert_ne!(slot("foo{}{bar}"), slot("bar"));
        assert_eq!(slot("cas:{a}t:x"), slot("a"));
    }
}
