//! Tenants: declared in the config (`[[tenants]]`, an id and a name) and
//! named by peers — ESP requests, node Hellos, tokens, clusters and
//! capture points — by id or by name. The lookup is written once, here, so
//! every caller reads a tenant the same way.
//!
//! A capture point's operations carry no tenant of their own as an ESP
//! request does; [`TenantMapper`] decides it from the operation, the
//! capture point's `rules` and its `default-values`:
//!
//! ```toml
//! [captures.orders]
//! rules = [
//!   { property = "Customer.Segment", equals = "gold", tenant = "Premium" },
//!   { property = "Region", matches = "^EU-", tenant = 102 },
//! ]
//! default-values = { TenantId = 101, Queue = "Inbound", Priority = 5 }
//! ```
//!
//! First match wins: (1) the operation's own `TenantId` (an id, as an int
//! or as a numeric string, or a name); (2) the rules, in order; (3) a
//! `Queue` of the form `<tenant-id>:<queue>`; (4) `default-values.TenantId`.
//! An operation that names a tenant that does not exist, or that nothing
//! maps, is refused with fault 3001 saying why.

use regex::{Regex, RegexBuilder};
use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};

use crate::fault::{Fault, FaultCode};
use crate::kv::{Kv, Value};

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

/// Most bytes a compiled rule regex may take: a pattern in the config
/// cannot make the host build a huge automaton.
pub const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// The media type of an operation that names none and has no default.
pub const DEFAULT_MEDIA_TYPE: &str = "workitem";
/// The interaction type of an operation that names none and has no default.
pub const DEFAULT_INTERACTION_TYPE: &str = "Inbound";
/// The interaction subtype of an operation that names none and has no
/// default.
pub const DEFAULT_INTERACTION_SUBTYPE: &str = "InboundNew";

/// One tenant mapping rule of a capture point: an operation whose
/// `property` equals (or matches) a value belongs to `tenant`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RuleConfig {
    /// Path of the property compared, `.` walking into nested KV lists:
    /// `Customer.Segment`.
    pub property: String,
    /// The property's value (a string, or an int's decimal text) is
    /// exactly this.
    #[serde(default)]
    pub equals: Option<String>,
    /// A regex found in the property's value (unanchored, as
    /// `Regex::is_match`: write `^…$` to match the whole value).
    #[serde(default)]
    pub matches: Option<String>,
    /// The tenant the operation then belongs to.
    pub tenant: TenantRef,
}

/// A capture point's `default-values`: a TOML table of strings and
/// integers, kept in the order written. Each fills the property of that
/// name when an operation lacks it; `TenantId` is the tenant of last resort.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DefaultValues(pub Kv);

impl<'de> Deserialize<'de> for DefaultValues {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(TableVisitor)
    }
}

struct TableVisitor;

impl<'de> Visitor<'de> for TableVisitor {
    type Value = DefaultValues;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a table of strings and integers")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<DefaultValues, A::Error> {
        let mut kv = Kv::new();
        while let Some((key, Scalar(value))) = map.next_entry::<String, Scalar>()? {
            kv.0.push((key, value));
        }
        Ok(DefaultValues(kv))
    }
}

/// A string or an integer of `default-values`.
struct Scalar(Value);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ScalarVisitor)
    }
}

struct ScalarVisitor;

impl Visitor<'_> for ScalarVisitor {
    type Value = Scalar;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a string or an integer")
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
        Ok(Scalar(Value::Int(v)))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
        i64::try_from(v)
            .map(|v| Scalar(Value::Int(v)))
            .map_err(|_| E::custom(format!("{v} is too large for a KV integer")))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
        Ok(Scalar(Value::Str(v.to_string())))
    }
}

/// What a rule compares the property's value with.
#[derive(Debug, Clone)]
enum Test {
    Equals(String),
    Matches(Regex),
}

/// A rule ready to run: its path split, its regex compiled.
#[derive(Debug, Clone)]
struct Rule {
    path: Vec<String>,
    test: Test,
    tenant: TenantRef,
}

