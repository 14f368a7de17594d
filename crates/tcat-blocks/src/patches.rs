//! The image input of a Vision Transformer (Dosovitskiy et al. 2020, "An Image is Worth 16x16
//! Words", §3.1, eq. 1): the image is cut into `P × P` patches, each flattened and projected to
//! the hidden width (the paper's `x_p E`, a `P × P` convolution with stride `P`, computed here as
//! one matmul over the unfolded patches), a learned class token is put in front, and learned
//! positions (`E_pos`, one per patch plus the class token) are added. CLIP's image tower
//! (Radford et al. 2021, §2.4) is the same without a projection bias.

use candle_core::{DType, Device, Module, Result, Tensor};
use tcat_core::Linear;

/// `[x_class; x_p¹E; …; x_pᴺE] + E_pos` for images `[batch, channels, H, W]` (ViT eq. 1).
///
/// The projection weight is the convolution's `[hidden, channels, P, P]`; the image must be the
/// size the position table was trained for (`(H/P)·(W/P) + 1` rows): other sizes would need the
/// positions interpolated, which is refused with an error naming both sizes.
///
/// ```
/// use candle_core::{DType, Device, Module, Tensor};
/// use tcat_blocks::PatchEmbeddings;
/// let dev = Device::Cpu;
/// // 1 channel, 2×2 patches, hidden 1: each patch embeds to the sum of its pixels.
/// let weight = Tensor::ones((1, 1, 2, 2), DType::F32, &dev).unwrap();
/// let patches = PatchEmbeddings::new(&weight, None, 2).unwrap();
/// let image = Tensor::arange(0f32, 16., &dev).unwrap().reshape((1, 1, 4, 4)).unwrap();
/// let out = patches.forward(&image).unwrap();
/// assert_eq!(out.to_vec3::<f32>().unwrap(), [[[10.], [18.], [42.], [50.]]]);
/// ```
#[derive(Debug, Clone)]
pub struct PatchEmbeddings {
    projection: Linear,
    channels: usize,
    patch: usize,
    class_token: Option<Tensor>,
    positions: Option<Tensor>,
    device: Device,
}

impl PatchEmbeddings {
    /// Patch embeddings from the convolution `weight` `[hidden, channels, patch, patch]` and its
    /// optional `bias` `[hidden]`, without class token or positions.
    pub fn new(weight: &Tensor, bias: Option<Tensor>, patch: usize) -> Result<Self> {
        let (hidden, channels, ph, pw) = weight.dims4()?;
        if ph != patch || pw != patch || patch == 0 {
            candle_core::bail!("patch embeddings: the projection is {ph}×{pw}, expected {patch}×{patch} patches");
        }
        let projection = Linear::new(weight.reshape((hidden, channels * patch * patch))?, bias);
        Ok(Self { projection, channels, patch, class_token: None, positions: None, device: weight.device().clone() })
    }

    /// Puts the learned class token (`[hidden]`, or any shape of `hidden` elements such as
    /// ViT's `[1, 1, hidden]`) in front of the patches.
    pub fn with_class_token(mut self, token: &Tensor) -> Result<Self> {
        self.class_token = Some(token.flatten_all()?.reshape((1, 1, ()))?);
        Ok(self)
    }

    /// Adds the learned positions `[tokens, hidden]` (or ViT's `[1, tokens, hidden]`): one per
    /// patch, plus one for the class token when there is one.
    pub fn with_positions(mut self, table: &Tensor) -> Result<Self> {
        let hidden = self.hidden_size();
        let table = table.flatten_all()?.reshape(((), hidden))?;
        self.positions = Some(table.unsqueeze(0)?);
        Ok(self)
    }

    /// Width of the embeddings.
    pub fn hidden_size(&self) -> usize {
        self.projection.out_features()
    }

    /// The device the weights live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Patch side in pixels.
    pub fn patch_size(&self) -> usize {
        self.patch
    }

    /// Colour channels the projection reads.
    pub fn channels(&self) -> usize {
        self.channels
    }

    /// The square image side the position table is for (`None` without a table, or when its
    /// rows are no square number of patches).
    pub fn image_size(&self) -> Option<usize> {
        let rows = self.positions.as_ref()?.dim(1).ok()?;
        let patches = rows - usize::from(self.class_token.is_some());
        let side = (patches as f64).sqrt().round() as usize;
        (side * side == patches).then_some(side * self.patch)
    }

