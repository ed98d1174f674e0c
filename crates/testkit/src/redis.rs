use deadpool_redis::redis;

use crate::redis_url;

/// A key prefix of its own for one test; every key under it is deleted on drop.
pub struct TestRedis {
    prefix: String,
    url: String,
}

impl Default for TestRedis {
    fn default() -> Self {
        Self::new()
    }
}

impl TestRedis {
    pub fn new() -> Self {
        Self { prefix: format!("test:{}:", uuid::Uuid::now_v7().simple()), url: redis_url() }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Keys currently stored under this test's prefix.
    pub fn keys(&self) -> Vec<String> {
        let mut conn = redis::Client::open(self.url.as_str()).unwrap().get_connection().unwrap();
        redis::cmd("KEYS").arg(format!("{}*", self.prefix)).query(&mut conn).unwrap()
    }
}

impl TestRedis {
    /// The string values of `keys` (full keys, prefix included), `None` where absent.
    pub fn get(&self, keys: &[&str]) -> Vec<Option<String>> {
        let mut conn = redis::Client::open(self.url.as_str()).unwrap().get_connection().unwrap();
        redis::cmd("MGET").arg(keys).query(&mut conn).unwrap()
    }

    /// Sets string keys (full keys, prefix included) to values, as a write that a later change
    /// should have replaced.
    pub fn set(&self, pairs: &[(&str, &str)]) {
        let mut conn = redis::Client::open(self.url.as_str()).unwrap().get_connection().unwrap();
        let _: () = redis::cmd("MSET").arg(pairs).query(&mut conn).unwrap();
    }

    /// Deletes the keys under this prefix that match `pattern` (a glob after the prefix), as a
    /// Redis that lost its data would; returns how many.
    pub fn lose(&self, pattern: &str) -> usize {
        let mut conn = redis::Client::open(self.url.as_str()).unwrap().get_connection().unwrap();
        let keys: Vec<String> = redis::cmd("KEYS").arg(format!("{}{pattern}", self.prefix)).query(&mut conn).unwrap();
        if !keys.is_empty() {
            let _: () = redis::cmd("DEL").arg(&keys).query(&mut conn).unwrap();
        }
        keys.len()
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        let Ok(client) = redis::Client::open(self.url.as_str()) else { return };
        let Ok(mut conn) = client.get_connection() else {
            eprintln!("warning: redis unreachable, keys under {} not deleted", self.prefix);
            return;
        };
        let keys: Vec<String> =
            redis::cmd("KEYS").arg(format!("{}*", self.prefix)).query(&mut conn).unwrap_or_default();
        if !keys.is_empty() {
            let _: Result<(), _> = redis::cmd("DEL").arg(keys).query(&mut conn);
        }
    }
}
