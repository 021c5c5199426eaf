//! Tenants: a dimension of every request, isolated in storage.
//!
//! Routes match a tenant's *logical* key (`tenantconfig/limits` for every tenant); the
//! record lives under the tenant's namespace in every store: `tenants/<tenant>/<key>`.
//! The coordinator maps keys both ways, so a tenant never names, reads, lists or
//! overwrites another tenant's keys, and a store's own tools see the layout plainly.

use std::fmt;
use std::sync::Arc;

use crate::error::{Error, ErrorKind, Result};
use crate::key::{Key, Prefix};

/// The first segment of every tenant's namespace.
pub const TENANTS_ROOT: &str = "tenants";

/// A validated tenant name: one key segment of ASCII letters, digits, `-`, `_` and `.`
/// (not `.` or `..`), at most 128 bytes.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tenant(Arc<str>);

impl Tenant {
    /// Validates a tenant name.
    pub fn new(name: impl AsRef<str>) -> Result<Tenant> {
        let name = name.as_ref();
        let ok = !name.is_empty()
            && name.len() <= 128
            && name != "."
            && name != ".."
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if ok {
            Ok(Tenant(Arc::from(name)))
        } else {
            Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "invalid tenant name \"{}\": use 1 to 128 ASCII letters, digits, '-', '_' or '.' (not \".\" or \"..\")",
                    name.escape_debug()
                ),
            ))
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Where the tenant's `key` is stored: `tenants/<tenant>/<key>`. The key was
    /// validated (no `..`, no empty segment), so it cannot leave the namespace.
    pub fn storage_key(&self, key: &Key) -> Result<Key> {
        Key::new(format!("{TENANTS_ROOT}/{}/{key}", self.0)).map_err(|e| {
            e.context(format!(
                "key {key} of tenant {} is too long once stored under its namespace",
                self.0
            ))
        })
    }

    /// Where the tenant's keys under `prefix` are stored.
    pub fn storage_prefix(&self, prefix: &Prefix) -> Result<Prefix> {
        if prefix.is_empty() {
            Prefix::new(format!("{TENANTS_ROOT}/{}/", self.0))
        } else {
            Prefix::new(format!("{TENANTS_ROOT}/{}/{prefix}", self.0))
        }
    }

    /// The tenant's key for a stored key, `None` if the stored key is not the tenant's.
    pub fn logical_key(&self, stored: &Key) -> Option<Key> {
        let rest = stored
            .as_str()
            .strip_prefix(TENANTS_ROOT)?
            .strip_prefix('/')?
            .strip_prefix(&*self.0)?
            .strip_prefix('/')?;
        Key::new(rest).ok()
    }

    /// Replaces the tenant's namespace in `message` by nothing, so that errors show the
    /// tenant the keys it knows.
    pub fn scrub(&self, message: &str) -> String {
        message.replace(&format!("{TENANTS_ROOT}/{}/", self.0), "")
    }
}

impl fmt::Display for Tenant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Tenant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tenant({:?})", &*self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_map_both_ways_and_stay_inside_the_namespace() {
        let acme = Tenant::new("acme").unwrap();
        let k = Key::new("tenantconfig/limits").unwrap();
        let stored = acme.storage_key(&k).unwrap();
        assert_eq!(stored.as_str(), "tenants/acme/tenantconfig/limits");
        assert_eq!(acme.logical_key(&stored), Some(k));
        let other = Tenant::new("acme2").unwrap();
        assert_eq!(other.logical_key(&stored), None);
        assert_eq!(
            acme.storage_prefix(&Prefix::all()).unwrap().as_str(),
            "tenants/acme/"
        );
        for bad in ["", ".", "..", "a/b", "a b", "é"] {
            assert_eq!(
                Tenant::new(bad).unwrap_err().kind(),
                ErrorKind::InvalidInput,
                "{bad:?}"
            );
        }
        assert_eq!(
            acme.scrub("no record under tenants/acme/x/y"),
            "no record under x/y"
        );
    }
}