    /// The patches of `images` `[batch, channels, H, W]` unfolded to `[batch, (H/P)·(W/P),
    /// channels·P·P]`, row-major over the patch grid, each flattened channel-first as the
    /// convolution weight is.
    pub fn unfold(&self, images: &Tensor) -> Result<Tensor> {
        let (b, c, h, w) = images.dims4()?;
        let p = self.patch;
        let (rows, cols) = (h / p, w / p);
        images.reshape((b, c, rows, p, cols, p))?.permute((0, 2, 4, 1, 3, 5))?.contiguous()?.reshape((
            b,
            rows * cols,
            c * p * p,
        ))
    }

    fn check(&self, images: &Tensor) -> Result<()> {
        let dims = images.dims();
        let [_, c, h, w] = dims else {
            candle_core::bail!(
                "pixel values have shape {dims:?}, expected 4 dimensions [batch, channels, height, width]"
            );
        };
        let (c, h, w, p) = (*c, *h, *w, self.patch);
        if !images.dtype().is_float() {
            candle_core::bail!("pixel values are {:?}, expected floating-point values", images.dtype());
        }
        if c != self.channels {
            candle_core::bail!("pixel values have {c} channels, expected {} (num_channels)", self.channels);
        }
        if let Some(table) = &self.positions {
            let rows = table.dim(1)?;
            let patches = (h / p) * (w / p);
            let tokens = patches + usize::from(self.class_token.is_some());
            if h % p != 0 || w % p != 0 || tokens != rows {
                let size = match self.image_size() {
                    Some(side) => format!("{side}×{side}"),
                    None => format!("{} patches of {p}×{p}", rows - usize::from(self.class_token.is_some())),
                };
                candle_core::bail!(
                    "the image is {h}×{w} pixels, but the position table is for {size} images ({rows} positions, \
                     patch {p}); resize the image to that size (interpolating the positions is not implemented)"
                );
            }
        } else if h % p != 0 || w % p != 0 {
            candle_core::bail!("the image is {h}×{w} pixels, not a whole number of {p}×{p} patches");
        }
        Ok(())
    }

    /// The convolution of eq. 1 written plainly, one output element at a time: what
    /// [`forward`](Module::forward)'s single matmul over unfolded patches must equal (tests).
    pub fn forward_reference(&self, images: &Tensor) -> Result<Tensor> {
        self.check(images)?;
        let (b, c, h, w) = images.dims4()?;
        let p = self.patch;
        let (rows, cols) = (h / p, w / p);
        let hidden = self.hidden_size();
        let Some(weight) = self.projection.weight() else {
            candle_core::bail!("patch embeddings: the reference needs a dense projection");
        };
        let weight: Vec<f32> = weight.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
        let bias: Option<Vec<f32>> = self.projection.bias().map(|t| t.to_dtype(DType::F32)?.to_vec1()).transpose()?;
        let pixels: Vec<f32> = images.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
        let mut out = vec![0f32; b * rows * cols * hidden];
        for n in 0..b {
            for (i, j) in (0..rows).flat_map(|i| (0..cols).map(move |j| (i, j))) {
                for o in 0..hidden {
                    let mut acc = bias.as_ref().map_or(0.0, |bias| bias[o]);
                    for (ch, y, x) in (0..c).flat_map(|ch| (0..p).flat_map(move |y| (0..p).map(move |x| (ch, y, x)))) {
                        let pixel = pixels[((n * c + ch) * h + i * p + y) * w + j * p + x];
                        acc += weight[((o * c + ch) * p + y) * p + x] * pixel;
                    }
                    out[((n * rows + i) * cols + j) * hidden + o] = acc;
                }
            }
        }
        let patches = Tensor::from_vec(out, (b, rows * cols, hidden), images.device())?;
        self.finish(patches.to_dtype(self.dtype())?)
    }

    fn dtype(&self) -> DType {
        self.projection.weight().map_or(DType::F32, Tensor::dtype)
    }

    /// Class token in front, positions added.
    fn finish(&self, patches: Tensor) -> Result<Tensor> {
        let b = patches.dim(0)?;
        let mut x = match &self.class_token {
            Some(token) => {
                let token = token.to_dtype(patches.dtype())?.broadcast_as((b, 1, self.hidden_size()))?;
                Tensor::cat(&[&token, &patches], 1)?
            }
            None => patches,
        };
        if let Some(table) = &self.positions {
            x = x.broadcast_add(table)?;
        }
        Ok(x)
    }
}

