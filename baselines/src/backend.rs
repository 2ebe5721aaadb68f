//! The two stores behind the baseline's reserve endpoint. Each keeps, per SKU, the units
//! available and a sequence for reservation ids, and per (tenant, SKU, key) the answer
//! it gave, so a retried key gets the same answer and takes nothing twice.

use std::sync::atomic::{AtomicUsize, Ordering};

use redis::AsyncCommands;
use tokio::sync::Mutex;

/// What a reserve did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reserved {
    /// Held; the SKU's reservation sequence number.
    Held(i64),
    /// Not enough; what was available.
    Insufficient(i64),
}

impl Reserved {
    fn encode(&self) -> String {
        match self {
            Reserved::Held(seq) => format!("R:{seq}"),
            Reserved::Insufficient(a) => format!("I:{a}"),
        }
    }

    fn decode(s: &str) -> anyhow::Result<Self> {
        let (kind, n) = s.split_once(':').ok_or_else(|| anyhow::anyhow!("bad answer {s:?}"))?;
        let n: i64 = n.parse()?;
        Ok(match kind {
            "R" => Reserved::Held(n),
            _ => Reserved::Insufficient(n),
        })
    }
}

/// Idempotency answers are kept this long (skuflow's default window).
const IDEMPOTENCY_MS: u64 = 24 * 3600 * 1000;

/// Redis with one Lua script per reserve (atomic on the server). The orchestrator starts
/// redis-server with `appendonly yes` and `appendfsync everysec`.
pub struct RedisStore {
    conn: redis::aio::MultiplexedConnection,
    script: redis::Script,
}

const RESERVE_LUA: &str = r"
local prev = redis.call('GET', KEYS[2])
if prev then return prev end
local a = tonumber(redis.call('HGET', KEYS[1], 'a') or '0')
local q = tonumber(ARGV[1])
local r
if a >= q then
  redis.call('HINCRBY', KEYS[1], 'a', -q)
  r = 'R:' .. redis.call('HINCRBY', KEYS[1], 's', 1)
else
  r = 'I:' .. a
end
redis.call('SET', KEYS[2], r, 'PX', ARGV[2])
return r
";

impl RedisStore {
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        let client = redis::Client::open(url)?;
        let conn = client.get_multiplexed_async_connection().await?;
        Ok(Self { conn, script: redis::Script::new(RESERVE_LUA) })
    }

    pub async fn seed(&self, skus: usize, stock: i64) -> anyhow::Result<()> {
        let mut conn = self.conn.clone();
        redis::cmd("FLUSHDB").query_async::<()>(&mut conn).await?;
        for chunk in (0..skus).collect::<Vec<_>>().chunks(1000) {
            let mut pipe = redis::pipe();
            for i in chunk {
                pipe.hset_multiple(format!("sku:sku-{i}"), &[("a", stock), ("s", 0)]).ignore();
            }
            pipe.query_async::<()>(&mut conn).await?;
        }
        Ok(())
    }

    pub async fn reserve(
        &self,
        tenant: &str,
        sku: &str,
        key: &str,
        quantity: u32,
    ) -> anyhow::Result<Reserved> {
        let mut conn = self.conn.clone();
        let answer: String = self
            .script
            .key(format!("sku:{sku}"))
            .key(format!("idem:{tenant}:{sku}:{key}"))
            .arg(quantity)
            .arg(IDEMPOTENCY_MS)
            .invoke_async(&mut conn)
            .await?;
        Reserved::decode(&answer)
    }

    pub async fn available(&self, sku: &str) -> anyhow::Result<Option<i64>> {
        let mut conn = self.conn.clone();
        Ok(conn.hget(format!("sku:{sku}"), "a").await?)
    }
}

/// PostgreSQL: per reserve one transaction that claims the idempotency key first (a
/// concurrent retry waits on it), then decrements the stock only if enough is there.
/// Synchronous commit stays on (the server's default). A fixed pool of connections, each
/// with its statements prepared once, as a pooled application would.
pub struct PostgresStore {
    pool: Vec<Mutex<Conn>>,
    next: AtomicUsize,
}

struct Conn {
    client: tokio_postgres::Client,
    claim: tokio_postgres::Statement,
    answer: tokio_postgres::Statement,
    take: tokio_postgres::Statement,
    available: tokio_postgres::Statement,
    record: tokio_postgres::Statement,
}

