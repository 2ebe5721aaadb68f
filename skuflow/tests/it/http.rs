//! A whole deployment for HTTP tests: the dev broker, `skuflow up --brokers` (processor
//! and API) as a child process, optionally a second `skuflow api`, and a client.

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use reqwest::blocking::{Client, Response};
use reqwest::header::HeaderMap;
use serde_json::Value;

use crate::support::Cluster;

/// Status, JSON body, headers.
pub type Reply = (u16, Value, HeaderMap);

pub const ACME: &str = "acme-client-key";
pub const ACME_ADMIN: &str = "acme-admin-key";
pub const OTHER: &str = "other-client-key";
pub const JWT_SECRET: &str = "test-jwt-secret-of-at-least-32-bytes";

pub struct Stack {
    pub cluster: Cluster,
    pub url: String,
    children: Vec<Child>,
    pub client: Client,
    /// Environment of every process the stack starts.
    env: Vec<(String, String)>,
}

pub fn key_args() -> Vec<String> {
    [("acme", "client", ACME), ("acme", "admin", ACME_ADMIN), ("other", "client", OTHER)]
        .iter()
        .flat_map(|(tenant, role, key)| {
            ["--api-key".to_owned(), format!("{tenant}:{role}:{}", hex::encode(api::hash_key(key)))]
        })
        .collect()
}

impl Stack {
    /// Broker, topics, processor and API; `extra` goes to `skuflow up`.
    pub fn start(extra: &[&str]) -> Self {
        Self::start_env(extra, &[])
    }

    /// [`Stack::start`] with `env` set for every process of the stack.
    pub fn start_env(extra: &[&str], env: &[(&str, &str)]) -> Self {
        let cluster = Cluster::start();
        let mut stack = Self {
            url: String::new(),
            children: Vec::new(),
            client: Client::builder().timeout(Duration::from_secs(60)).build().unwrap(),
            cluster,
            env: env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
        };
        let data = stack.cluster.dir.path().join("up-store");
        let mut args: Vec<String> =
            ["up", "--brokers", &stack.cluster.bootstrap, "--partitions", "4"]
                .iter()
                .map(|s| (*s).to_owned())
                .collect();
        args.extend(
            [
                "--bind",
                "127.0.0.1:0",
                "--metrics-addr",
                "127.0.0.1:0",
                "--tick-interval-ms",
                "200",
                "--session-timeout-ms",
                "6000",
            ]
            .iter()
            .map(|s| (*s).to_owned()),
        );
        // HS256 unless the test configures a JWKS (the two exclude each other).
        if !extra.iter().any(|a| a.starts_with("--jwks-")) {
            args.extend(["--jwt-secret".to_owned(), JWT_SECRET.to_owned()]);
        }
        args.push("--data-dir".into());
        args.push(data.display().to_string());
        args.extend(key_args());
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        stack.url = stack.spawn(&args, "API http://", "up");
        stack
    }

    /// Another API instance on the same cluster; returns its base URL.
    pub fn second_api(&mut self) -> String {
        self.second_api_with(&[])
    }

    /// [`Stack::second_api`] with `extra` flags.
    pub fn second_api_with(&mut self, extra: &[&str]) -> String {
        let mut args: Vec<String> =
            ["api", "--brokers", &self.cluster.bootstrap, "--bind", "127.0.0.1:0"]
                .iter()
                .chain(extra)
                .map(|s| (*s).to_owned())
                .collect();
        args.extend(key_args());
        self.spawn(&args, "api listening on http://", "api-2")
    }

    /// Start `skuflow` with `args` as a child of this stack (stopped with it); returns
    /// the address after `marker` in its log.
    pub fn spawn(&mut self, args: &[String], marker: &str, name: &str) -> String {
        let log = self.cluster.dir.path().join(format!("{name}.log"));
        let stderr = std::fs::File::create(&log).unwrap();
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_skuflow"))
            .args(args)
            .env("SKUFLOW_LOG", "info,rdkafka=warn")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap();
        self.children.push(child);
        let started = Instant::now();
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if let Some(addr) = text.split(marker).nth(1).and_then(|r| r.split([' ', '\n']).next())
            {
                return format!("http://{addr}");
            }
            assert!(started.elapsed() < Duration::from_secs(60), "{name} did not start:\n{text}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn post(&self, path: &str, key: &str, idem: &str, body: Value) -> Reply {
        self.post_to(&self.url, path, key, idem, body)
    }

    /// POST and wait for the reply (up to 30 s unless the path says `wait=`), so that a
    /// slow machine answers late rather than 202.
    pub fn post_to(&self, base: &str, path: &str, key: &str, idem: &str, body: Value) -> Reply {
        let path = if path.contains("wait=") {
            path.to_owned()
        } else {
            format!("{path}{}wait=30000", if path.contains('?') { '&' } else { '?' })
        };
        let r = self
            .client
            .post(format!("{base}{path}"))
            .header("X-Api-Key", key)
            .header("Idempotency-Key", idem)
            .json(&body)
            .send()
            .unwrap();
        finish(r)
    }

    pub fn get(&self, path: &str, key: &str) -> Reply {
        self.get_from(&self.url, path, key)
    }

    pub fn get_from(&self, base: &str, path: &str, key: &str) -> Reply {
        finish(self.client.get(format!("{base}{path}")).header("X-Api-Key", key).send().unwrap())
    }

    pub fn restock(&self, sku: &str, warehouse: &str, quantity: u32) {
        let (status, body, headers) = self.post(
            &format!("/v1/admin/stock/{sku}/{warehouse}/restock"),
            ACME_ADMIN,
            &format!("stock-{sku}-{warehouse}-{quantity}"),
            serde_json::json!({ "quantity": quantity }),
        );
        if status == 202 {
            let location = headers["location"].to_str().unwrap().to_owned();
            self.poll(&location, ACME_ADMIN);
        } else {
            assert_eq!(status, 200, "{body}");
        }
    }

    /// Poll a command's Location until its reply is there.
    pub fn poll(&self, location: &str, key: &str) -> Value {
        let started = Instant::now();
        loop {
            let (status, body, _) = self.get(location, key);
            if status != 404 {
                return body;
            }
            assert!(started.elapsed() < Duration::from_secs(30), "no reply at {location}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Status, JSON body (Null if none) and headers.
pub fn finish(r: Response) -> Reply {
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let text = r.text().unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null), headers)
}

impl Drop for Stack {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A reply's position as `partition-offset` (for `min_position`).
pub fn position_of(reply: &Value) -> String {
    format!("{}-{}", reply["position"]["partition"], reply["position"]["offset"])
}