/// `[batch, channels, H, W]` images to `[batch, tokens, hidden]`: one matmul over the unfolded
/// patches, then the class token and positions.
impl Module for PatchEmbeddings {
    fn forward(&self, images: &Tensor) -> Result<Tensor> {
        self.check(images)?;
        let images = images.to_dtype(self.dtype())?;
        let patches = self.projection.forward(&self.unfold(&images)?)?;
        self.finish(patches)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn random(shape: &[usize], seed: u64) -> Tensor {
        // A small deterministic generator: values in [-1, 1).
        let n: usize = shape.iter().product();
        let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let values: Vec<f32> = (0..n)
            .map(|_| {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect();
        Tensor::from_vec(values, shape, &Device::Cpu).unwrap()
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
    }

    #[test]
    fn one_matmul_equals_the_plain_convolution() {
        for (hidden, channels, patch, side, batch, bias) in
            [(8, 3, 4, 12, 2, true), (5, 1, 3, 9, 1, false), (6, 2, 2, 4, 3, true)]
        {
            let weight = random(&[hidden, channels, patch, patch], 1);
            let bias = bias.then(|| random(&[hidden], 2));
            let patches = PatchEmbeddings::new(&weight, bias, patch).unwrap();
            let images = random(&[batch, channels, side, side], 3);
            let fast = patches.forward(&images).unwrap();
            let reference = patches.forward_reference(&images).unwrap();
            assert_eq!(fast.dims(), [batch, (side / patch).pow(2), hidden]);
            assert!(max_diff(&fast, &reference) < 1e-5);
        }
    }

    #[test]
    fn matches_candles_conv2d() {
        let weight = random(&[7, 3, 4, 4], 4);
        let bias = random(&[7], 5);
        let images = random(&[2, 3, 8, 12], 6);
        let patches = PatchEmbeddings::new(&weight, Some(bias.clone()), 4).unwrap();
        let conv =
            images.conv2d(&weight, 0, 4, 1, 1).unwrap().broadcast_add(&bias.reshape((1, 7, 1, 1)).unwrap()).unwrap();
        // [b, hidden, rows, cols] -> [b, rows·cols, hidden]
        let conv = conv.flatten_from(2).unwrap().transpose(1, 2).unwrap();
        assert!(max_diff(&patches.forward(&images).unwrap(), &conv) < 1e-5);
    }

    #[test]
    fn class_token_and_positions() {
        let weight = random(&[4, 3, 2, 2], 7);
        let class = random(&[4], 8);
        let table = random(&[5, 4], 9);
        let patches = PatchEmbeddings::new(&weight, None, 2)
            .unwrap()
            .with_class_token(&class)
            .unwrap()
            .with_positions(&table)
            .unwrap();
        assert_eq!(patches.image_size(), Some(4));
        let images = random(&[2, 3, 4, 4], 10);
        let out = patches.forward(&images).unwrap();
        assert_eq!(out.dims(), [2, 5, 4]);
        let first = out.get(1).unwrap().get(0).unwrap();
        let expected = (&class + table.get(0).unwrap()).unwrap();
        assert!(max_diff(&first, &expected) < 1e-6);
        assert!(max_diff(&out, &patches.forward_reference(&images).unwrap()) < 1e-5);
    }

    #[test]
    fn refuses_other_image_sizes_ranks_and_dtypes() {
        let weight = random(&[4, 3, 2, 2], 11);
        let patches = PatchEmbeddings::new(&weight, None, 2)
            .unwrap()
            .with_class_token(&random(&[4], 12))
            .unwrap()
            .with_positions(&random(&[5, 4], 13))
            .unwrap();
        let err = patches.forward(&random(&[1, 3, 6, 6], 14)).unwrap_err().to_string();
        assert!(err.contains("6×6") && err.contains("4×4") && err.contains("interpolating"), "{err}");
        let err = patches.forward(&random(&[3, 4, 4], 15)).unwrap_err().to_string();
        assert!(err.contains("4 dimensions"), "{err}");
        let err = patches.forward(&random(&[1, 1, 4, 4], 16)).unwrap_err().to_string();
        assert!(err.contains("1 channels, expected 3"), "{err}");
        let ints = Tensor::zeros((1, 3, 4, 4), DType::U32, &Device::Cpu).unwrap();
        let err = patches.forward(&ints).unwrap_err().to_string();
        assert!(err.contains("floating-point"), "{err}");
    }
}
