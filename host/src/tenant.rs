//! Tenants: declared in the config (`[[tenants]]`, an id and a name) and
//! named by peers — ESP requests, node Hellos, tokens, clusters and (to
//! come) capture points — by id or by name. The lookup is written once,
//! here, so every caller reads a tenant the same way.

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TenantConfig {
    pub id: u32,
    pub name: String,
}

/// A tenant named in config: by id or by name.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum TenantRef {
    Id(u32),
    Name(String),
}

impl std::fmt::Display for TenantRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TenantRef::Id(id) => write!(f, "{id}"),
            TenantRef::Name(name) => write!(f, "'{name}'"),
        }
    }
}

impl TenantRef {
    /// How this reference looks a tenant up.
    pub fn key(&self) -> Key<'_> {
        match self {
            TenantRef::Id(id) => Key::Id(i64::from(*id)),
            TenantRef::Name(name) => Key::Name(name),
        }
    }
}

/// How a tenant is named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key<'a> {
    /// By id (any integer a peer sent; only ids that fit `u32` can match).
    Id(i64),
    /// By name; a name no tenant has that is all digits is read as an id,
    /// as ESP clients send `"TenantId": "101"`.
    Name(&'a str),
}

/// The declared tenant `key` names, if any.
pub fn find<'t>(tenants: &'t [TenantConfig], key: Key<'_>) -> Option<&'t TenantConfig> {
    let by_id = |id: i64| {
        let id = u32::try_from(id).ok()?;
        tenants.iter().find(|t| t.id == id)
    };
    match key {
        Key::Id(id) => by_id(id),
        Key::Name(name) => tenants
            .iter()
            .find(|t| t.name == name)
            .or_else(|| by_id(name.parse().ok()?)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenants_are_found_by_id_or_name_and_digits_read_as_an_id() {
        let tenants = [
            TenantConfig {
                id: 101,
                name: "Environment".into(),
            },
            TenantConfig {
                id: 7,
                name: "101".into(),
            },
        ];
        let id = |key| find(&tenants, key).map(|t| t.id);
        assert_eq!(id(Key::Id(101)), Some(101));
        assert_eq!(id(Key::Name("Environment")), Some(101));
        // A tenant named "101" is found by its name first.
        assert_eq!(id(Key::Name("101")), Some(7));
        assert_eq!(id(Key::Name("7")), Some(7));
        assert_eq!(id(Key::Id(-1)), None);
        assert_eq!(id(Key::Id(1 << 40)), None);
        assert_eq!(id(Key::Name("nobody")), None);
    }
}
