//! The grid file as written (`experiments/*.yaml`): parsed with serde, unknown fields rejected,
//! and the command line's `--set key.path=value` overrides. Values under `base`, `set` and the
//! axes stay YAML values here: they become a typed [`RunConfig`](crate::config::RunConfig) only
//! after merging, in [`super::expand`]. Every field has a default so that a file with problems
//! still parses around them (see `config::structure`); a missing `base` is reported by `expand`.
use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_yaml::{Mapping, Value};
use std::fmt;

/// A declared grid.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GridSpec {
    /// Defaults to the file stem.
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    /// A `RunConfig`-shaped mapping (dotted keys allowed: `rollout.engine.precision: bf16`).
    /// Required.
    #[serde(default)]
    pub base: Mapping,
    /// Every grid point runs once per seed.
    #[serde(default = "default_seeds")]
    pub seeds: Vec<i64>,
    /// Cartesian axes applied to every case: `dotted.key: [values]`.
    #[serde(default)]
    pub axes: OrderedMap<Vec<Value>>,
    /// Groups of keys whose values move together (all lists of one group have equal length).
    #[serde(default)]
    pub paired: Vec<OrderedMap<Vec<Value>>>,
    /// Named variants, each overriding part of `base` and carrying its own axes.
    #[serde(default)]
    pub cases: OrderedMap<CaseSpec>,
}

fn default_seeds() -> Vec<i64> {
    vec![0]
}

/// One named case: `set` overrides applied on top of `base`, then its own axes.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseSpec {
    /// Overrides of `base`: dotted keys or nested mappings, each replacing the sub-tree it names
    /// (refused where that would drop keys `base` set; `null` removes a key).
    #[serde(default)]
    pub set: Mapping,
    #[serde(default)]
    pub axes: OrderedMap<Vec<Value>>,
    #[serde(default)]
    pub paired: Vec<OrderedMap<Vec<Value>>>,
}

/// A string-keyed mapping that keeps the file's order (labels and table columns follow it) and
/// rejects duplicate keys.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderedMap<V>(pub Vec<(String, V)>);

impl<V> Default for OrderedMap<V> {
    fn default() -> Self {
        OrderedMap(Vec::new())
    }
}

impl<V> OrderedMap<V> {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn iter(&self) -> impl Iterator<Item = (&String, &V)> {
        self.0.iter().map(|(k, v)| (k, v))
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for OrderedMap<V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct OrderedVisitor<V>(std::marker::PhantomData<V>);
        impl<'de, V: Deserialize<'de>> Visitor<'de> for OrderedVisitor<V> {
            type Value = OrderedMap<V>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a mapping")
            }
            fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
                Ok(OrderedMap::default())
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out: Vec<(String, V)> = Vec::new();
                while let Some(k) = map.next_key::<String>()? {
                    if out.iter().any(|(o, _)| *o == k) {
                        return Err(serde::de::Error::custom(format!("duplicate key `{k}`")));
                    }
                    let v = map.next_value::<V>()?;
                    out.push((k, v));
                }
                Ok(OrderedMap(out))
            }
        }
        d.deserialize_map(OrderedVisitor(std::marker::PhantomData))
    }
}

/// `--set key.path=value`: a change to the grid's `base` from the command line, applied as a case's
/// `set` entry is. The value is YAML (`4`, `bf16`, `[0.9, 0.95]`, `{name: dcmdp, c: 0.01}`; `null`
/// removes the key).
#[derive(Debug, Clone, PartialEq)]
pub struct Override {
    /// Dotted key path (`rollout.group_size`).
    pub key: String,
    pub value: Value,
}

impl std::str::FromStr for Override {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (key, value) = s
            .split_once('=')
            .ok_or_else(|| format!("`{s}`: expected KEY.PATH=VALUE (like rollout.group_size=4)"))?;
        let key = key.trim();
        if key.is_empty() || key.split('.').any(|k| k.is_empty() || k.trim() != k) {
            return Err(format!(
                "`{key}` is not a dotted key path (like algorithm.c)"
            ));
        }
        let value: Value = serde_yaml::from_str(value)
            .map_err(|e| format!("`{s}`: the value is not YAML: {e}"))?;
        Ok(Override {
            key: key.to_string(),
            value,
        })
    }
}

impl fmt::Display for Override {
    /// `key=value`, the value as one line of YAML (flow style), so that it parses back.
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}={}", self.key, flow_yaml(&self.value))
    }
}

/// A YAML value on one line: scalars as YAML writes them, collections in flow style (JSON, which
/// is YAML).
pub fn flow_yaml(v: &Value) -> String {
    match v {
        Value::Mapping(_) | Value::Sequence(_) | Value::Tagged(_) => {
            serde_json::to_string(v).unwrap_or_else(|_| "null".into())
        }
        other => serde_yaml::to_string(other)
            .map(|s| s.trim_end().to_string())
            .unwrap_or_else(|_| "null".into()),
    }
}
