//! Argon2id password hashing, off the async threads.

use argon2::password_hash::{self, Output, ParamsString, PasswordHash as PhcHash, Salt, SaltString};
use std::sync::{Arc, Mutex, PoisonError};

use argon2::{Algorithm, Argon2, Block, Params, Version};
use async_trait::async_trait;
use ecom_identity::model::{Password, PasswordHash};
use ecom_identity::ports::PasswordHasher;
use ecom_kernel::InfraError;

/// Argon2id with the OWASP baseline parameters (19 MiB, 2 passes, 1 lane), computed on a few
/// threads of its own.
///
/// Each hash takes 19 MiB. Run on tokio's blocking pool (up to 512 threads), a burst of logins
/// or sign-ups would hash on as many threads at once, and the allocator keeps a freed 19 MiB
/// block per thread: a flood of requests could exhaust memory. A fixed pool of
/// `available_parallelism` threads (at most 4) bounds both the memory and the CPU given to
/// hashing; requests beyond it wait their turn in a bounded queue.
#[derive(Clone)]
pub struct Argon2Hasher {
    params: Params,
    /// A hash of a random password, verified against when the account does not exist.
    decoy: String,
    pool: Arc<HashPool>,
}

impl Argon2Hasher {
    pub fn new() -> Result<Self, InfraError> {
        let params = Params::new(19 * 1024, 2, 1, None)
            .map_err(|e| InfraError::unexpected(format!("argon2 parameters: {e}")))?;
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| InfraError::unexpected(format!("no randomness: {e}")))?;
        let decoy_password: String = seed.iter().map(|b| format!("{b:02x}")).collect();
        // Computed once, here, in memory freed right after (not this thread's for good).
        let decoy = hash_with(&params, &decoy_password, |p, pw, salt| compute_in(&mut Vec::new(), p, pw, salt))?;
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(1, 4);
        Ok(Self { params, decoy, pool: Arc::new(HashPool::start(threads, 256)?) })
    }
}

type Work = Box<dyn FnOnce() + Send>;

/// A fixed set of threads running hashing work from a bounded queue. The threads end when the
/// last hasher is dropped.
struct HashPool {
    work: tokio::sync::mpsc::Sender<Work>,
}

impl HashPool {
    fn start(threads: usize, queue: usize) -> Result<Self, InfraError> {
        let (work, inbox) = tokio::sync::mpsc::channel::<Work>(queue);
        let inbox = Arc::new(Mutex::new(inbox));
        for i in 0..threads {
            let inbox = inbox.clone();
            std::thread::Builder::new()
                .name(format!("argon2-{i}"))
                .spawn(move || loop {
                    // One thread waits in the queue while the others wait for the lock.
                    let next = inbox.lock().unwrap_or_else(PoisonError::into_inner).blocking_recv();
                    match next {
                        Some(job) => {
                            // A panic drops the job's reply (its caller gets an error), never the thread.
                            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                        }
                        None => return,
                    }
                })
                .map_err(|e| InfraError::unexpected(format!("starting the password hashing threads: {e}")))?;
        }
        Ok(Self { work })
    }

    async fn run<T: Send + 'static>(&self, job: impl FnOnce() -> T + Send + 'static) -> Result<T, InfraError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.work
            .send(Box::new(move || {
                let _ = reply.send(job());
            }))
            .await
            .map_err(|_| InfraError::unexpected("password hashing threads stopped"))?;
        answer.await.map_err(|_| InfraError::unexpected("password hashing task failed"))
    }
}

fn argon2(params: &Params) -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
}

fn hash_blocking(params: &Params, password: &str) -> Result<String, InfraError> {
    hash_with(params, password, compute)
}

/// Hashes with a fresh salt; `compute` chooses the memory.
fn hash_with(
    params: &Params,
    password: &str,
    compute: impl for<'a> FnOnce(&Params, &[u8], Salt<'a>) -> password_hash::Result<PhcHash<'a>>,
) -> Result<String, InfraError> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| InfraError::unexpected(format!("no randomness: {e}")))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| InfraError::unexpected(format!("salt: {e}")))?;
    compute(params, password.as_bytes(), salt.as_salt())
        .map(|h| h.to_string())
        .map_err(|e| InfraError::unexpected(format!("argon2 hashing failed: {e}")))
}

thread_local! {
    /// Argon2's working memory (19 MiB), kept by each hashing thread for its next hash:
    /// allocated and freed per hash, it spread over the allocator's arenas and stayed there.
    static MEMORY: std::cell::RefCell<Vec<Block>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The PHC hash of `password` with `params` and `salt`, computed in this thread's memory.
fn compute<'a>(params: &Params, password: &[u8], salt: Salt<'a>) -> password_hash::Result<PhcHash<'a>> {
    MEMORY.with(|memory| compute_in(&mut memory.borrow_mut(), params, password, salt))
}