impl Rule {
    /// Whether the operation's property at this rule's path holds a string
    /// (or an int, as its decimal text) this rule accepts.
    fn accepts(&self, props: &Kv) -> bool {
        let Some(value) = lookup_path(props, &self.path) else {
            return false;
        };
        let text = match value {
            Value::Str(s) => std::borrow::Cow::Borrowed(s.as_str()),
            Value::Int(i) => std::borrow::Cow::Owned(i.to_string()),
            Value::Binary(_) | Value::List(_) => return false,
        };
        match &self.test {
            Test::Equals(want) => *text == **want,
            Test::Matches(re) => re.is_match(&text),
        }
    }
}

/// The first value at `path` (keys of nested lists), if every step exists.
fn lookup_path<'k>(props: &'k Kv, path: &[String]) -> Option<&'k Value> {
    let (last, walk) = path.split_last()?;
    let mut list = props;
    for key in walk {
        match list.get(key)? {
            Value::List(inner) => list = inner,
            _ => return None,
        }
    }
    list.get(last)
}

/// Decides the tenant of a capture point's operations and fills the
/// properties they lack (see the module docs). Built once per capture
/// point from its config; [`TenantMapper::map`] is cheap and pure.
#[derive(Debug, Clone)]
pub struct TenantMapper {
    rules: Vec<Rule>,
    defaults: Kv,
}

/// One operation's tenant and properties, as the capture point sends it on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapped {
    /// The tenant's id.
    pub tenant: u32,
    /// `MediaType`: the operation's, else `default-values.MediaType`, else
    /// [`DEFAULT_MEDIA_TYPE`].
    pub media_type: String,
    /// `Queue`: the operation's (without a `<tenant-id>:` prefix when that
    /// prefix decided the tenant), else `default-values.Queue`, else none.
    pub queue: Option<String>,
    /// The operation's properties in their order, with `TenantId` set to
    /// the tenant's id (an int), `Queue` and `MediaType` as above, then the
    /// defaults it lacked appended: `default-values` in their order, then
    /// `MediaType`, `InteractionType` and `InteractionSubtype`.
    pub properties: Kv,
}

impl TenantMapper {
    /// Checks and compiles a capture point's `rules` and `default-values`
    /// against the declared tenants. Every problem is returned at once,
    /// each placed under `place` (`captures.orders`) as config errors are.
    pub fn new(
        place: &str,
        rules: &[RuleConfig],
        defaults: &DefaultValues,
        tenants: &[TenantConfig],
    ) -> Result<TenantMapper, Vec<String>> {
        let mut problems = Vec::new();
        let mut compiled = Vec::new();
        for (i, r) in rules.iter().enumerate() {
            let at = format!("{place}.rules[{i}]");
            let path: Vec<String> = r.property.split('.').map(str::to_string).collect();
            if r.property.is_empty() {
                problems.push(format!("{at}.property: is empty"));
            } else if path.iter().any(String::is_empty) {
                problems.push(format!(
                    "{at}.property: '{}' has an empty step (write Customer.Segment)",
                    r.property
                ));
            }
            if find(tenants, r.tenant.key()).is_none() {
                problems.push(format!(
                    "{at}.tenant: tenant {} is not declared in [[tenants]]",
                    r.tenant
                ));
            }
            let test = match (&r.equals, &r.matches) {
                (Some(value), None) => Some(Test::Equals(value.clone())),
                (None, Some(pattern)) => match RegexBuilder::new(pattern)
                    .size_limit(REGEX_SIZE_LIMIT)
                    .build()
                {
                    Ok(re) => Some(Test::Matches(re)),
                    Err(e) => {
                        problems.push(format!("{at}.matches: {e}"));
                        None
                    }
                },
                _ => {
                    problems.push(format!("{at}: give exactly one of equals and matches"));
                    None
                }
            };
            if let Some(test) = test {
                compiled.push(Rule {
                    path,
                    test,
                    tenant: r.tenant.clone(),
                });
            }
        }
        let at = format!("{place}.default-values");
        for (key, value) in &defaults.0.0 {
            match (key.as_str(), value) {
                ("TenantId", Value::Int(id)) if find(tenants, Key::Id(*id)).is_none() => problems
                    .push(format!(
                        "{at}.TenantId: tenant {id} is not declared in [[tenants]]"
                    )),
                ("TenantId", Value::Str(name)) if find(tenants, Key::Name(name)).is_none() => {
                    problems.push(format!(
                        "{at}.TenantId: tenant '{name}' is not declared in [[tenants]]"
                    ))
                }
                (
                    "Queue" | "MediaType" | "InteractionType" | "InteractionSubtype",
                    Value::Int(_),
                ) => problems.push(format!("{at}.{key}: must be a string")),
                _ => {}
            }
        }
        if problems.is_empty() {
            Ok(TenantMapper {
                rules: compiled,
                defaults: defaults.0.clone(),
            })
        } else {
            Err(problems)
        }
    }

