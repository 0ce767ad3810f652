//! Per-layer activation recompute (gradient checkpointing) without a custom autograd function:
//! a segmented backward.
//!
//! 1. [`forward_recompute`] runs the embedding and every decoder layer without a graph, keeping only
//!    each layer's input `[B, T, H]`. The last layer's output and each sparse layer's router logits
//!    are returned as fresh leaves that require gradients; the final norm runs with a graph on top,
//!    so the caller computes its head and loss (LM head, log-probs, MoE aux loss) as usual.
//! 2. The caller runs `loss.backward()`: the head, final norm and loss get their gradients, and the
//!    leaves hold `∂loss/∂x_L` and `∂loss/∂router_logits_l`.
//! 3. [`Recompute::backward`] walks the layers in reverse: recompute layer `l` from its saved input
//!    (a leaf that requires gradients), backpropagate `Σ y·∂loss/∂y + Σ r·∂loss/∂r` (whose gradient
//!    is exactly the incoming one), accumulate the layer's parameter gradients, and pass the input's
//!    gradient on; finally the embedding.
//!
//! The recomputed forward is the same computation as the first (routing included: the trainer has no
//! router noise), so gradients equal the plain path's up to the order in which the tied
//! embedding/LM-head gradient is accumulated. Peak activation memory is one layer's graph plus
//! `L` layer inputs.
use super::qwen3::{HiddenOutput, LayerCtx, Qwen3};
use tch::{Kind, Tensor};

/// The state a recomputed backward needs; call [`Recompute::backward`] after `loss.backward()`.
pub struct Recompute<'m> {
    model: &'m Qwen3,
    input_ids: Tensor,
    ctx: LayerCtx,
    inputs: Vec<Tensor>,
    last: Tensor,
    router_leaves: Vec<Option<Tensor>>,
}

/// Forward over `input_ids` `[B, T]` (no cache) keeping only layer inputs; see the module docs.
pub fn forward_recompute<'m>(
    model: &'m Qwen3,
    input_ids: &Tensor,
    attention_mask: Option<&Tensor>,
) -> (HiddenOutput, Recompute<'m>) {
    let ctx = model.layer_ctx(input_ids, attention_mask, 0);
    let (inputs, last, logits) = tch::no_grad(|| {
        let mut x = model.embed(input_ids);
        let mut inputs = Vec::with_capacity(model.num_layers());
        let mut logits = Vec::with_capacity(model.num_layers());
        for l in 0..model.num_layers() {
            let (y, rl) = model.layer_forward(l, &x, &ctx, None);
            inputs.push(x);
            logits.push(rl);
            x = y;
        }
        (inputs, x, logits)
    });
    let last = last.detach().set_requires_grad(true);
    let router_leaves: Vec<Option<Tensor>> = logits
        .into_iter()
        .map(|r| r.map(|t| t.detach().set_requires_grad(true)))
        .collect();
    let out = HiddenOutput {
        hidden: model.final_norm(&last),
        router_logits: router_leaves
            .iter()
            .flatten()
            .map(|t| t.shallow_clone())
            .collect(),
    };
    let rc = Recompute {
        model,
        input_ids: input_ids.shallow_clone(),
        ctx,
        inputs,
        last,
        router_leaves,
    };
    (out, rc)
}

fn grad_or_zeros(t: &Tensor) -> Tensor {
    let g = t.grad();
    if g.defined() {
        g
    } else {
        t.zeros_like()
    }
}

impl Recompute<'_> {
    /// Recompute each layer in reverse and accumulate parameter gradients (into `.grad()`, as
    /// `backward` does). Call once, after the loss's `backward()`.
    pub fn backward(self) {
        let model = self.model;
        let mut g = grad_or_zeros(&self.last);
        for l in (0..model.num_layers()).rev() {
            let x = self.inputs[l].detach().set_requires_grad(true);
            let (y, rl) = model.layer_forward(l, &x, &self.ctx, None);
            let mut obj = (&y * &g).sum(Kind::Float);
            if let (Some(rl), Some(leaf)) = (rl, &self.router_leaves[l]) {
                let gr = leaf.grad();
                if gr.defined() {
                    obj = obj.g_add(&(rl * gr).sum(Kind::Float));
                }
            }
            obj.backward();
            g = grad_or_zeros(&x);
        }
        let e = model.embed(&self.input_ids);
        if e.requires_grad() {
            (e * g).sum(Kind::Float).backward();
        }
    }
}
