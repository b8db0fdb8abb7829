//! Stable content fingerprints (FNV-1a, 64-bit) for manifests.
//!
//! These identify artefacts (config files, weight indexes, datasets) so that mixing two runs is
//! caught; they are not a defence against tampering.

/// An incremental FNV-1a hasher with a stable output across platforms and versions.
#[derive(Debug, Clone)]
pub struct Fingerprint(u64);

impl Default for Fingerprint {
    fn default() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
}

impl Fingerprint {
    /// A fresh hasher.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feed bytes.
    pub fn update(&mut self, bytes: &[u8]) -> &mut Self {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
        self
    }

    /// Feed a string followed by a separator, so `("ab","c")` and `("a","bc")` differ.
    pub fn field(&mut self, s: &str) -> &mut Self {
        self.update(s.as_bytes()).update(&[0x1f])
    }

    /// The fingerprint as 16 hex digits.
    pub fn hex(&self) -> String {
        format!("{:016x}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_separated() {
        let a = Fingerprint::new().field("ab").field("c").hex();
        let b = Fingerprint::new().field("a").field("bc").hex();
        assert_ne!(a, b);
        assert_eq!(a.len(), 16);
    }
}
