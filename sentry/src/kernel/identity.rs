//! What makes one sandbox different from another restored from the same
//! statefile: its boot id (/proc/sys/kernel/random/boot_id), and, for a
//! sandbox handed out by a warm pool, the id and environment its take gave
//! (/proc/cryo/id and /proc/cryo/environ). None of it is saved: every
//! restore is a new boot, so a statefile never carries an identity to the
//! sandboxes restored from it (README, "Warm pools").

use std::sync::Mutex;

/// The sandbox's identity, shown by procfs.
#[derive(Debug)]
pub struct Identity {
    inner: Mutex<IdentityState>,
}

#[derive(Clone, Debug, Default)]
struct IdentityState {
    boot_id: [u8; 16],
    /// The id a pool take gave the sandbox (empty: not taken from a pool).
    take_id: String,
    /// The take's `--env` pairs, `KEY=VALUE` each.
    take_env: Vec<String>,
}

/// A random version-4 UUID's 16 bytes, from the host's getrandom (never
/// from anything saved).
fn random_uuid() -> [u8; 16] {
    let mut b = [0u8; 16];
    // The host's getrandom does not fail once the host has booted; if it
    // did, a boot id from the clock still differs between sandboxes.
    if getrandom::fill(&mut b).is_err() {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        b = (now ^ (u128::from(std::process::id()) << 64)).to_le_bytes();
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    b
}

/// The UUID's text form, as Linux prints boot_id and uuid.
pub fn uuid_text(b: &[u8; 16]) -> String {
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// A fresh random UUID in text form (/proc/sys/kernel/random/uuid).
pub fn new_uuid_text() -> String {
    uuid_text(&random_uuid())
}

impl Default for Identity {
    fn default() -> Identity {
        Identity::new()
    }
}

impl Identity {
    /// A new boot's identity.
    pub fn new() -> Identity {
        Identity {
            inner: Mutex::new(IdentityState {
                boot_id: random_uuid(),
                ..IdentityState::default()
            }),
        }
    }

    fn state(&self) -> IdentityState {
        self.inner.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// /proc/sys/kernel/random/boot_id.
    pub fn boot_id(&self) -> String {
        uuid_text(&self.state().boot_id)
    }

    pub fn take_id(&self) -> String {
        self.state().take_id
    }

    pub fn take_env(&self) -> Vec<String> {
        self.state().take_env
    }

    /// The sandbox becomes a clone handed out as `id` with `env`: a new
    /// boot id, and the take's id and environment.
    pub fn renew(&self, id: &str, env: &[String]) {
        if let Ok(mut s) = self.inner.lock() {
            s.boot_id = random_uuid();
            s.take_id = id.to_string();
            s.take_env = env.to_vec();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_ids_are_uuids_and_renew_changes_them() {
        let a = Identity::new();
        let b = Identity::new();
        let id = a.boot_id();
        assert_eq!(id.len(), 36);
        assert_eq!(id.as_bytes()[14], b'4', "{id}");
        assert_ne!(id, b.boot_id());
        a.renew("x", &["K=V".to_string()]);
        assert_ne!(a.boot_id(), id);
        assert_eq!(a.take_id(), "x");
        assert_eq!(a.take_env(), ["K=V"]);
        assert_ne!(new_uuid_text(), new_uuid_text());
    }
}