    /// The tenant of one operation and its properties with the defaults
    /// filled. Fault 3001 when it names a tenant that does not exist or
    /// nothing maps it; 3000 when `TenantId`, `Queue` or `MediaType` has
    /// the wrong type. `tenants` are the declared tenants now (a rule
    /// naming one since removed is a 3001 fault, not a crash).
    pub fn map(&self, props: &Kv, tenants: &[TenantConfig]) -> Result<Mapped, Fault> {
        let own_queue = match props.get("Queue") {
            None => None,
            Some(Value::Str(q)) => Some(q.as_str()),
            Some(_) => return Err(Fault::invalid("Queue must be a string")),
        };
        let mut queue = own_queue.map(str::to_string);
        let tenant = if let Some(value) = props.get("TenantId") {
            named_tenant(value, tenants, "TenantId")?
        } else if let Some(rule) = self.rules.iter().find(|r| r.accepts(props)) {
            find(tenants, rule.tenant.key())
                .ok_or_else(|| {
                    tenant_fault(format!(
                        "rule for {} names tenant {}, which is not a tenant",
                        rule.path.join("."),
                        rule.tenant
                    ))
                })?
                .id
        } else if let Some((id, rest)) = own_queue.and_then(endpoint) {
            let t = find(tenants, Key::Id(id)).ok_or_else(|| {
                tenant_fault(format!(
                    "Queue '{}' names tenant {id}, which is not a tenant",
                    own_queue.unwrap_or_default()
                ))
            })?;
            queue = Some(rest.to_string());
            t.id
        } else if let Some(value) = self.defaults.get("TenantId") {
            named_tenant(value, tenants, "default-values.TenantId")?
        } else {
            return Err(tenant_fault("no rule matched and no default TenantId"));
        };

        let mut properties = props.clone();
        set(&mut properties, "TenantId", Value::Int(i64::from(tenant)));
        if let Some(q) = &queue {
            set(&mut properties, "Queue", Value::Str(q.clone()));
        }
        for (key, value) in &self.defaults.0 {
            if properties.get(key).is_none() {
                properties.0.push((key.clone(), value.clone()));
            }
        }
        for (key, value) in [
            ("MediaType", DEFAULT_MEDIA_TYPE),
            ("InteractionType", DEFAULT_INTERACTION_TYPE),
            ("InteractionSubtype", DEFAULT_INTERACTION_SUBTYPE),
        ] {
            if properties.get(key).is_none() {
                properties
                    .0
                    .push((key.to_string(), Value::Str(value.to_string())));
            }
        }
        let queue = match properties.get("Queue") {
            Some(Value::Str(q)) => Some(q.clone()),
            _ => None,
        };
        let media_type = match properties.get("MediaType") {
            Some(Value::Str(m)) => m.clone(),
            _ => return Err(Fault::invalid("MediaType must be a string")),
        };
        Ok(Mapped {
            tenant,
            media_type,
            queue,
            properties,
        })
    }
}

/// The tenant a `TenantId` value names: an int is an id, a string a name
/// or an id's digits.
fn named_tenant(value: &Value, tenants: &[TenantConfig], what: &str) -> Result<u32, Fault> {
    let (found, shown) = match value {
        Value::Int(id) => (find(tenants, Key::Id(*id)), id.to_string()),
        Value::Str(name) => (find(tenants, Key::Name(name)), name.clone()),
        Value::Binary(_) | Value::List(_) => {
            return Err(Fault::invalid(format!("{what} must be an int or a string")));
        }
    };
    found
        .map(|t| t.id)
        .ok_or_else(|| tenant_fault(format!("{what} '{shown}' is not a tenant")))
}

/// `<tenant-id>:<queue>`: the id (digits only) and the queue after the
/// first colon (not empty).
fn endpoint(queue: &str) -> Option<(i64, &str)> {
    let (id, rest) = queue.split_once(':')?;
    if id.is_empty() || rest.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((id.parse().ok()?, rest))
}

