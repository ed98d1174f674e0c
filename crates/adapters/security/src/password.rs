//! Argon2id password hashing, off the async threads.

use argon2::password_hash::{PasswordHash as PhcHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use std::sync::{Arc, Mutex, PoisonError};

use argon2::{Algorithm, Argon2, Params, Version};
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
        let decoy = hash_blocking(&params, &decoy_password)?;
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
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| InfraError::unexpected(format!("no randomness: {e}")))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| InfraError::unexpected(format!("salt: {e}")))?;
    argon2(params)
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| InfraError::unexpected(format!("argon2 hashing failed: {e}")))
}

fn verify_blocking(params: &Params, password: &str, phc: &str) -> bool {
    PhcHash::new(phc)
        .map(|parsed| argon2(params).verify_password(password.as_bytes(), &parsed).is_ok())
        .unwrap_or(false)
}

#[async_trait]
impl PasswordHasher for Argon2Hasher {
    async fn hash(&self, password: &Password) -> Result<PasswordHash, InfraError> {
        let (params, plain) = (self.params.clone(), password.expose().to_owned());
        self.pool.run(move || hash_blocking(&params, &plain)).await?.map(PasswordHash::new)
    }

    async fn verify(&self, password: &Password, hash: &PasswordHash) -> Result<bool, InfraError> {
        let (params, plain, phc) = (self.params.clone(), password.expose().to_owned(), hash.as_str().to_owned());
        self.pool.run(move || verify_blocking(&params, &plain, &phc)).await
    }

    async fn burn_verification_time(&self, password: &Password) -> Result<(), InfraError> {
        let (params, plain, decoy) = (self.params.clone(), password.expose().to_owned(), self.decoy.clone());
        self.pool
            .run(move || {
                verify_blocking(&params, &plain, &decoy);
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

    #[tokio::test]
    async fn an_unreadable_hash_never_verifies() {
        let hasher = Argon2Hasher::new().unwrap();
        assert!(!hasher.verify(&password("anything1"), &PasswordHash::new("garbage".into())).await.unwrap());
        hasher.burn_verification_time(&password("anything1")).await.unwrap();
    }
}
