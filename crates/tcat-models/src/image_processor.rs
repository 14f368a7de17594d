//! Image preprocessing as a checkpoint's `preprocessor_config.json` describes it (transformers'
//! `ViTImageProcessor` and `CLIPImageProcessor`): resize with the processor's resampling filter
//! (to a fixed size, or the shortest edge to a length keeping the aspect ratio), centre crop,
//! rescale (by 1/255) and normalise per channel, giving the `pixel_values` `[batch, 3, H, W]` a
//! Vision Transformer reads (Dosovitskiy et al. 2020, §3.1; CLIP, Radford et al. 2021, §2.4).
//!
//! Resizing reproduces Pillow's resampling, which transformers' processors call on 8-bit
//! images: a separable convolution (horizontal pass, then vertical) whose filter support grows
//! with the downscaling factor (antialiasing), with weights in 22-bit fixed point and each pass
//! rounded back to 8 bits. Images are decoded with the `image` crate (PNG exactly; JPEG decoders
//! may differ from libjpeg's by a level here and there, most where chroma is subsampled) and
//! made RGB as transformers' `convert_to_rgb` makes them (transparency over white).

use std::path::Path;

use candle_core::{Device, Tensor};
use serde::Deserialize;
use tcat_core::{Error, Result};

/// An 8-bit RGB image: `height × width × 3` bytes, row-major.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RgbImage {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// `height · width · 3` bytes, row-major, RGB interleaved.
    pub pixels: Vec<u8>,
}

impl RgbImage {
    /// An image from its bytes, which must be `height · width · 3`.
    pub fn new(width: usize, height: usize, pixels: Vec<u8>) -> Result<Self> {
        if Some(pixels.len()) != width.checked_mul(height).and_then(|n| n.checked_mul(3)) {
            return Err(Error::InvalidInput(format!(
                "an RGB image of {width}×{height} pixels needs {} bytes, got {}",
                width.saturating_mul(height).saturating_mul(3),
                pixels.len()
            )));
        }
        Ok(Self { width, height, pixels })
    }

    /// Decodes a PNG, JPEG, GIF, BMP or WebP file, converting it to RGB as transformers'
    /// `convert_to_rgb` does with Pillow: grey is replicated, transparency (an alpha channel, or
    /// a PNG's transparent palette entry or colour) is composited over white, and 16-bit grey
    /// is clipped to 255 (Pillow reads it as `I;16` and clips when converting).
    pub fn open(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|source| Error::Io { path: path.to_path_buf(), source })?;
        let decoded = image::load_from_memory(&bytes).map_err(|e| {
            Error::InvalidInput(format!(
                "{}: not an image tcat can decode (PNG, JPEG, GIF, BMP, WebP): {e}",
                path.display()
            ))
        })?;
        let (width, height) = (decoded.width() as usize, decoded.height() as usize);
        let pixels = match decoded {
            image::DynamicImage::ImageLuma16(grey) => {
                grey.into_raw().into_iter().flat_map(|v| [v.min(255) as u8; 3]).collect()
            }
            image if image.color().has_alpha() => image
                .to_rgba8()
                .into_raw()
                .chunks_exact(4)
                .flat_map(|p| [over_white(p[0], p[3]), over_white(p[1], p[3]), over_white(p[2], p[3])])
                .collect(),
            image => image.to_rgb8().into_raw(),
        };
        Self::new(width, height, pixels)
    }
}

/// Colour value `c` with opacity `alpha` composited over white, in Pillow's integer arithmetic
/// (`Image.alpha_composite` onto an opaque white background: 7 extra bits of precision,
/// divisions by 255 rounded); equal to Pillow's result for all 65536 pairs.
fn over_white(c: u8, alpha: u8) -> u8 {
    if alpha == 0 {
        return 255;
    }
    let (c, a) = (u32::from(c), u32::from(alpha));
    let scaled = 128 * (c * a + 255 * (255 - a)) + (0x80 << 7);
    ((((scaled >> 8) + scaled) >> 8) >> 7) as u8
}

/// A Pillow resampling filter (`resample` in `preprocessor_config.json`, Pillow's numbering).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resample {
    /// 1: Lanczos (a windowed sinc, support 3).
    Lanczos,
    /// 2: bilinear (triangle, support 1).
    Bilinear,
    /// 3: bicubic (Keys' cubic with a = −0.5, support 2).
    Bicubic,
    /// 4: box (support ½).
    Box,
    /// 5: Hamming (a Hamming-windowed sinc, support 1).
    Hamming,
}