impl Conn {
    async fn prepare(client: tokio_postgres::Client) -> anyhow::Result<Self> {
        Ok(Self {
            claim: client
                .prepare("INSERT INTO idem VALUES ($1, $2, $3, '') ON CONFLICT DO NOTHING")
                .await?,
            answer: client
                .prepare("SELECT answer FROM idem WHERE tenant = $1 AND sku = $2 AND key = $3")
                .await?,
            take: client
                .prepare(
                    "UPDATE stock SET available = available - $2, seq = seq + 1
                     WHERE sku = $1 AND available >= $2 RETURNING seq",
                )
                .await?,
            available: client.prepare("SELECT available FROM stock WHERE sku = $1").await?,
            record: client
                .prepare("UPDATE idem SET answer = $4 WHERE tenant = $1 AND sku = $2 AND key = $3")
                .await?,
            client,
        })
    }
}

impl PostgresStore {
    /// Connect, create and fill the tables (`skus` SKUs of `stock` units), prepare.
    pub async fn connect(
        url: &str,
        connections: usize,
        skus: usize,
        stock: i64,
    ) -> anyhow::Result<Self> {
        let mut clients = Vec::new();
        for _ in 0..connections.max(1) {
            let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::warn!(error = %e, "postgres connection ended");
                }
            });
            clients.push(client);
        }
        clients[0]
            .batch_execute(
                "DROP TABLE IF EXISTS stock, idem;
                 CREATE TABLE stock (sku text PRIMARY KEY, available bigint NOT NULL, seq bigint NOT NULL DEFAULT 0);
                 CREATE TABLE idem (tenant text, sku text, key text, answer text NOT NULL,
                                    PRIMARY KEY (tenant, sku, key));",
            )
            .await?;
        clients[0]
            .execute(
                "INSERT INTO stock SELECT 'sku-' || g, $1, 0 FROM generate_series(0, $2 - 1) g",
                &[&stock, &(skus as i32)],
            )
            .await?;
        let mut pool = Vec::new();
        for client in clients {
            pool.push(Mutex::new(Conn::prepare(client).await?));
        }
        Ok(Self { pool, next: AtomicUsize::new(0) })
    }

    pub async fn reserve(
        &self,
        tenant: &str,
        sku: &str,
        key: &str,
        quantity: u32,
    ) -> anyhow::Result<Reserved> {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.pool.len();
        let mut conn = self.pool[i].lock().await;
        let Conn { client, claim, answer, take, available, record } = &mut *conn;
        let tx = client.transaction().await?;
        if tx.execute(&*claim, &[&tenant, &sku, &key]).await? == 0 {
            let row = tx.query_one(&*answer, &[&tenant, &sku, &key]).await?;
            tx.commit().await?;
            return Reserved::decode(row.get(0));
        }
        let q = i64::from(quantity);
        let answered = match tx.query_opt(&*take, &[&sku, &q]).await? {
            Some(row) => Reserved::Held(row.get(0)),
            None => {
                let row = tx.query_opt(&*available, &[&sku]).await?;
                Reserved::Insufficient(row.map_or(0, |r| r.get(0)))
            }
        };
        tx.execute(&*record, &[&tenant, &sku, &key, &answered.encode()]).await?;
        tx.commit().await?;
        Ok(answered)
    }

    pub async fn available(&self, sku: &str) -> anyhow::Result<Option<i64>> {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.pool.len();
        let conn = self.pool[i].lock().await;
        let row = conn.client.query_opt(&conn.available, &[&sku]).await?;
        Ok(row.map(|r| r.get(0)))
    }
}

/// Either store.
pub enum Store {
    Redis(RedisStore),
    Postgres(PostgresStore),
}

impl Store {
    pub async fn reserve(
        &self,
        tenant: &str,
        sku: &str,
        key: &str,
        quantity: u32,
    ) -> anyhow::Result<Reserved> {
        match self {
            Store::Redis(s) => s.reserve(tenant, sku, key, quantity).await,
            Store::Postgres(s) => s.reserve(tenant, sku, key, quantity).await,
        }
    }

    pub async fn available(&self, sku: &str) -> anyhow::Result<Option<i64>> {
        match self {
            Store::Redis(s) => s.available(sku).await,
            Store::Postgres(s) => s.available(sku).await,
        }
    }
}
