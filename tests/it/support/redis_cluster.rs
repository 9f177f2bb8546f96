//! A real Redis Cluster for the tests: three primaries (`redis-server --cluster-enabled
//! yes`, each on its own port and folder) joined by `redis-cli --cluster create`, all
//! stopped by their PIDs when dropped. Debian's `redis-server` and `redis-tools`.

use std::time::Duration;

use super::redis::RedisServer;

pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Three primaries, no replicas, every slot served.
    pub async fn start() -> Self {
        let mut nodes = Vec::new();
        for _ in 0..3 {
            nodes.push(
                RedisServer::start_with(
                    false,
                    &[
                        "--cluster-enabled",
                        "yes",
                        "--cluster-node-timeout",
                        "2000",
                        // As the README advises: the other primaries keep serving while
                        // one is down.
                        "--cluster-require-full-coverage",
                        "no",
                    ],
                )
                .await,
            );
        }
        let addresses: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let created = tokio::process::Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .kill_on_drop(true)
            .output();
        let created = tokio::time::timeout(Duration::from_secs(60), created)
            .await
            .expect("redis-cli --cluster create finishes")
            .expect("redis-cli runs (Debian package redis-tools)");
        assert!(
            created.status.success(),
            "redis-cli --cluster create: {}",
            String::from_utf8_lossy(&created.stdout)
        );
        let cluster = Self { nodes };
        for _ in 0..200 {
            if cluster.is_ready().await {
                return cluster;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the cluster did not become ready");
    }

    /// Every node says the cluster is ok, and knows all three primaries.
    async fn is_ready(&self) -> bool {
        for node in &self.nodes {
            let info: String = node.query(redis::cmd("CLUSTER").arg("INFO")).await;
            if !info.contains("cluster_state:ok") || !info.contains("cluster_known_nodes:3") {
                return false;
            }
        }
        true
    }

    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// The `[tickets.redis]` line that names the other nodes (the first is the `url`).
    pub fn nodes_line(&self) -> String {
        let others: Vec<String> = self.urls()[1..]
            .iter()
            .map(|u| format!("\"{u}\""))
            .collect();
        format!("cluster_nodes = [{}]\n", others.join(", "))
    }

    /// Keys matching `pattern` on every node, with the index of the node holding each.
    pub async fn keys(&self, pattern: &str) -> Vec<(usize, String)> {
        let mut all = Vec::new();
        for (n, node) in self.nodes.iter().enumerate() {
            all.extend(node.keys(pattern).await.into_iter().map(|k| (n, k)));
        }
        all
    }

    /// The hash slot of `key`.
    pub async fn slot(&self, key: &str) -> i64 {
        self.nodes[0]
            .query(redis::cmd("CLUSTER").arg("KEYSLOT").arg(key))
            .await
    }

    /// The index of the node that serves `slot`.
    pub async fn owner(&self, slot: i64) -> usize {
        for (n, node) in self.nodes.iter().enumerate() {
            let id: String = node.query(redis::cmd("CLUSTER").arg("MYID")).await;
            let shards: Vec<redis::Value> = node.query(redis::cmd("CLUSTER").arg("SLOTS")).await;
            for shard in shards {
                let redis::Value::Array(parts) = shard else {
                    continue;
                };
                let range: Option<(i64, i64)> = match (&parts[0], &parts[1]) {
                    (redis::Value::Int(a), redis::Value::Int(b)) => Some((*a, *b)),
                    _ => None,
                };
                let primary = match &parts[2] {
                    redis::Value::Array(p) => match p.get(2) {
                        Some(redis::Value::BulkString(id)) => {
                            String::from_utf8_lossy(id).into_owned()
                        }
                        _ => String::new(),
                    },
                    _ => String::new(),
                };
                if range.is_some_and(|(a, b)| (a..=b).contains(&slot)) && primary == id {
                    return n;
                }
            }
        }
        panic!("no node serves slot {slot}");
    }

    /// Moves `slot`, with its keys, from node `from` to node `to`, as `redis-cli --cluster
    /// reshard` does: importing and migrating states (clients meanwhile get `ASK`), the
    /// keys `MIGRATE`d in batches, then the new owner announced to every node (`MOVED`).
    /// `between`, if given, runs after the first key has moved and before the rest: a
    /// resharding in progress.
    pub async fn move_slot<F, Fut>(&self, slot: i64, from: usize, to: usize, between: Option<F>)
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = ()>,
    {
        let id = |n: usize| async move {
            self.nodes[n]
                .query::<String>(redis::cmd("CLUSTER").arg("MYID"))
                .await
        };
        let (from_id, to_id) = (id(from).await, id(to).await);
        let setslot = |state: &str, node: &str| {
            let mut cmd = redis::cmd("CLUSTER");
            cmd.arg("SETSLOT").arg(slot).arg(state).arg(node);
            cmd
        };
        let _: () = self.nodes[to].query(&setslot("IMPORTING", &from_id)).await;
        let _: () = self.nodes[from].query(&setslot("MIGRATING", &to_id)).await;
        let keys: Vec<String> = self.nodes[from]
            .query(
                redis::cmd("CLUSTER")
                    .arg("GETKEYSINSLOT")
                    .arg(slot)
                    .arg(1000),
            )
            .await;
        let migrate = |key: &String| {
            let mut cmd = redis::cmd("MIGRATE");
            cmd.arg("127.0.0.1")
                .arg(self.nodes[to].port)
                .arg(key)
                .arg(0)
                .arg(5000);
            cmd
        };
        let mut between = between;
        for key in &keys {
            let _: String = self.nodes[from].query(&migrate(key)).await;
            if let Some(between) = between.take() {
                between().await;
            }
        }
        for node in &self.nodes {
            let _: () = node.query(&setslot("NODE", &to_id)).await;
        }
    }
}
