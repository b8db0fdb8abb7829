//! Reading image files for the model: the file checked before it is read, the header before
//! the pixels, and the pixels decoded straight from the file.
//!
//! Nothing is read whole: a huge or junk file costs a header read, and a FIFO or device named
//! `*.png` is refused rather than waited on forever.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use anyhow::{Context, Result, bail};
use image::{DynamicImage, ImageError, ImageReader, Limits};

/// Largest image file read unless told otherwise (`--max-file-bytes`): 1 GiB, far above any
/// photograph, so only junk and mistakes are refused.
pub const DEFAULT_MAX_FILE_BYTES: u64 = 1 << 30;

/// What an image file may be, checked before decoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageLimits {
    /// Largest image in pixels (width x height, `--max-pixels`).
    pub max_pixels: u64,
    /// Largest file in bytes (`--max-file-bytes`).
    pub max_file_bytes: u64,
}

/// Explain an image-crate failure for `path` in terms a user can act on.
fn decode_error(path: &Path, e: ImageError) -> anyhow::Error {
    let shown = path.display();
    match e {
        ImageError::Decoding(_) | ImageError::IoError(_) => {
            anyhow::anyhow!("{shown}: corrupt or truncated image: {e}")
        }
        ImageError::Unsupported(_) => {
            anyhow::anyhow!("{shown}: unsupported image ({e}); convert it to PNG or JPEG")
        }
        ImageError::Limits(_) => anyhow::anyhow!(
            "{shown}: decoding needs more memory than allowed ({e}); lower the image size or raise --max-pixels"
        ),
        _ => anyhow::anyhow!("{shown}: cannot decode image: {e}"),
    }
}

/// What a file that is not a regular file is, for messages.
fn kind_of(meta: &std::fs::Metadata) -> &'static str {
    let t = meta.file_type();
    if t.is_dir() {
        return "a folder";
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_fifo() {
            return "a FIFO";
        }
        if t.is_socket() {
            return "a socket";
        }
        if t.is_block_device() || t.is_char_device() {
            return "a device";
        }
    }
    "not a regular file"
}

fn open(path: &Path) -> Result<BufReader<File>> {
    let file = File::open(path).with_context(|| format!("cannot read image {}", path.display()))?;
    Ok(BufReader::new(file))
}

impl ImageLimits {
    /// At most `max_pixels`, with the default file-size limit.
    pub fn pixels(max_pixels: u64) -> Self {
        Self {
            max_pixels,
            max_file_bytes: DEFAULT_MAX_FILE_BYTES,
        }
    }
}

/// [`load_image_within`] with the default file-size limit.
pub fn load_image(path: &Path, max_pixels: u64) -> Result<DynamicImage> {
    load_image_within(path, ImageLimits::pixels(max_pixels))
}