/// The same, in `memory` (grown to the size `params` need).
fn compute_in<'a>(
    memory: &mut Vec<Block>,
    params: &Params,
    password: &[u8],
    salt: Salt<'a>,
) -> password_hash::Result<PhcHash<'a>> {
    let mut salt_bytes = [0u8; 64];
    let salt_bytes = salt.decode_b64(&mut salt_bytes)?;
    let blocks = params.block_count();
    if memory.len() < blocks {
        memory.resize(blocks, Block::default());
    }
    let memory = &mut memory[..blocks];
    let output = Output::init_with(params.output_len().unwrap_or(Params::DEFAULT_OUTPUT_LEN), |out| {
        Ok(argon2(params).hash_password_into_with_memory(password, salt_bytes, out, &mut *memory)?)
    })?;
    Ok(PhcHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(params)?,
        salt: Some(salt),
        hash: Some(output),
    })
}

/// Verifies against the hash's own parameters (older hashes keep working if ours change).
fn verify_blocking(password: &str, phc: &str) -> bool {
    let Ok(parsed) = PhcHash::new(phc) else { return false };
    if parsed.algorithm != Algorithm::Argon2id.ident() {
        return false;
    }
    let (Some(salt), Some(expected), Ok(params)) = (parsed.salt, parsed.hash, Params::try_from(&parsed)) else {
        return false;
    };
    // `Output` compares in constant time.
    compute(&params, password.as_bytes(), salt).is_ok_and(|computed| computed.hash == Some(expected))
}

#[async_trait]
impl PasswordHasher for Argon2Hasher {
    async fn hash(&self, password: &Password) -> Result<PasswordHash, InfraError> {
        let (params, plain) = (self.params.clone(), password.expose().to_owned());
        self.pool.run(move || hash_blocking(&params, &plain)).await?.map(PasswordHash::new)
    }

    async fn verify(&self, password: &Password, hash: &PasswordHash) -> Result<bool, InfraError> {
        let (plain, phc) = (password.expose().to_owned(), hash.as_str().to_owned());
        self.pool.run(move || verify_blocking(&plain, &phc)).await
    }

    async fn burn_verification_time(&self, password: &Password) -> Result<(), InfraError> {
        let (plain, decoy) = (password.expose().to_owned(), self.decoy.clone());
        self.pool
            .run(move || {
                verify_blocking(&plain, &decoy);
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn password(s: &str) -> Password {
        Password::parse(s.to_owned()).unwrap()
    }

    #[tokio::test]
    async fn a_hash_verifies_its_own_password_only() {
        let hasher = Argon2Hasher::new().unwrap();
        let hash = hasher.hash(&password("correct horse")).await.unwrap();
        assert!(hash.as_str().starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(!hash.as_str().contains("correct horse"));
        assert!(hasher.verify(&password("correct horse"), &hash).await.unwrap());
        assert!(!hasher.verify(&password("wrong horse!"), &hash).await.unwrap());
    }

    #[tokio::test]
    async fn the_same_password_hashes_differently_each_time() {
        let hasher = Argon2Hasher::new().unwrap();
        let a = hasher.hash(&password("same password")).await.unwrap();
        let b = hasher.hash(&password("same password")).await.unwrap();
        assert_ne!(a, b);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn hashing_runs_on_a_bounded_pool_that_survives_a_panic() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let pool = Arc::new(HashPool::start(2, 4).unwrap());
        let (running, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let jobs = (0..20).map(|_| {
            let (pool, running, most) = (pool.clone(), running.clone(), most.clone());
            async move {
                pool.run(move || {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    std::thread::sleep(std::time::Duration::from_millis(5));
                    running.fetch_sub(1, Ordering::SeqCst);
                    std::thread::current().name().unwrap_or("").to_owned()
                })
                .await
                .unwrap()
            }
        });
        let names = futures_util::future::join_all(jobs).await;
        assert!(names.iter().all(|n| n.starts_with("argon2-")), "{names:?}");
        assert_eq!(most.load(Ordering::SeqCst), 2, "never more than the pool's threads at once");

        #[allow(clippy::panic)]
        let failed = pool.run(|| -> u8 { panic!("boom") }).await;
        assert!(failed.is_err());
        assert_eq!(pool.run(|| 7).await.unwrap(), 7, "the threads survive a panicking job");
    }

    #[test]
    fn hashes_match_the_standard_argon2id_encoding_both_ways() {
        use argon2::password_hash::PasswordHasher as _;
        let params = Params::new(19 * 1024, 2, 1, None).unwrap();
        let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap();
        let standard = argon2(&params).hash_password(b"correct horse", &salt).unwrap().to_string();
        assert_eq!(compute(&params, b"correct horse", salt.as_salt()).unwrap().to_string(), standard);
        assert!(verify_blocking("correct horse", &standard), "hashes stored before still verify");
        assert!(!verify_blocking("wrong horse", &standard));
        // Other parameters (an older or a future policy) verify with their own.
        let light = Params::new(8 * 1024, 1, 1, None).unwrap();
        let other = argon2(&light).hash_password(b"correct horse", &salt).unwrap().to_string();
        assert!(verify_blocking("correct horse", &other));
    }

    #[tokio::test]
    async fn an_unreadable_hash_never_verifies() {
        let hasher = Argon2Hasher::new().unwrap();
        assert!(!hasher.verify(&password("anything1"), &PasswordHash::new("garbage".into())).await.unwrap());
        hasher.burn_verification_time(&password("anything1")).await.unwrap();
    }
}