impl Resample {
    /// The filter numbered `code` as Pillow numbers them; 0 (nearest) is not implemented.
    pub fn from_pil(code: u64) -> std::result::Result<Self, String> {
        Ok(match code {
            1 => Self::Lanczos,
            2 => Self::Bilinear,
            3 => Self::Bicubic,
            4 => Self::Box,
            5 => Self::Hamming,
            0 => {
                return Err(
                    "0 (nearest) is not implemented; expected 1 to 5 (lanczos, bilinear, bicubic, box, hamming)".into(),
                );
            }
            other => {
                return Err(format!(
                    "{other} is not a Pillow filter; expected 1 to 5 (lanczos, bilinear, bicubic, box, hamming)"
                ));
            }
        })
    }

    fn support(self) -> f64 {
        match self {
            Self::Box => 0.5,
            Self::Bilinear | Self::Hamming => 1.0,
            Self::Bicubic => 2.0,
            Self::Lanczos => 3.0,
        }
    }

    fn weight(self, x: f64) -> f64 {
        let sinc = |x: f64| if x == 0.0 { 1.0 } else { (x * std::f64::consts::PI).sin() / (x * std::f64::consts::PI) };
        match self {
            Self::Box => {
                if x > -0.5 && x <= 0.5 {
                    1.0
                } else {
                    0.0
                }
            }
            Self::Bilinear => {
                let x = x.abs();
                if x < 1.0 { 1.0 - x } else { 0.0 }
            }
            Self::Bicubic => {
                let a = -0.5;
                let x = x.abs();
                if x < 1.0 {
                    ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
                } else if x < 2.0 {
                    (((x - 5.0) * x + 8.0) * x - 4.0) * a
                } else {
                    0.0
                }
            }
            Self::Hamming => {
                let x = x.abs();
                if x == 0.0 {
                    1.0
                } else if x >= 1.0 {
                    0.0
                } else {
                    let x = x * std::f64::consts::PI;
                    x.sin() / x * (0.54 + 0.46 * x.cos())
                }
            }
            Self::Lanczos => {
                if (-3.0..3.0).contains(&x) {
                    sinc(x) * sinc(x / 3.0)
                } else {
                    0.0
                }
            }
        }
    }
}

/// Fractional bits of Pillow's fixed-point weights for 8-bit images.
const PRECISION_BITS: u32 = 32 - 8 - 2;

/// Per output pixel: the first input pixel, and the fixed-point weights of the following ones.
fn coefficients(in_size: usize, out_size: usize, filter: Resample) -> Vec<(usize, Vec<i32>)> {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = filter.support() * filterscale;
    (0..out_size)
        .map(|xx| {
            let center = (xx as f64 + 0.5) * scale;
            let ss = 1.0 / filterscale;
            // C casts truncate toward zero; Pillow then clamps to the image.
            let xmin = ((center - support + 0.5) as i64).max(0) as usize;
            let xmax = ((center + support + 0.5) as i64).min(in_size as i64).max(xmin as i64) as usize;
            let weights: Vec<f64> = (xmin..xmax).map(|x| filter.weight((x as f64 - center + 0.5) * ss)).collect();
            let total: f64 = weights.iter().sum();
            let fixed = weights
                .iter()
                .map(|&w| {
                    let w = if total != 0.0 { w / total } else { w };
                    let scaled = w * f64::from(1u32 << PRECISION_BITS);
                    if w < 0.0 { (scaled - 0.5) as i32 } else { (scaled + 0.5) as i32 }
                })
                .collect();
            (xmin, fixed)
        })
        .collect()
}

