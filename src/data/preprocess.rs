//! Image preprocessing of image-folder datasets (`--preprocess SPEC`): resize, centre crop,
//! colour channels and per-channel normalisation, one typed configuration read from a
//! `key=value,...` list or from a small YAML file with the same keys.
//!
//! The steps, in order, follow torchvision's usual `Grayscale → Resize → CenterCrop → ToTensor →
//! Normalize` pipeline:
//! 1. the image is decoded to RGB; with `channels=grey` it becomes one luminance channel by
//!    ITU-R 601-2 (PIL's `convert("L")`: `(19595 R + 38470 G + 7471 B + 2^15) >> 16`);
//! 2. `resize=N` scales the shorter side to N pixels, keeping the aspect ratio (the longer side
//!    is truncated, as torchvision's `Resize(N)`), with a triangle (bilinear) filter;
//!    `resize=none` keeps the image's size;
//! 3. `crop=S` (or `crop=H:W`) takes the centre S × S (H × W) pixels;
//! 4. each pixel byte p of channel c becomes `(p / 255 − mean[c]) / std[c]` in f32.
//!
//! Keys not given keep the value of the `imagenet` preset, which is the default and ImageNet's
//! usual transform: `resize=256,crop=224,mean=0.485:0.456:0.406,std=0.229:0.224:0.225,channels=rgb`.
//! A spec is checked completely when it is parsed ([`Preprocess::parse`]), before any image is
//! read: unknown keys, malformed values, a mean or std whose length is not the channel count, a
//! std that is not positive or below 1e-6, a crop side larger than the resize.

use crate::error::{Error, Result};
use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use std::fmt;

/// Smallest std a preprocessing may divide by.
const MIN_STD: f32 = 1e-6;
use std::path::Path;

/// ImageNet's per-channel mean (R, G, B), the default preprocessing's.
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// ImageNet's per-channel standard deviation (R, G, B), the default preprocessing's.
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];
/// Largest resize or crop side accepted (the graph's limit on an image side).
pub const MAX_SIDE: u32 = crate::graph::MAX_SPATIAL as u32;
/// Largest preprocessing YAML file read, in bytes (the file holds five short keys).
const MAX_YAML_BYTES: u64 = 64 << 10;
/// The names of the presets a spec may start with.
pub const PRESETS: [&str; 1] = ["imagenet"];

/// The colour channels a preprocessing produces.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Channels {
    /// Red, green and blue: 3 channels.
    Rgb,
    /// Luminance (ITU-R 601-2, as PIL's `convert("L")`): 1 channel.
    #[serde(alias = "gray")]
    Grey,
}

impl Channels {
    /// Number of channels of a preprocessed image.
    pub fn count(self) -> usize {
        match self {
            Channels::Rgb => 3,
            Channels::Grey => 1,
        }
    }
    fn name(self) -> &'static str {
        match self {
            Channels::Rgb => "rgb",
            Channels::Grey => "grey",
        }
    }
}

/// A validated image preprocessing: what every image of a folder goes through before it is a
/// model input of shape ([`Preprocess::sample_shape`]) (C, H, W).
///
/// Build one with [`Preprocess::parse`], [`Preprocess::from_yaml_file`] or
/// [`Preprocess::imagenet`]; one built by hand is checked by [`Preprocess::validate`] when an
/// image folder is opened with it.
#[derive(Clone, Debug, PartialEq)]
pub struct Preprocess {
    /// Length of the shorter side after resizing (aspect ratio kept); `None`: not resized.
    pub resize: Option<u32>,
    /// Size of the centre crop, (height, width).
    pub crop: (u32, u32),
    /// Per-channel mean subtracted after scaling pixels to [0, 1]; one value per channel.
    pub mean: Vec<f32>,
    /// Per-channel standard deviation divided by; one positive value per channel.
    pub std: Vec<f32>,
    /// RGB (3 channels) or grey (1 channel).
    pub channels: Channels,
}

impl Default for Preprocess {
    fn default() -> Self {
        Preprocess::imagenet()
    }
}

/// The keys of a spec as written, in either syntax. Absent keys keep the preset's value.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Fields {
    #[serde(default, deserialize_with = "present")]
    resize: Option<ResizeField>,
    #[serde(default, deserialize_with = "present")]
    crop: Option<CropField>,
    #[serde(default, deserialize_with = "present")]
    mean: Option<FloatsField>,
    #[serde(default, deserialize_with = "present")]
    std: Option<FloatsField>,
    #[serde(default, deserialize_with = "present")]
    channels: Option<Channels>,
}

