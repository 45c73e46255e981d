//! argon2id password hashing, off the async runtime (it is deliberately slow).

use crate::error::ApiError;
use argon2::password_hash::{
    rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString,
};
use argon2::Argon2;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Argon2 verifications and hashes one client address may have running at once.
pub const ARGON2_PER_ADDRESS: usize = 2;

/// Bounds the argon2 work (each ~tens of milliseconds of a core): at most one per core at once
/// in this process (the rest wait their turn), and at most [`ARGON2_PER_ADDRESS`] from one
/// client address (more are refused), so one address cannot take every core from the others'
/// logins.
pub struct ArgonGate {
    cores: Arc<Semaphore>,
    per_address: Mutex<HashMap<String, usize>>,
}

impl Default for ArgonGate {
    fn default() -> Self {
        Self::new(std::thread::available_parallelism().map_or(2, |n| n.get()))
    }
}

/// A turn at argon2 work; gives it back on drop.
pub struct ArgonTurn {
    gate: Arc<ArgonGate>,
    address: String,
    _core: OwnedSemaphorePermit,
}

impl Drop for ArgonTurn {
    fn drop(&mut self) {
        if let Ok(mut running) = self.gate.per_address.lock() {
            if let Some(n) = running.get_mut(&self.address) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    running.remove(&self.address);
                }
            }
        }
    }
}

impl ArgonGate {
    /// At most `cores` argon2 computations at once.
    pub fn new(cores: usize) -> Self {
        Self {
            cores: Arc::new(Semaphore::new(cores.max(1))),
            per_address: Mutex::new(HashMap::new()),
        }
    }

    /// A turn for `address`, waiting for a free core; `None` when the address already has
    /// [`ARGON2_PER_ADDRESS`] under way.
    pub async fn turn(self: &Arc<Self>, address: Option<&str>) -> Option<ArgonTurn> {
        let address = address.unwrap_or_default().to_owned();
        {
            let mut running = self.per_address.lock().ok()?;
            let n = running.entry(address.clone()).or_default();
            if *n >= ARGON2_PER_ADDRESS {
                return None;
            }
            *n += 1;
        }
        // Built before the wait, so a cancelled wait still gives the address's slot back.
        let mut turn = PendingTurn {
            gate: Some(self.clone()),
            address,
        };
        let core = self.cores.clone().acquire_owned().await.ok()?;
        let (gate, address) = (turn.gate.take()?, std::mem::take(&mut turn.address));
        Some(ArgonTurn {
            gate,
            address,
            _core: core,
        })
    }
}

/// An address's slot taken while waiting for a core.
struct PendingTurn {
    gate: Option<Arc<ArgonGate>>,
    address: String,
}

impl Drop for PendingTurn {
    fn drop(&mut self) {
        if let Some(gate) = self.gate.take() {
            if let Ok(mut running) = gate.per_address.lock() {
                if let Some(n) = running.get_mut(&self.address) {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        running.remove(&self.address);
                    }
                }
            }
        }
    }
}

pub async fn hash(password: String) -> Result<String, ApiError> {
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(ApiError::internal)
    })
    .await
    .map_err(ApiError::internal)?
}

/// Verifies a password. With no stored hash (unknown email) it verifies against a fixed dummy
/// hash, so the answer takes as long as for a real account and timing tells nothing.
pub async fn verify(password: String, stored: Option<String>) -> Result<bool, ApiError> {
    tokio::task::spawn_blocking(move || {
        let known = stored.is_some();
        let phc = stored.unwrap_or_else(|| dummy_hash().to_owned());
        let Ok(parsed) = PasswordHash::new(&phc) else {
            return false;
        };
        let ok = Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok();
        ok && known
    })
    .await
    .map_err(ApiError::internal)
}

fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(b"mcplatform-dummy-password", &salt)
            .map(|h| h.to_string())
            .unwrap_or_default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_address_gets_a_bounded_number_of_turns() {
        let gate = Arc::new(ArgonGate::new(4));
        let first = gate.turn(Some("10.0.0.1")).await;
        let second = gate.turn(Some("10.0.0.1")).await;
        assert!(first.is_some() && second.is_some());
        assert!(gate.turn(Some("10.0.0.1")).await.is_none());
        drop(first);
        assert!(gate.turn(Some("10.0.0.1")).await.is_some());
    }
}
