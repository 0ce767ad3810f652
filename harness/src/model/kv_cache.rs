//! Per-layer key/value cache for incremental decoding. Keys/values are `[B, kv_heads, T, head_dim]`,
//! written into a preallocated buffer that grows by doubling, so a decode step never re-encodes or
//! re-copies the prefix. A cache made `with_capacity` allocates exactly that many positions at
//! once (the sampler knows prompt width + max new tokens), so its size is known in advance.
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