/// Read and decode an image: only a regular file within `max_file_bytes`, and only when its
/// header says it is within `max_pixels`.
pub fn load_image_within(path: &Path, limits: ImageLimits) -> Result<DynamicImage> {
    let shown = path.display();
    let meta = std::fs::metadata(path).with_context(|| format!("cannot read image {shown}"))?;
    if !meta.is_file() {
        bail!(
            "{shown}: {} named like an image; only regular files are read",
            kind_of(&meta)
        );
    }
    let bytes = meta.len();
    if bytes > limits.max_file_bytes {
        bail!(
            "{shown}: the file is {bytes} bytes, above the limit of {} bytes (--max-file-bytes); \
             pass --max-file-bytes {bytes} or more to read it",
            limits.max_file_bytes
        );
    }
    let reader = ImageReader::new(open(path)?)
        .with_guessed_format()
        .with_context(|| format!("cannot read image {shown}"))?;
    let Some(format) = reader.format() else {
        bail!(
            "{shown}: not a recognised image format (supported: PNG, JPEG, GIF, BMP, WebP, TIFF)"
        );
    };
    let (w, h) = reader
        .into_dimensions()
        .map_err(|e| decode_error(path, e))?;
    if w == 0 || h == 0 {
        bail!("{shown}: image has zero size ({w}x{h})");
    }
    let pixels = w as u64 * h as u64;
    if pixels > limits.max_pixels {
        bail!(
            "{shown}: image is {w}x{h} = {pixels} pixels, above the limit of {} pixels \
             (--max-pixels); pass --max-pixels {pixels} or more to load it",
            limits.max_pixels
        );
    }
    let mut reader = ImageReader::with_format(open(path)?, format);
    let mut decode_limits = Limits::default();
    // The pixel check above is the real limit; leave decoders room for 16-bit RGBA buffers.
    decode_limits.max_alloc = Some(
        decode_limits
            .max_alloc
            .unwrap_or(0)
            .max(pixels.saturating_mul(16)),
    );
    reader.limits(decode_limits);
    reader.decode().map_err(|e| decode_error(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{Rgb, RgbImage};

    #[test]
    fn load_image_errors_name_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.png");
        let err = format!("{:#}", load_image(&missing, 1 << 30).unwrap_err());
        assert!(err.contains("missing.png"), "{err}");

        let garbage = dir.path().join("garbage.png");
        std::fs::write(&garbage, b"this is not an image at all").unwrap();
        let err = format!("{:#}", load_image(&garbage, 1 << 30).unwrap_err());
        assert!(err.contains("garbage.png"), "{err}");

        let good = dir.path().join("good.png");
        RgbImage::from_pixel(40, 30, Rgb([1, 2, 3]))
            .save(&good)
            .unwrap();
        let img = load_image(&good, 1200).unwrap();
        assert_eq!((img.width(), img.height()), (40, 30));
        let err = format!("{:#}", load_image(&good, 1199).unwrap_err());
        assert!(
            err.contains("good.png") && err.contains("--max-pixels"),
            "{err}"
        );
        assert!(err.contains("1200") && err.contains("1199"), "{err}");

        let bytes = std::fs::read(&good).unwrap();
        let cut = dir.path().join("cut.png");
        std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
        let err = format!("{:#}", load_image(&cut, 1 << 30).unwrap_err());
        assert!(err.contains("cut.png"), "{err}");
    }
    #[test]
    fn files_above_the_byte_limit_are_refused_before_reading() {
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big.png");
        RgbImage::from_pixel(4, 4, Rgb([9, 9, 9]))
            .save(&big)
            .unwrap();
        // Sparse: the length is what counts, and nothing is read.
        std::fs::OpenOptions::new()
            .write(true)
            .open(&big)
            .unwrap()
            .set_len(64 << 20)
            .unwrap();
        let limits = ImageLimits {
            max_pixels: 1 << 30,
            max_file_bytes: 1 << 20,
        };
        let err = format!("{:#}", load_image_within(&big, limits).unwrap_err());
        assert!(
            err.contains("big.png") && err.contains("--max-file-bytes") && err.contains("67108864"),
            "{err}"
        );
    }

    #[cfg(unix)]
    #[test]
    fn a_fifo_named_like_an_image_is_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("pipe.png");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        let mut png = Vec::new();
        RgbImage::from_pixel(4, 4, Rgb([1, 2, 3]))
            .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        // A writer that hands over a valid image to whoever opens the FIFO; a reader that
        // opened it would block until then and decode it.
        let writer = {
            let fifo = fifo.clone();
            std::thread::spawn(move || std::fs::write(fifo, png))
        };
        let result = load_image(&fifo, 1 << 30);
        if result.is_err() {
            // Nobody read the FIFO: open it here so the writer finishes.
            let _ = std::fs::read(&fifo);
        }
        writer.join().unwrap().unwrap();
        let err = format!("{:#}", result.unwrap_err());
        assert!(err.contains("pipe.png") && err.contains("a FIFO"), "{err}");
    }
}
