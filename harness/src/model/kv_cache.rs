//! Per-layer key/value cache for incremental decoding. Keys/values are `[B, kv_heads, T, head_dim]`,
//! written into a preallocated buffer that grows by doubling, so a decode step never re-encodes or
//! re-copies the prefix. A cache made `with_capacity` allocates exactly that many positions at
//! once (the sampler knows prompt width + max new tokens), so its size is known in advance. Keys
//! and values that carry a graph are concatenated instead (see `concat`).
use tch::Tensor;

pub struct KvCache {
    k: Vec<Option<Tensor>>,
    v: Vec<Option<Tensor>>,
    len: i64,
    /// Positions to allocate on the first write (0: grow by doubling from 16).
    reserve: i64,
}

impl KvCache {
    pub fn new(num_layers: usize) -> Self {
        Self::with_capacity(num_layers, 0)
    }

    /// A cache whose buffers hold `positions` positions from the first write on.
    pub fn with_capacity(num_layers: usize, positions: i64) -> Self {
        KvCache {
            k: (0..num_layers).map(|_| None).collect(),
            v: (0..num_layers).map(|_| None).collect(),
            len: 0,
            reserve: positions,
        }
    }

    /// Bytes held by the key/value buffers (capacity, not just the cached positions).
    pub fn bytes(&self) -> usize {
        self.k
            .iter()
            .chain(self.v.iter())
            .flatten()
            .map(|b| b.numel() * b.kind().elt_size_in_bytes())
            .sum()
    }

    /// Number of cached positions.
    pub fn seq_len(&self) -> i64 {
        self.len
    }

    fn write(slot: &mut Option<Tensor>, new: &Tensor, at: i64, reserve: i64) -> Tensor {
        if new.requires_grad() {
            return Self::concat(slot, new, at);
        }
        let t_new = new.size()[2];
        let need = at + t_new;
        let cap = slot.as_ref().map_or(0, |b| b.size()[2]);
        if need > cap {
            let mut shape = new.size();
            shape[2] = if reserve >= need {
                reserve
            } else {
                (cap * 2).max(need).max(16)
            };
            let buf = Tensor::zeros(&shape, (new.kind(), new.device()));
            if let Some(old) = slot.as_ref() {
                buf.narrow(2, 0, at).copy_(&old.narrow(2, 0, at));
            }
            *slot = Some(buf);
        }
        let buf = slot.as_ref().unwrap();
        buf.narrow(2, at, t_new).copy_(new);
        buf.narrow(2, 0, need)
    }

    /// Under autograd (the trainer's forward over a shared prompt prefix) the cache holds the
    /// concatenation itself: the same values, but its backward is a split, where a write into a
    /// buffer records a node whose backward clones the whole buffer's gradient.
    fn concat(slot: &mut Option<Tensor>, new: &Tensor, at: i64) -> Tensor {
        let all = match slot.as_ref() {
            Some(old) => Tensor::cat(&[&old.narrow(2, 0, at), new], 2),
            None => new.shallow_clone(),
        };
        *slot = Some(all.shallow_clone());
        all
    }

    /// Store layer `layer`'s new keys/values after the cached ones and return all of them.
    pub fn append(&mut self, layer: usize, k: Tensor, v: Tensor) -> (Tensor, Tensor) {
        let at = self.len;
        (
            Self::write(&mut self.k[layer], &k, at, self.reserve),
            Self::write(&mut self.v[layer], &v, at, self.reserve),
        )
    }

    /// Called by the model once every layer appended this step's tokens.
    pub(crate) fn advance(&mut self, t: i64) {
        self.len += t;
    }

    /// Keep only the batch rows in `rows` (e.g. drop finished sequences).
    pub fn select_rows(&mut self, rows: &Tensor) {
        for slot in self.k.iter_mut().chain(self.v.iter_mut()) {
            if let Some(b) = slot.as_ref() {
                *slot = Some(b.index_select(0, rows));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn keys_with_a_graph_are_concatenated_to_the_values_the_buffer_holds() {
        // A 2-row prefix of 3 positions, then 3 rows (after `select_rows`) of 1 and 2 positions;
        // values from a formula (tests alongside seed libtorch's global RNG).
        let parts: Vec<Tensor> = [(2, 3), (3, 1), (3, 2)]
            .iter()
            .map(|&(b, t)| {
                let n = b * 2 * t * 4;
                (Tensor::arange(n, (Kind::Int64, Device::Cpu)).to_kind(Kind::Float)
                    * (0.3 + t as f64))
                    .sin()
                    .view([b, 2, t, 4])
            })
            .collect();
        let leaves: Vec<Tensor> = parts
            .iter()
            .map(|p| p.copy().set_requires_grad(true))
            .collect();
        let (mut buffered, mut tracked) = (KvCache::new(1), KvCache::new(1));
        let rows = Tensor::from_slice(&[1i64, 1, 0]);
        let mut last = None;
        for (i, (p, leaf)) in parts.iter().zip(&leaves).enumerate() {
            let (kb, vb) = buffered.append(0, p.copy(), p * 2.0);
            let (kt, vt) = tracked.append(0, leaf * 1.0, leaf * 2.0);
            assert!(!kb.requires_grad() && kt.requires_grad());
            assert!(kb.equal(&kt) && vb.equal(&vt), "append {i}");
            buffered.advance(p.size()[2]);
            tracked.advance(p.size()[2]);
            if i == 0 {
                // As the trainer shares a prompt's keys across its group.
                buffered.select_rows(&rows);
                tracked.select_rows(&rows);
            }
            last = Some((kt, vt));
        }
        let (k, v) = last.unwrap();
        assert_eq!(k.size(), [3, 2, 6, 4]);
        (k.sum(Kind::Float) + v.sum(Kind::Float)).backward();
        // Every appended part gets its gradient: 1 + 2 per use; the first part's row 1 is used
        // twice (selected rows 1, 1, 0), its row 0 once.
        let first = Tensor::from_slice(&[3.0f32, 6.0]).view([2, 1, 1, 1]);
        assert!(leaves[0].grad().equal(&first.expand([2, 2, 3, 4], false)));
        for leaf in &leaves[1..] {
            assert!(leaf.grad().equal(&leaf.full_like(3.0)));
        }
    }
}