/// A key that is present: its value, even YAML's `null` (which is `resize: none`, an error
/// elsewhere), is read by the key's type instead of meaning "not given".
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> std::result::Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// `resize`: a whole number of pixels, or `none`.
#[derive(Debug)]
struct ResizeField(Option<u32>);
/// `crop`: `S`, `H:W` or (YAML) `[H, W]`.
#[derive(Debug)]
struct CropField(u32, u32);
/// `mean` / `std`: `a:b:c`, a single number, or (YAML) a list of numbers.
#[derive(Debug)]
struct FloatsField(Vec<f32>);

fn parse_side<E: de::Error>(key: &str, s: &str) -> std::result::Result<u32, E> {
    s.trim().parse::<u32>().map_err(|_| E::custom(format!("{key}: `{s}` is not a whole number of pixels")))
}

fn side_from_u64<E: de::Error>(key: &str, v: u64) -> std::result::Result<u32, E> {
    u32::try_from(v).map_err(|_| E::custom(format!("{key}: {v} pixels is too large (at most {MAX_SIDE})")))
}

impl<'de> Deserialize<'de> for ResizeField {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = ResizeField;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("resize: a whole number of pixels (the shorter side) or `none`")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> std::result::Result<ResizeField, E> {
                side_from_u64("resize", v).map(|s| ResizeField(Some(s)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> std::result::Result<ResizeField, E> {
                Err(E::custom(format!("resize: {v} is negative; give the shorter side in pixels or `none`")))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> std::result::Result<ResizeField, E> {
                Err(E::custom(format!("resize: {v} is not a whole number of pixels; give one or `none`")))
            }
            fn visit_unit<E: de::Error>(self) -> std::result::Result<ResizeField, E> {
                Ok(ResizeField(None))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> std::result::Result<ResizeField, E> {
                if s.trim().eq_ignore_ascii_case("none") {
                    return Ok(ResizeField(None));
                }
                parse_side::<E>("resize", s)
                    .map(|v| ResizeField(Some(v)))
                    .map_err(|_| E::custom(format!("resize: `{s}` is neither a whole number of pixels nor `none`")))
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for CropField {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = CropField;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("crop: a size S (S × S pixels) or HEIGHT:WIDTH")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> std::result::Result<CropField, E> {
                let s = side_from_u64("crop", v)?;
                Ok(CropField(s, s))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> std::result::Result<CropField, E> {
                Err(E::custom(format!("crop: {v} is negative; give S or HEIGHT:WIDTH in pixels")))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> std::result::Result<CropField, E> {
                Err(E::custom(format!("crop: {v} is not a whole number of pixels; give S or HEIGHT:WIDTH")))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> std::result::Result<CropField, E> {
                let parts: Vec<&str> = s.split(':').collect();
                let sides = match parts.as_slice() {
                    [one] => parse_side::<E>("crop", one).map(|v| (v, v)),
                    [h, w] => Ok((parse_side::<E>("crop", h)?, parse_side::<E>("crop", w)?)),
                    _ => Err(E::custom("")),
                };
                sides.map(|(h, w)| CropField(h, w)).map_err(|_: E| {
                    E::custom(format!(
                        "crop: `{s}` is neither a size S nor HEIGHT:WIDTH in whole pixels (e.g. 224 or 32:64)"
                    ))
                })
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<CropField, A::Error> {
                let mut sides = Vec::new();
                while let Some(v) = seq.next_element::<u64>()? {
                    sides.push(side_from_u64::<A::Error>("crop", v)?);
                }
                match sides.as_slice() {
                    [h, w] => Ok(CropField(*h, *w)),
                    _ => Err(de::Error::custom(format!(
                        "crop: a list must hold [HEIGHT, WIDTH], got {} values",
                        sides.len()
                    ))),
                }
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for FloatsField {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = FloatsField;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("one number per channel, `:`-separated (e.g. 0.485:0.456:0.406) or a list")
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> std::result::Result<FloatsField, E> {
                Ok(FloatsField(vec![v as f32]))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> std::result::Result<FloatsField, E> {
                Ok(FloatsField(vec![v as f32]))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> std::result::Result<FloatsField, E> {
                Ok(FloatsField(vec![v as f32]))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> std::result::Result<FloatsField, E> {
                s.split(':')
                    .map(|p| {
                        p.trim().parse::<f32>().map_err(|_| {
                            E::custom(format!(
                                "`{p}` in `{s}` is not a number; give one number per channel, `:`-separated"
                            ))
                        })
                    })
                    .collect::<std::result::Result<Vec<_>, E>>()
                    .map(FloatsField)
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<FloatsField, A::Error> {
                let mut v = Vec::new();
                while let Some(x) = seq.next_element::<f64>()? {
                    v.push(x as f32);
                }
                Ok(FloatsField(v))
            }
        }
        d.deserialize_any(V)
    }
}

fn invalid(spec: &str, msg: impl fmt::Display) -> Error {
    Error::invalid(format!("image preprocessing `{spec}`: {msg}"))
}

fn floats(v: &[f32]) -> String {
    v.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(":")
}

impl Preprocess {
    /// ImageNet's usual transform, the default: shorter side to 256, centre crop 224, RGB,
    /// ImageNet's mean and std.
    pub fn imagenet() -> Self {
        Preprocess {
            resize: Some(256),
            crop: (224, 224),
            mean: IMAGENET_MEAN.to_vec(),
            std: IMAGENET_STD.to_vec(),
            channels: Channels::Rgb,
        }
    }

    /// ImageNet's mean, std and RGB with another resize and square crop.
    pub fn imagenet_sized(resize: u32, crop: u32) -> Self {
        Preprocess { resize: Some(resize), crop: (crop, crop), ..Preprocess::imagenet() }
    }

    /// Parses a `--preprocess` spec and validates it:
    /// - `imagenet`: the preset (the default);
    /// - `key=value,...` with keys `resize` (shorter side in pixels, or `none`), `crop` (`S` or
    ///   `H:W`), `mean` and `std` (one number per channel, `:`-separated), `channels` (`rgb`,
    ///   `grey` or `gray`); it may start with the preset's name (`imagenet,crop=192`); keys not
    ///   given keep the preset's values;
    /// - otherwise the path of a YAML file holding the same keys (see
    ///   [`Preprocess::from_yaml_file`]).
    pub fn parse(spec: &str) -> Result<Self> {
        let s = spec.trim();
        if s.is_empty() {
            return Err(invalid(spec, "the spec is empty; give `imagenet`, key=value pairs or a YAML file"));
        }
        if Path::new(s).is_file() {
            return Self::from_yaml_file(Path::new(s));
        }
        let items: Vec<&str> = s.split(',').map(str::trim).collect();
        let mut map = serde_yaml_ng::Mapping::new();
        for (i, item) in items.iter().enumerate() {
            match item.split_once('=') {
                Some((k, v)) => {
                    let key = serde_yaml_ng::Value::String(k.trim().to_string());
                    if map.contains_key(&key) {
                        return Err(invalid(spec, format_args!("`{}` is given twice", k.trim())));
                    }
                    map.insert(key, serde_yaml_ng::Value::String(v.trim().to_string()));
                }
                None if PRESETS.contains(item) && i == 0 => {}
                None if PRESETS.contains(item) => {
                    return Err(invalid(spec, format_args!("the preset `{item}` must come first")));
                }
                None if items.len() == 1
                    && (item.contains('/') || item.ends_with(".yaml") || item.ends_with(".yml")) =>
                {
                    return Err(Error::DataNotFound {
                        what: "preprocessing file".into(),
                        path: item.into(),
                        hint: "give an existing YAML file, the preset `imagenet`, or key=value pairs".into(),
                    });
                }
                None => {
                    return Err(invalid(
                        spec,
                        format_args!(
                            "`{item}` is neither a preset ({}), a key=value pair (keys: resize, crop, mean, std, \
                             channels) nor an existing YAML file",
                            PRESETS.join(", ")
                        ),
                    ))
                }
            }
        }
        let fields: Fields =
            serde_yaml_ng::from_value(serde_yaml_ng::Value::Mapping(map)).map_err(|e| invalid(spec, e))?;
        fields.resolve(spec)
    }

    /// Reads a preprocessing from a YAML file with the keys of [`Preprocess::parse`], e.g.
    ///
    /// ```yaml
    /// resize: 36          # or none
    /// crop: 32            # or "28:32" (height:width) or [28, 32]
    /// mean: [0.5, 0.5, 0.5]
    /// std: 0.25:0.25:0.25
    /// channels: rgb       # or grey
    /// ```
    ///
    /// Keys not given keep the `imagenet` preset's values; unknown keys are errors.
    pub fn from_yaml_file(path: &Path) -> Result<Self> {
        let label = path.display().to_string();
        let len = std::fs::metadata(path).map_err(Error::io("read", path))?.len();
        if len > MAX_YAML_BYTES {
            return Err(invalid(&label, format_args!("the file has {len} bytes, more than {MAX_YAML_BYTES}")));
        }
        let text = crate::util::read_text(path)?;
        let fields: Fields = if text.trim().is_empty() {
            Fields::default()
        } else {
            serde_yaml_ng::from_str(&text).map_err(|e| invalid(&label, e))?
        };
        fields.resolve(&label)
    }

    /// Checks that this preprocessing can run: sides within 1..=[`MAX_SIDE`], no crop side
    /// larger than the resize (the shorter side of every resized image), one finite mean and
    /// one finite, positive std per channel.
    pub fn validate(&self) -> Result<()> {
        self.check().map_err(|reason| invalid(&self.to_string(), reason))
    }

    /// What is wrong with this preprocessing, if anything.
    fn check(&self) -> std::result::Result<(), String> {
        if let Some(r) = self.resize {
            if !(1..=MAX_SIDE).contains(&r) {
                return Err(format!("resize={r}: give a side of 1 to {MAX_SIDE} pixels, or none"));
            }
        }
        let (h, w) = self.crop;
        if !(1..=MAX_SIDE).contains(&h) || !(1..=MAX_SIDE).contains(&w) {
            return Err(format!("crop={h}:{w}: each side must be 1 to {MAX_SIDE} pixels"));
        }
        if let Some(r) = self.resize {
            if h > r || w > r {
                return Err(format!(
                    "the crop {h}:{w} (height:width) is larger than the resize {r}: resizing makes the shorter side \
                     of every image {r} pixels, so a larger crop does not fit a square image; lower the crop, raise \
                     the resize, or use resize=none for images that are already large enough"
                ));
            }
        }
        let c = self.channels.count();
        for (key, v) in [("mean", &self.mean), ("std", &self.std)] {
            if v.len() != c {
                return Err(format!(
                    "{key} has {} value(s) ({}) but channels={} gives {c} channel(s); give {key} with {c} \
                     `:`-separated value(s)",
                    v.len(),
                    floats(v),
                    self.channels.name()
                ));
            }
            if let Some(x) = v.iter().find(|x| !x.is_finite()) {
                return Err(format!("{key} holds {x}, which is not a finite number"));
            }
        }
        if let Some(x) = self.std.iter().find(|&&x| x <= 0.0) {
            return Err(format!("std holds {x}; every std must be positive (it is divided by)"));
        }
        // A tiny std makes every pixel huge or infinite, and the model's output then looks like
        // broken weights; real normalisations divide by about 0.01 to 1.
        if let Some(x) = self.std.iter().find(|&&x| x < MIN_STD) {
            return Err(format!(
                "std holds {x:e}; a std below {MIN_STD:e} blows pixel values up (towards infinity): give the \
                 data's standard deviation, e.g. std=0.229:0.224:0.225"
            ));
        }
        Ok(())
    }

    /// Shape of one preprocessed image: (channels, height, width).
    pub fn sample_shape(&self) -> [i64; 3] {
        [self.channels.count() as i64, self.crop.0 as i64, self.crop.1 as i64]
    }

    /// Whether this is the default (the `imagenet` preset).
    pub fn is_imagenet(&self) -> bool {
        *self == Preprocess::imagenet()
    }

    /// Bytes of one preprocessed image before normalisation (one byte per channel and pixel).
    pub fn image_bytes(&self) -> usize {
        self.channels.count() * self.crop.0 as usize * self.crop.1 as usize
    }
}

impl fmt::Display for Preprocess {
    /// The canonical `key=value` form, which [`Preprocess::parse`] reads back.
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let resize = self.resize.map_or_else(|| "none".to_string(), |r| r.to_string());
        let crop = if self.crop.0 == self.crop.1 {
            self.crop.0.to_string()
        } else {
            format!("{}:{}", self.crop.0, self.crop.1)
        };
        write!(
            f,
            "resize={resize},crop={crop},mean={},std={},channels={}",
            floats(&self.mean),
            floats(&self.std),
            self.channels.name()
        )
    }
}

impl Fields {
    /// The preset with these keys applied, validated.
    fn resolve(self, spec: &str) -> Result<Preprocess> {
        let mut p = Preprocess::imagenet();
        if let Some(ResizeField(r)) = self.resize {
            p.resize = r;
        }
        if let Some(CropField(h, w)) = self.crop {
            p.crop = (h, w);
        }
        if let Some(c) = self.channels {
            p.channels = c;
        }
        let defaulted = |given: &Option<FloatsField>| given.is_none() && p.channels != Channels::Rgb;
        if defaulted(&self.mean) || defaulted(&self.std) {
            return Err(invalid(
                spec,
                "channels=grey needs its own mean and std (the imagenet preset's are for 3 channels); add e.g. \
                 mean=0.5,std=0.25",
            ));
        }
        if let Some(FloatsField(m)) = self.mean {
            p.mean = m;
        }
        if let Some(FloatsField(s)) = self.std {
            p.std = s;
        }
        // Errors name the spec as the user wrote it, not the resolved form.
        p.check().map_err(|reason| invalid(spec, reason))?;
        Ok(p)
    }
}

/// Decodes the image at `path` with preprocessing `p` into `out`: C × H × W bytes,
/// one plane per channel, for a crop of H × W and C channels. RGB: the decoded image's RGB.
/// Grey: its ITU-R 601-2 luminance computed as PIL's `convert("L")` does
/// (`(19595 R + 38470 G + 7471 B + 2^15) >> 16`), so a grey image stays as it is. Then the
/// shorter side is resized to `resize` with a triangle filter (the longer side truncated), unless
/// `resize` is `none`, and the centre H × W pixels are kept (offsets rounded half away from zero).
pub(crate) fn decode_into(path: &Path, p: &Preprocess, out: &mut [u8]) -> Result<()> {
    let bad = |reason: String| Error::CorruptData { what: "image".into(), path: path.into(), reason };
    let img = image::open(path).map_err(|e| bad(e.to_string()))?.to_rgb8();
    let (w, h) = img.dimensions();
    if w == 0 || h == 0 {
        return Err(bad("the image has no pixels".into()));
    }
    match p.channels {
        Channels::Rgb => resize_crop_into(img, p, out).map_err(bad),
        Channels::Grey => {
            let grey = image::GrayImage::from_fn(w, h, |x, y| image::Luma([luma(img.get_pixel(x, y).0)]));
            resize_crop_into(grey, p, out).map_err(bad)
        }
    }
}

/// PIL's luminance of an RGB pixel (`L24` in its `Convert.c`): ITU-R 601-2 weights in 16-bit
/// fixed point, rounded.
fn luma([r, g, b]: [u8; 3]) -> u8 {
    ((r as u32 * 19595 + g as u32 * 38470 + b as u32 * 7471 + 0x8000) >> 16) as u8
}

/// Resizes (unless `resize` is none) and centre-crops `img`, then writes its channels as planes.
fn resize_crop_into<P>(
    img: image::ImageBuffer<P, Vec<u8>>,
    p: &Preprocess,
    out: &mut [u8],
) -> std::result::Result<(), String>
where
    P: image::Pixel<Subpixel = u8> + 'static,
{
    let (w, h) = img.dimensions();
    let (img, nw, nh) = match p.resize {
        Some(resize) => {
            let (nw, nh) = if w <= h {
                (resize, (resize as u64 * h as u64 / w as u64) as u32)
            } else {
                ((resize as u64 * w as u64 / h as u64) as u32, resize)
            };
            (image::imageops::resize(&img, nw, nh, image::imageops::FilterType::Triangle), nw, nh)
        }
        None => (img, w, h),
    };
    let (ch, cw) = p.crop;
    let channels = P::CHANNEL_COUNT as usize;
    if ch > nh || cw > nw || out.len() != channels * (ch * cw) as usize {
        let crop = if ch == cw { format!("{ch}-pixel") } else { format!("{ch}×{cw} (height×width)") };
        return Err(match p.resize {
            Some(_) => format!("resized to {nw}×{nh} it is smaller than the {crop} crop"),
            None => format!(
                "at {nw}×{nh} it is smaller than the {crop} crop (resize=none keeps each image's size; give a resize)"
            ),
        });
    }
    let left = ((nw - cw) as f64 / 2.0).round() as u32;
    let top = ((nh - ch) as f64 / 2.0).round() as u32;
    let img = image::imageops::crop_imm(&img, left, top, cw, ch).to_image();
    let plane = (ch * cw) as usize;
    for (i, px) in img.pixels().enumerate() {
        for (c, &v) in px.channels().iter().enumerate() {
            out[c * plane + i] = v;
        }
    }
    Ok(())
}
