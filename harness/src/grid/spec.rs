//! The grid file as written (`experiments/*.yaml`): parsed with serde, unknown fields rejected.
//! Values under `base`, `set` and the axes stay YAML values here: they become a typed
//! [`RunConfig`](crate::config::RunConfig) only after merging, in [`super::expand`].
use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_yaml::{Mapping, Value};
use std::fmt;

/// A declared grid.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GridSpec {
    /// Defaults to the file stem.
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    /// A `RunConfig`-shaped mapping (dotted keys allowed: `rollout.engine.precision: bf16`).
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
    /// Overrides: dotted keys or nested mappings, merged into `base`.
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
