//! XLNet's two-stream self-attention (Yang et al. 2019, "XLNet: Generalized Autoregressive
//! Pretraining for Language Understanding", §2.3, eq. 4).
//!
//! A factorisation order `z` (a permutation of the positions) decides what each position may
//! see. The content stream `h` attends to every position at or before it in `z` (itself
//! included); the query stream `g`, which must predict its own token, attends only to the
//! positions strictly before it in `z`. Both read the keys and values of the content stream
//! (and any remembered segment, which every position sees). On top of Transformer-XL's relative
//! attention, the caller adds its position terms as biases of the [`AttentionMask`].

use candle_core::{Device, Result, Tensor};

use crate::{AttentionMask, scaled_dot_product_attention};

/// The content and query masks of XLNet for factorisation order `order` (`order[t]` is the
/// position predicted at step `t`) over `len` positions after `memory` remembered ones:
/// `[1, 1, len, memory + len]` u8 each, 1 where the query may see the key.
///
/// ```
/// use candle_core::Device;
/// let (content, query) = tcat_attention::permutation_masks(&[2, 0, 1], 0, &Device::Cpu).unwrap();
/// let rows = |t: candle_core::Tensor| t.squeeze(0).unwrap().squeeze(0).unwrap().to_vec2::<u8>().unwrap();
/// // Position 2 comes first: it sees only itself in the content stream and nothing in the query stream.
/// assert_eq!(rows(content), [[1, 0, 1], [1, 1, 1], [0, 0, 1]]);
/// assert_eq!(rows(query), [[0, 0, 1], [1, 0, 1], [0, 0, 0]]);
/// ```
pub fn permutation_masks(order: &[usize], memory: usize, device: &Device) -> Result<(Tensor, Tensor)> {
    let len = order.len();
    let mut rank = vec![usize::MAX; len];
    for (step, &position) in order.iter().enumerate() {
        if position >= len || rank[position] != usize::MAX {
            candle_core::bail!("factorisation order {order:?} is not a permutation of 0..{len}");
        }
        rank[position] = step;
    }
    let mask = |strict: bool| {
        let cells: Vec<u8> = (0..len)
            .flat_map(|i| {
                let rank = &rank;
                (0..memory + len).map(move |j| {
                    let visible = j < memory || {
                        let (ri, rj) = (rank[i], rank[j - memory]);
                        if strict { rj < ri } else { rj <= ri }
                    };
                    u8::from(visible)
                })
            })
            .collect();
        Tensor::from_vec(cells, (1, 1, len, memory + len), device)
    };
    Ok((mask(false)?, mask(true)?))
}

/// Both streams of XLNet's attention for one layer: `content_q` and `query_q` are the two
/// streams' queries (`[batch, heads, len, head_dim]`, projected with the same weights), `k` and
/// `v` the content stream's keys and values (`[batch, kv_heads, memory + len, head_dim]`, the
/// remembered segment first). `mask` carries what both share (key padding, relative-position
/// biases); the permutation masks of `order` are added to it. Returns the content and query
/// outputs, `[batch, heads, len, head_dim]` each.
///
/// ```
/// use candle_core::{Device, Tensor};
/// use tcat_attention::{two_stream_attention, AttentionMask};
/// let dev = Device::Cpu;
/// let q = Tensor::randn(0f32, 1., (1, 2, 4, 8), &dev).unwrap();
/// let kv = Tensor::randn(0f32, 1., (1, 2, 4, 8), &dev).unwrap();
/// let (h, g) = two_stream_attention(&q, &q, &kv, &kv, &[3, 1, 0, 2], &AttentionMask::none(), 0.35).unwrap();
/// assert_eq!((h.dims(), g.dims()), (&[1, 2, 4, 8][..], &[1, 2, 4, 8][..]));
/// ```
pub fn two_stream_attention(
    content_q: &Tensor,
    query_q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    order: &[usize],
    mask: &AttentionMask,
    scale: f64,
) -> Result<(Tensor, Tensor)> {
    let (len, kv_len) = (content_q.dim(2)?, k.dim(2)?);
    if order.len() != len || query_q.dims() != content_q.dims() || kv_len < len {
        candle_core::bail!(
            "two-stream attention: order of {} positions, queries {:?} / {:?}, keys {:?}",
            order.len(),
            content_q.dims(),
            query_q.dims(),
            k.dims()
        );
    }
    let (content_mask, query_mask) = permutation_masks(order, kv_len - len, content_q.device())?;
    let content = scaled_dot_product_attention(content_q, k, v, &mask.clone().with_allowed(content_mask), scale)?;
    let query = scaled_dot_product_attention(query_q, k, v, &mask.clone().with_allowed(query_mask), scale)?;
    Ok((content, query))
}