fn clip8(acc: i64) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Resizes `image` to `width × height` as Pillow's `Image.resize` does for RGB images (no
/// `reducing_gap`): a horizontal pass when the width changes, then a vertical one when the
/// height does, each rounded to 8 bits.
///
/// ```
/// use tcat_models::image_processor::{RgbImage, Resample, resize};
/// let image = RgbImage::new(2, 1, vec![0, 0, 0, 255, 255, 255]).unwrap();
/// let out = resize(&image, 1, 1, Resample::Bilinear).unwrap();
/// assert_eq!(out.pixels, [128, 128, 128]);
/// ```
pub fn resize(image: &RgbImage, width: usize, height: usize, filter: Resample) -> Result<RgbImage> {
    if width == 0 || height == 0 || image.width == 0 || image.height == 0 {
        return Err(Error::InvalidInput(format!(
            "cannot resize a {}×{} image to {width}×{height}",
            image.width, image.height
        )));
    }
    let mut current = image.clone();
    if width != current.width {
        let coeffs = coefficients(current.width, width, filter);
        let mut out = vec![0u8; width * current.height * 3];
        for y in 0..current.height {
            let row = &current.pixels[y * current.width * 3..(y + 1) * current.width * 3];
            for (x, (start, weights)) in coeffs.iter().enumerate() {
                for c in 0..3 {
                    let mut acc: i64 = 1 << (PRECISION_BITS - 1);
                    for (i, &w) in weights.iter().enumerate() {
                        acc += i64::from(row[(start + i) * 3 + c]) * i64::from(w);
                    }
                    out[(y * width + x) * 3 + c] = clip8(acc);
                }
            }
        }
        current = RgbImage { width, height: current.height, pixels: out };
    }
    if height != current.height {
        let coeffs = coefficients(current.height, height, filter);
        let stride = current.width * 3;
        let mut out = vec![0u8; current.width * height * 3];
        for (y, (start, weights)) in coeffs.iter().enumerate() {
            for i in 0..stride {
                let mut acc: i64 = 1 << (PRECISION_BITS - 1);
                for (j, &w) in weights.iter().enumerate() {
                    acc += i64::from(current.pixels[(start + j) * stride + i]) * i64::from(w);
                }
                out[y * stride + i] = clip8(acc);
            }
        }
        current = RgbImage { width: current.width, height, pixels: out };
    }
    Ok(current)
}

/// Crops the centre `width × height` of `image`, padding with black where the image is smaller
/// (transformers' `center_crop`).
pub fn center_crop(image: &RgbImage, width: usize, height: usize) -> RgbImage {
    // transformers pads the image (the odd pixel before it) and crops the padded one; in the
    // image's own coordinates the crop starts at ⌊(size − crop) / 2⌋ either way.
    let top = (image.height as i64 - height as i64).div_euclid(2);
    let left = (image.width as i64 - width as i64).div_euclid(2);
    let mut out = vec![0u8; width * height * 3];
    for y in 0..height {
        let sy = top + y as i64;
        if sy < 0 || sy as usize >= image.height {
            continue;
        }
        for x in 0..width {
            let sx = left + x as i64;
            if sx >= 0 && (sx as usize) < image.width {
                let src = (sy as usize * image.width + sx as usize) * 3;
                out[(y * width + x) * 3..(y * width + x) * 3 + 3].copy_from_slice(&image.pixels[src..src + 3]);
            }
        }
    }
    RgbImage { width, height, pixels: out }
}

/// The most pixels a resize or crop produces (8192 × 8192): a config asking for more is refused
/// before anything is allocated.
pub const MAX_PIXELS: usize = 1 << 26;

/// How the processor resizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResizeTo {
    /// To exactly `height × width` (ViT).
    Exact {
        /// Output height.
        height: usize,
        /// Output width.
        width: usize,
    },
    /// The shorter side to this length, the longer one scaled to keep the aspect ratio and
    /// truncated (CLIP).
    ShortestEdge(usize),
}

/// The steps of a `preprocessor_config.json`.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageProcessor {
    /// The resize, if `do_resize`.
    pub resize: Option<ResizeTo>,
    /// The resampling filter.
    pub resample: Resample,
    /// The centre crop `(height, width)`, if `do_center_crop`.
    pub crop: Option<(usize, usize)>,
    /// The factor pixel values are multiplied by, if `do_rescale`.
    pub rescale: Option<f64>,
    /// Per-channel `(mean, std)`, if `do_normalize`.
    pub normalize: Option<([f32; 3], [f32; 3])>,
}

#[derive(Deserialize)]
struct RawConfig {
    #[serde(default)]
    image_processor_type: Option<String>,
    #[serde(default)]
    do_resize: Option<bool>,
    #[serde(default)]
    size: Option<serde_json::Value>,
    #[serde(default)]
    resample: Option<u64>,
    #[serde(default)]
    do_center_crop: Option<bool>,
    #[serde(default)]
    crop_size: Option<serde_json::Value>,
    #[serde(default)]
    do_rescale: Option<bool>,
    #[serde(default)]
    rescale_factor: Option<f64>,
    #[serde(default)]
    do_normalize: Option<bool>,
    #[serde(default)]
    image_mean: Option<serde_json::Value>,
    #[serde(default)]
    image_std: Option<serde_json::Value>,
}

