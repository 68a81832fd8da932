//! API keys: `sk_<16 hex key id>_<64 hex secret>`; the legacy prefix `uak_` is accepted.
//! Only the SHA-256 digest of the whole key is stored; the key id is public (listing,
//! revocation) and carries no secret.

use rand::RngCore;
use sha2::{Digest, Sha256};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyPrefix {
    Sk,
    Uak,
}

impl KeyPrefix {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyPrefix::Sk => "sk",
            KeyPrefix::Uak => "uak",
        }
    }
}

/// A freshly generated key. `secret` is shown once and never stored.
pub struct GeneratedKey {
    pub key_id: String,
    pub secret: String,
    pub digest: String,
}

impl std::fmt::Debug for GeneratedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeneratedKey")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

pub fn generate(prefix: KeyPrefix) -> GeneratedKey {
    let mut id = [0u8; 8];
    let mut secret = [0u8; 32];
    let mut rng = rand::rng();
    rng.fill_bytes(&mut id);
    rng.fill_bytes(&mut secret);
    let key_id = hex::encode(id);
    let secret = format!("{}_{}_{}", prefix.as_str(), key_id, hex::encode(secret));
    let digest = digest(&secret);
    GeneratedKey {
        key_id,
        secret,
        digest,
    }
}

pub fn digest(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// Whether `key` has the shape of an API key; anything else is rejected before any lookup.
pub fn is_well_formed(key: &str) -> bool {
    let rest = key.strip_prefix("sk_").or_else(|| key.strip_prefix("uak_"));
    let Some(rest) = rest else { return false };
    let Some((id, secret)) = rest.split_once('_') else {
        return false;
    };
    let is_lower_hex = |s: &str| s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    id.len() == 16 && secret.len() == 64 && is_lower_hex(id) && is_lower_hex(secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_are_well_formed_and_distinct() {
        let a = generate(KeyPrefix::Sk);
        let b = generate(KeyPrefix::Uak);
        assert!(is_well_formed(&a.secret), "{}", a.key_id);
        assert!(is_well_formed(&b.secret));
        assert!(a.secret.starts_with(&format!("sk_{}_", a.key_id)));
        assert!(b.secret.starts_with("uak_"));
        assert_ne!(a.digest, b.digest);
        assert_eq!(a.digest, digest(&a.secret));
        assert!(!format!("{a:?}").contains(&a.secret));
    }

    #[test]
    fn malformed_keys_are_rejected() {
        let good = generate(KeyPrefix::Sk).secret;
        assert!(is_well_formed(&good));
        for bad in [
            "",
            "sk_",
            "pk_0123456789abcdef_",
            &good[..good.len() - 1],
            &good.to_uppercase(),
            &format!("{good}0"),
            &good.replacen("sk_", "sk-", 1),
        ] {
            assert!(!is_well_formed(bad), "{bad}");
        }
    }
}
