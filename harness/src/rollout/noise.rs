//! Where the sampler's randomness comes from.
//!
//! - `Global` (`rollout.max_num_seqs` unset): libtorch's global generator, drawn for every row of
//!   the batch at every decode step, finished rows included, exactly as `multinomial` and
//!   `randn_like` on the full `[N, V]` logits draw. Dropping finished rows from the running batch
//!   therefore leaves every live row's draws unchanged.
//! - `Keyed` (`rollout.max_num_seqs` set): each value is a hash of (a seed drawn once per `generate`
//!   call from the global generator, the row's index in the step, the decode position, the vocabulary
//!   id). A row's draws do not depend on which other rows share its wave, so any wave size gives
//!   the same tokens as one wave holding every row.
//!
//! Token sampling is `argmax(p / q)` with `q ~ Exp(1)`, which is how libtorch's `multinomial`
//! draws one sample (the exponential race), so `Global` reproduces `multinomial` bit for bit.
use tch::{Device, Kind, Tensor};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SampleNoise {
    Global,
    Keyed { seed: i64 },
}

/// splitmix64's finaliser on the host.
fn mix64(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Logical right shift of an Int64 tensor holding 64 raw bits.
fn shr(x: &Tensor, s: i64) -> Tensor {
    x.bitwise_right_shift_tensor_scalar(s)
        .bitwise_and((1i64 << (64 - s)) - 1)
}

/// The same finaliser on an Int64 tensor (libtorch's integer multiply wraps).
fn mix_tensor(x: Tensor) -> Tensor {
    let c1 = 0xbf58_476d_1ce4_e5b9u64 as i64;
    let c2 = 0x94d0_49bb_1331_11ebu64 as i64;
    let x = x.bitwise_xor_tensor(&shr(&x, 30)) * c1;
    let x = x.bitwise_xor_tensor(&shr(&x, 27)) * c2;
    x.bitwise_xor_tensor(&shr(&x, 31))
}

impl SampleNoise {
    /// `Keyed` with a seed drawn from libtorch's global generator (so `tch::manual_seed` decides it).
    pub fn keyed_from_global() -> Self {
        let seed = Tensor::randint(i64::MAX, [1], (Kind::Int64, Device::Cpu)).int64_value(&[0]);
        SampleNoise::Keyed { seed }
    }

    /// Uniforms in (0, 1) `[rows.len(), v]` (f64) for `rows` (indices in the step) at decode
    /// position `pos`, stream `stream`.
    fn uniform(seed: i64, rows: &[i64], pos: usize, stream: u64, v: i64, device: Device) -> Tensor {
        let keys: Vec<i64> = rows
            .iter()
            .map(|&r| {
                let k = (seed as u64)
                    ^ mix64(r as u64 ^ 0x5851_f42d_4c95_7f2d)
                    ^ mix64((pos as u64) << 8 | stream).rotate_left(17);
                mix64(k) as i64
            })
            .collect();
        let keys = Tensor::from_slice(&keys).to_device(device).unsqueeze(1);
        let ids =
            Tensor::arange(v, (Kind::Int64, device)).unsqueeze(0) * 0x9e37_79b9_7f4a_7c15u64 as i64;
        let bits = shr(&mix_tensor(keys + ids), 11); // 53 random bits
        (bits.to_kind(Kind::Double) + 0.5) / (1u64 << 53) as f64
    }

    /// `Exp(1)` draws `[rows, v]` (fp32) for the live rows (`live`: their indices among the `n` rows
    /// of the batch; `offset`: the batch's first row in the step).
    pub fn exponential(&self, live: &Live, pos: usize, v: i64, device: Device) -> Tensor {
        match *self {
            SampleNoise::Global => {
                let q = Tensor::empty([live.n, v], (Kind::Float, device)).exponential_(1.0);
                live.select(q)
            }
            SampleNoise::Keyed { seed } => {
                Self::uniform(seed, &live.step_rows(), pos, 1, v, device)
                    .log()
                    .neg()
                    .to_kind(Kind::Float)
            }
        }
    }

    /// Standard normal draws `[rows, v]` (fp32) for the live rows (Box–Muller when keyed).
    pub fn normal(&self, live: &Live, pos: usize, v: i64, device: Device) -> Tensor {
        match *self {
            SampleNoise::Global => live.select(Tensor::randn([live.n, v], (Kind::Float, device))),
            SampleNoise::Keyed { seed } => {
                let rows = live.step_rows();
                let u1 = Self::uniform(seed, &rows, pos, 2, v, device);
                let u2 = Self::uniform(seed, &rows, pos, 3, v, device);
                ((u1.log() * -2.0).sqrt() * (u2 * (2.0 * std::f64::consts::PI)).cos())
                    .to_kind(Kind::Float)
            }
        }
    }
}

/// Which rows of a batch of `n` are still decoding.
pub struct Live {
    /// Batch size (finished rows included).
    pub n: i64,
    /// The batch's first row's index in the step (waves).
    pub offset: i64,
    /// Indices of the live rows in the batch, ascending.
    pub rows: Vec<i64>,
    /// The same, on the device.
    pub idx: Tensor,
}

impl Live {
    pub fn all(n: i64, offset: i64, device: Device) -> Self {
        Live {
            n,
            offset,
            rows: (0..n).collect(),
            idx: Tensor::arange(n, (Kind::Int64, device)),
        }
    }

    pub fn len(&self) -> i64 {
        self.rows.len() as i64
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn is_all(&self) -> bool {
        self.len() == self.n
    }

    /// The live rows of a full-batch tensor.
    pub fn select(&self, full: Tensor) -> Tensor {
        if self.is_all() {
            full
        } else {
            full.index_select(0, &self.idx)
        }
    }

    /// A full-batch tensor of `fill` with the live rows' `values` written in.
    pub fn scatter(&self, values: &Tensor, fill: f64) -> Tensor {
        if self.is_all() {
            return values.shallow_clone();
        }
        let mut shape = values.size();
        shape[0] = self.n;
        Tensor::full(&shape, fill, (values.kind(), values.device()))
            .index_copy(0, &self.idx, values)
    }

    /// Keep the live rows whose flag in `keep` (`[len]`, host) is set; returns their positions
    /// among the current live rows (for the KV cache and mask).
    pub fn retain(&mut self, keep: &[bool]) -> Tensor {
        let pos: Vec<i64> = (0..self.len()).filter(|&i| keep[i as usize]).collect();
        self.rows = pos.iter().map(|&i| self.rows[i as usize]).collect();
        self.idx = Tensor::from_slice(&self.rows).to_device(self.idx.device());
        Tensor::from_slice(&pos).to_device(self.idx.device())
    }

    fn step_rows(&self) -> Vec<i64> {
        self.rows.iter().map(|r| r + self.offset).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyed_draws_depend_on_the_row_not_the_batch() {
        let d = Device::Cpu;
        let noise = SampleNoise::Keyed { seed: 7 };
        let all = Live::all(6, 0, d);
        let full = noise.exponential(&all, 3, 50, d);
        // Rows 4 and 5 of the step, as rows 0 and 1 of a second wave.
        let wave = Live::all(2, 4, d);
        assert!(noise
            .exponential(&wave, 3, 50, d)
            .equal(&full.narrow(0, 4, 2)));
        // A batch with rows 1 and 3 finished.
        let mut some = Live::all(6, 0, d);
        let _ = some.retain(&[true, false, true, false, true, true]);
        let want = full.index_select(0, &Tensor::from_slice(&[0i64, 2, 4, 5]));
        assert!(noise.exponential(&some, 3, 50, d).equal(&want));
        // Other positions, seeds and streams differ.
        assert!(!noise.exponential(&all, 4, 50, d).equal(&full));
        let other = SampleNoise::Keyed { seed: 8 }.exponential(&all, 3, 50, d);
        assert!(!other.equal(&full));
    }

    #[test]
    fn keyed_draws_have_the_right_moments() {
        let d = Device::Cpu;
        let noise = SampleNoise::Keyed { seed: 1 };
        let live = Live::all(64, 0, d);
        let e = noise.exponential(&live, 0, 4096, d);
        let g = noise.normal(&live, 0, 4096, d);
        let m = |t: &Tensor| t.mean(Kind::Double).double_value(&[]);
        let var = |t: &Tensor| t.var(true).double_value(&[]);
        // 262,144 draws: standard errors ≈ 0.002–0.003.
        assert!((m(&e) - 1.0).abs() < 0.01 && (var(&e) - 1.0).abs() < 0.03);
        assert!(m(&g).abs() < 0.01 && (var(&g) - 1.0).abs() < 0.02);
        assert!(e.min().double_value(&[]) > 0.0);
    }

    #[test]
    fn global_draws_equal_multinomial() {
        let _rng = crate::rng_lock();
        let d = Device::Cpu;
        tch::manual_seed(3);
        let p = (Tensor::randn([16, 40], (Kind::Float, d)) * 3.0).softmax(-1, Kind::Float);
        tch::manual_seed(4);
        let want = p.multinomial(1, false).squeeze_dim(-1);
        tch::manual_seed(4);
        let live = Live::all(16, 0, d);
        let q = SampleNoise::Global.exponential(&live, 0, 40, d);
        assert!((&p / q).argmax(-1, false).equal(&want));
    }
}