const IMAGENET_STANDARD: [f32; 3] = [0.5, 0.5, 0.5];
const OPENAI_CLIP_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
// transformers' OPENAI_CLIP_STD (0.26862954, 0.26130258, 0.27577711), as the nearest f32 values.
const OPENAI_CLIP_STD: [f32; 3] = [0.268_629_54, 0.261_302_6, 0.275_777_1];

impl ImageProcessor {
    /// Reads `preprocessor_config.json` (a `ViTImageProcessor` or `CLIPImageProcessor`; fields
    /// the file leaves out take that class's defaults).
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io { path: path.to_path_buf(), source })?;
        let value: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| Error::Config { file: path.to_path_buf(), message: format!("malformed JSON: {e}") })?;
        Self::from_json(&value).map_err(|message| Error::Config { file: path.to_path_buf(), message })
    }

    /// The processor a `preprocessor_config.json` value describes; the message names the field
    /// at fault.
    pub fn from_json(value: &serde_json::Value) -> std::result::Result<Self, String> {
        let raw: RawConfig = serde_json::from_value(value.clone()).map_err(|e| e.to_string())?;
        let class = raw.image_processor_type.as_deref().unwrap_or("ViTImageProcessor");
        let clip = match class.trim_end_matches("Fast").trim_end_matches("Pil") {
            "ViTImageProcessor" => false,
            "CLIPImageProcessor" => true,
            other => {
                return Err(format!(
                    "`image_processor_type` `{other}` is not supported; expected ViTImageProcessor or CLIPImageProcessor"
                ));
            }
        };
        let dims = |field: &str, v: &serde_json::Value| -> std::result::Result<ResizeTo, String> {
            let get = |k: &str| v.get(k).and_then(serde_json::Value::as_u64).map(|n| n as usize);
            match (get("height"), get("width"), get("shortest_edge"), v.as_u64()) {
                (Some(h), Some(w), _, _) if h > 0 && w > 0 => Ok(ResizeTo::Exact { height: h, width: w }),
                (_, _, Some(s), _) if s > 0 && v.get("longest_edge").is_none() => Ok(ResizeTo::ShortestEdge(s)),
                (_, _, _, Some(n)) if n > 0 => {
                    let n = n as usize;
                    Ok(if clip { ResizeTo::ShortestEdge(n) } else { ResizeTo::Exact { height: n, width: n } })
                }
                _ => Err(format!(
                    "`{field}` is {v}; expected {{\"height\": H, \"width\": W}} or {{\"shortest_edge\": N}} with positive sizes"
                )),
            }
        };
        let resize = if raw.do_resize.unwrap_or(true) {
            Some(match &raw.size {
                Some(v) => dims("size", v)?,
                None if clip => ResizeTo::ShortestEdge(224),
                None => ResizeTo::Exact { height: 224, width: 224 },
            })
        } else {
            None
        };
        let resample = Resample::from_pil(raw.resample.unwrap_or(if clip { 3 } else { 2 }))
            .map_err(|e| format!("`resample` {e}"))?;
        let crop = if raw.do_center_crop.unwrap_or(clip) {
            match raw.crop_size.as_ref().map(|v| dims("crop_size", v)).transpose()? {
                Some(ResizeTo::Exact { height, width }) => Some((height, width)),
                Some(ResizeTo::ShortestEdge(n)) => Some((n, n)),
                None => Some((224, 224)),
            }
        } else {
            None
        };
        let rescale = raw.do_rescale.unwrap_or(true).then_some(raw.rescale_factor.unwrap_or(1.0 / 255.0));
        let triple =
            |field: &str, v: &Option<serde_json::Value>, default: [f32; 3]| -> std::result::Result<[f32; 3], String> {
                match v {
                    None => Ok(default),
                    Some(serde_json::Value::Number(n)) => Ok([n.as_f64().unwrap_or(0.0) as f32; 3]),
                    Some(serde_json::Value::Array(items)) if items.len() == 3 => {
                        let mut out = [0f32; 3];
                        for (o, item) in out.iter_mut().zip(items) {
                            *o = item.as_f64().ok_or_else(|| format!("`{field}`: {item} is not a number"))? as f32;
                        }
                        Ok(out)
                    }
                    Some(other) => Err(format!("`{field}` is {other}; expected 3 numbers (one per RGB channel)")),
                }
            };
        let normalize = if raw.do_normalize.unwrap_or(true) {
            let (mean, std) =
                if clip { (OPENAI_CLIP_MEAN, OPENAI_CLIP_STD) } else { (IMAGENET_STANDARD, IMAGENET_STANDARD) };
            let std = triple("image_std", &raw.image_std, std)?;
            if std.contains(&0.0) {
                return Err(format!("`image_std` is {std:?}; a zero would divide by zero"));
            }
            Some((triple("image_mean", &raw.image_mean, mean)?, std))
        } else {
            None
        };
        Ok(Self { resize, resample, crop, rescale, normalize })
    }

    /// The output `(height, width)` of `image` after the resize and crop.
    pub fn output_size(&self, image: &RgbImage) -> (usize, usize) {
        match (self.crop, self.resize) {
            (Some(crop), _) => crop,
            (None, Some(to)) => self.resized_size(image, to),
            (None, None) => (image.height, image.width),
        }
    }

    fn resized_size(&self, image: &RgbImage, to: ResizeTo) -> (usize, usize) {
        match to {
            ResizeTo::Exact { height, width } => (height, width),
            ResizeTo::ShortestEdge(n) => {
                let (h, w) = (image.height, image.width);
                let (short, long) = if w <= h { (w, h) } else { (h, w) };
                // Python's int(n * long / short): the product, then a true division, truncated.
                let new_long = (n as f64 * long as f64 / short.max(1) as f64) as usize;
                if w <= h { (new_long, n) } else { (n, new_long) }
            }
        }
    }

    /// One image's pixel values `[3, H, W]`, channel-first, as the processor returns them.
    /// An output of more than [`MAX_PIXELS`] pixels is refused before anything is allocated.
    pub fn preprocess(&self, image: &RgbImage) -> Result<Vec<f32>> {
        let sizes = [self.resize.map(|to| self.resized_size(image, to)), Some(self.output_size(image))];
        for (h, w) in sizes.into_iter().flatten() {
            if h.checked_mul(w).is_none_or(|n| n > MAX_PIXELS) {
                return Err(Error::InvalidInput(format!(
                    "preprocessing a {}×{} image to {h}×{w} pixels: more than the {MAX_PIXELS} pixels tcat resizes to; \
                     check `size` and `crop_size`",
                    image.width, image.height
                )));
            }
        }
        let mut image = image.clone();
        if let Some(to) = self.resize {
            let (h, w) = self.resized_size(&image, to);
            if (h, w) != (image.height, image.width) {
                image = resize(&image, w, h, self.resample)?;
            }
        }
        if let Some((h, w)) = self.crop {
            image = center_crop(&image, w, h);
        }
        let (h, w) = (image.height, image.width);
        let mut out = vec![0f32; 3 * h * w];
        for c in 0..3 {
            for i in 0..h * w {
                let v = image.pixels[i * 3 + c];
                // transformers rescales in f64 and stores f32, then normalises in f32.
                let mut x = match self.rescale {
                    Some(factor) => (f64::from(v) * factor) as f32,
                    None => f32::from(v),
                };
                if let Some((mean, std)) = self.normalize {
                    x = (x - mean[c]) / std[c];
                }
                out[c * h * w + i] = x;
            }
        }
        Ok(out)
    }

    /// `pixel_values` `[batch, 3, H, W]` (f32) of `images`, which must all come out the same size.
    pub fn pixel_values(&self, images: &[RgbImage], device: &Device) -> Result<Tensor> {
        let Some(first) = images.first() else {
            return Err(Error::InvalidInput("no images to preprocess".into()));
        };
        let (h, w) = self.output_size(first);
        let mut data = Vec::with_capacity(images.len() * 3 * h * w);
        for (i, image) in images.iter().enumerate() {
            let size = self.output_size(image);
            if size != (h, w) {
                return Err(Error::InvalidInput(format!(
                    "image {} preprocesses to {}×{} pixels, image 1 to {h}×{w}; a batch needs one size (set a crop \
                     size or an exact resize)",
                    i + 1,
                    size.0,
                    size.1
                )));
            }
            data.extend(self.preprocess(image)?);
        }
        Ok(Tensor::from_vec(data, (images.len(), 3, h, w), device)?)
    }
}