fn tenant_fault(message: impl Into<String>) -> Fault {
    Fault::new(FaultCode::Tenant, message)
}

/// Sets `key` to `value`: in place of its first occurrence (later ones are
/// dropped, so the list says one thing), or appended.
fn set(kv: &mut Kv, key: &str, value: Value) {
    match kv.0.iter().position(|(k, _)| k == key) {
        Some(first) => {
            kv.0[first].1 = value;
            let mut i = 0;
            kv.0.retain(|(k, _)| {
                i += 1;
                i - 1 == first || k != key
            });
        }
        None => kv.0.push((key.to_string(), value)),
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

    fn declared() -> Vec<TenantConfig> {
        vec![
            TenantConfig {
                id: 101,
                name: "Environment".into(),
            },
            TenantConfig {
                id: 102,
                name: "Premium".into(),
            },
            TenantConfig {
                id: 103,
                name: "Europe".into(),
            },
        ]
    }

    /// The config of a capture point, read from TOML as the config file is.
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "kebab-case")]
    struct Capture {
        #[serde(default)]
        rules: Vec<RuleConfig>,
        #[serde(default)]
        default_values: DefaultValues,
    }

    fn capture(toml_text: &str) -> Capture {
        toml::from_str(toml_text).unwrap()
    }

    fn mapper(toml_text: &str) -> TenantMapper {
        let c = capture(toml_text);
        TenantMapper::new("captures.orders", &c.rules, &c.default_values, &declared()).unwrap()
    }

    fn problems(toml_text: &str) -> Vec<String> {
        let c = capture(toml_text);
        TenantMapper::new("captures.orders", &c.rules, &c.default_values, &declared()).unwrap_err()
    }

    const ALL_STEPS: &str = r#"
        rules = [
          { property = "Customer.Segment", equals = "gold", tenant = "Premium" },
          { property = "Region", matches = "^EU-[0-9]+$", tenant = 103 },
        ]
        default-values = { TenantId = "Environment", Queue = "Inbound", Priority = 5 }
    "#;

    fn props(pairs: &[(&str, Value)]) -> Kv {
        Kv(pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect())
    }

    fn s(v: &str) -> Value {
        Value::Str(v.into())
    }

    fn gold() -> Value {
        Value::List(props(&[("Name", s("Ada")), ("Segment", s("gold"))]))
    }

    fn tenant_of(m: &TenantMapper, p: &Kv) -> Result<u32, Fault> {
        m.map(p, &declared()).map(|m| m.tenant)
    }

    #[test]
    fn the_operations_own_tenant_id_wins_as_an_int_a_numeric_string_or_a_name() {
        let m = mapper(ALL_STEPS);
        // Every later step would say otherwise: a gold customer, an EU
        // region, an endpoint queue, a default tenant.
        let others = [
            ("Customer", gold()),
            ("Region", s("EU-1")),
            ("Queue", s("101:Sales")),
        ];
        for own in [Value::Int(103), s("103"), s("Europe")] {
            let mut p = props(&others);
            p.0.insert(0, ("TenantId".into(), own.clone()));
            assert_eq!(tenant_of(&m, &p), Ok(103), "TenantId {own:?}");
        }
    }

    #[test]
    fn a_tenant_id_that_is_no_tenant_is_refused_and_does_not_fall_through() {
        let m = mapper(ALL_STEPS);
        let p = props(&[("TenantId", s("x")), ("Customer", gold())]);
        let fault = m.map(&p, &declared()).unwrap_err();
        assert_eq!(fault.code, FaultCode::Tenant);
        assert_eq!(fault.message, "TenantId 'x' is not a tenant");
        let fault = m
            .map(&props(&[("TenantId", Value::Int(999))]), &declared())
            .unwrap_err();
        assert_eq!(fault.message, "TenantId '999' is not a tenant");
        let fault = m
            .map(&props(&[("TenantId", Value::Binary(vec![1]))]), &declared())
            .unwrap_err();
        assert_eq!(fault.code, FaultCode::InvalidRequest);
    }

    #[test]
    fn rules_come_second_in_their_order_on_nested_paths_and_int_text() {
        let m = mapper(ALL_STEPS);
        // Both rules match: the first one written wins.
        let p = props(&[("Region", s("EU-7")), ("Customer", gold())]);
        assert_eq!(tenant_of(&m, &p), Ok(102));
        // A rule beats the endpoint queue and the default.
        let p = props(&[("Region", s("EU-7")), ("Queue", s("101:Sales"))]);
        let mapped = m.map(&p, &declared()).unwrap();
        assert_eq!(mapped.tenant, 103);
        // The queue's prefix did not decide the tenant: it is kept.
        assert_eq!(mapped.queue.as_deref(), Some("101:Sales"));
        // Not matching: other values, a different type, a path that stops.
        for region in [s("EU-"), s("NA-1"), Value::Binary(b"EU-1".to_vec())] {
            let p = props(&[("Region", region)]);
            assert_eq!(tenant_of(&m, &p), Ok(101));
        }
        let p = props(&[("Customer", s("gold"))]);
        assert_eq!(tenant_of(&m, &p), Ok(101));
        // An int is compared as its decimal text.
        let m =
            mapper(r#"rules = [{ property = "Account.Tier", equals = "3", tenant = "Premium" }]"#);
        let p = props(&[("Account", Value::List(props(&[("Tier", Value::Int(3))])))]);
        assert_eq!(tenant_of(&m, &p), Ok(102));
    }

    #[test]
    fn a_matches_rule_is_unanchored_unless_the_pattern_anchors_it() {
        let m = mapper(r#"rules = [{ property = "Subject", matches = "urgent", tenant = 102 }]"#);
        let p = props(&[("Subject", s("very urgent order"))]);
        assert_eq!(tenant_of(&m, &p), Ok(102));
        let p = props(&[("Subject", s("routine"))]);
        let fault = m.map(&p, &declared()).unwrap_err();
        assert_eq!(fault.code, FaultCode::Tenant);
        assert_eq!(fault.message, "no rule matched and no default TenantId");
    }

    #[test]
    fn an_endpoint_queue_comes_third_and_leaves_the_queue_after_the_colon() {
        let m = mapper(ALL_STEPS);
        let p = props(&[("Queue", s("103:Sales:EMEA")), ("Region", s("NA-1"))]);
        let mapped = m.map(&p, &declared()).unwrap();
        assert_eq!(mapped.tenant, 103);
        assert_eq!(mapped.queue.as_deref(), Some("Sales:EMEA"));
        assert_eq!(mapped.properties.get("Queue"), Some(&s("Sales:EMEA")));
        // Not the endpoint form: the default tenant, the queue as sent.
        for q in ["Sales", "EU:Sales", "103:", ":Sales"] {
            let mapped = m.map(&props(&[("Queue", s(q))]), &declared()).unwrap();
            assert_eq!((mapped.tenant, mapped.queue.as_deref()), (101, Some(q)));
        }
        // The endpoint form naming no tenant is refused, not defaulted.
        let fault = m
            .map(&props(&[("Queue", s("999:Sales"))]), &declared())
            .unwrap_err();
        assert_eq!(fault.code, FaultCode::Tenant);
        assert_eq!(
            fault.message,
            "Queue '999:Sales' names tenant 999, which is not a tenant"
        );
        let fault = m
            .map(&props(&[("Queue", Value::Int(5))]), &declared())
            .unwrap_err();
        assert_eq!(fault.code, FaultCode::InvalidRequest);
    }

    #[test]
    fn the_default_tenant_comes_last_and_without_one_nothing_maps() {
        let m = mapper(ALL_STEPS);
        assert_eq!(tenant_of(&m, &Kv::new()), Ok(101));
        let m = mapper(r#"default-values = { TenantId = 102 }"#);
        assert_eq!(tenant_of(&m, &Kv::new()), Ok(102));
        let m = mapper("");
        let fault = m.map(&Kv::new(), &declared()).unwrap_err();
        assert_eq!(fault.code, FaultCode::Tenant);
        assert_eq!(fault.message, "no rule matched and no default TenantId");
        // The tenants now are what counts: a default since removed.
        let m = mapper(r#"default-values = { TenantId = 102 }"#);
        let fault = m.map(&Kv::new(), &declared()[..1]).unwrap_err();
        assert_eq!(
            fault.message,
            "default-values.TenantId '102' is not a tenant"
        );
    }

    #[test]
    fn defaults_fill_only_what_the_operation_lacks_in_a_stable_order() {
        let m = mapper(ALL_STEPS);
        let p = props(&[
            ("Priority", Value::Int(9)),
            ("TenantId", s("Premium")),
            ("Note", s("n")),
            ("TenantId", s("again")),
        ]);
        let mapped = m.map(&p, &declared()).unwrap();
        assert_eq!(mapped.tenant, 102);
        assert_eq!(mapped.media_type, "workitem");
        assert_eq!(mapped.queue.as_deref(), Some("Inbound"));
        assert_eq!(
            mapped.properties,
            props(&[
                ("Priority", Value::Int(9)),
                ("TenantId", Value::Int(102)),
                ("Note", s("n")),
                ("Queue", s("Inbound")),
                ("MediaType", s("workitem")),
                ("InteractionType", s("Inbound")),
                ("InteractionSubtype", s("InboundNew")),
            ])
        );
        // The operation's own values and other default-values win over
        // the built-in ones.
        let m = mapper(
            r#"default-values = { TenantId = 101, MediaType = "email", InteractionType = "Outbound" }"#,
        );
        let p = props(&[("InteractionSubtype", s("OutboundNew"))]);
        let mapped = m.map(&p, &declared()).unwrap();
        assert_eq!(mapped.media_type, "email");
        assert_eq!(mapped.queue, None);
        assert_eq!(
            mapped.properties.get("InteractionType"),
            Some(&s("Outbound"))
        );
        assert_eq!(
            mapped.properties.get("InteractionSubtype"),
            Some(&s("OutboundNew"))
        );
        let p = props(&[("MediaType", s("chat"))]);
        assert_eq!(m.map(&p, &declared()).unwrap().media_type, "chat");
        let p = props(&[("MediaType", Value::Int(1))]);
        let fault = m.map(&p, &declared()).unwrap_err();
        assert_eq!(fault.code, FaultCode::InvalidRequest);
    }

    #[test]
    fn bad_rules_and_defaults_are_all_reported_with_their_place() {
        let found = problems(
            r#"
            rules = [
              { property = "", equals = "a", tenant = 101 },
              { property = "A..B", equals = "a", matches = "b", tenant = 101 },
              { property = "A", tenant = 101 },
              { property = "A", matches = "(", tenant = 101 },
              { property = "A", matches = "\\w{1000}{1000}", tenant = 101 },
              { property = "A", equals = "a", tenant = "Nobody" },
            ]
            default-values = { TenantId = 999, Queue = 5 }
            "#,
        );
        let at = |i: usize, rest: &str| format!("captures.orders.rules[{i}]{rest}");
        assert_eq!(found[0], at(0, ".property: is empty"));
        assert!(found[1].starts_with(&at(1, ".property: 'A..B' has an empty step")));
        assert_eq!(found[2], at(1, ": give exactly one of equals and matches"));
        assert_eq!(found[3], at(2, ": give exactly one of equals and matches"));
        assert!(
            found[4].starts_with(&at(3, ".matches: regex parse error")),
            "{}",
            found[4]
        );
        assert!(found[5].contains("exceeds size limit"), "{}", found[5]);
        assert!(found[5].starts_with(&at(4, ".matches: ")));
        assert_eq!(
            found[6],
            at(5, ".tenant: tenant 'Nobody' is not declared in [[tenants]]")
        );
        assert_eq!(
            found[7..],
            [
                "captures.orders.default-values.TenantId: tenant 999 is not declared in [[tenants]]",
                "captures.orders.default-values.Queue: must be a string",
            ]
        );
    }

    #[test]
    fn default_values_read_strings_and_ints_in_order_and_refuse_anything_else() {
        let c = capture(r#"default-values = { Queue = "Inbound", Priority = 5, A = "x" }"#);
        assert_eq!(
            c.default_values.0,
            props(&[
                ("Queue", s("Inbound")),
                ("Priority", Value::Int(5)),
                ("A", s("x"))
            ])
        );
        for bad in [
            "default-values = { A = 1.5 }",
            "default-values = { A = true }",
            "default-values = { A = { B = 1 } }",
        ] {
            let err = toml::from_str::<Capture>(bad).unwrap_err().to_string();
            assert!(err.contains("a string or an integer"), "{bad}: {err}");
        }
        let err = toml::from_str::<Capture>(
            r#"rules = [{ property = "A", equals = "a", tenant = 101, extra = 1 }]"#,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("unknown field `extra`"), "{err}");
    }
}
