//! Image files read as the reference tools read them: mmcv's default colour read
//! (`mmcv.imread(..., 'color')`) and detectron2's `read_image` decode, then apply the EXIF
//! orientation tag; PIL, which both read through, refuses a truncated file. And the decoded
//! size checked against the annotation file's `width` / `height` (detectron2's
//! `check_image_size`).

use std::io::Cursor;
use std::path::Path;

use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, RgbImage};

use crate::dataset::Image;
use crate::error::{DataError, Result};

/// A decoded image file.
#[derive(Debug, Clone)]
pub struct DecodedImage {
    /// The pixels, with the EXIF orientation applied.
    pub rgb: RgbImage,
    /// The EXIF orientation that was applied ([`Orientation::NoTransforms`] when the file has
    /// no tag).
    pub orientation: Orientation,
}

impl DecodedImage {
    /// `(width, height)` as read, after the orientation.
    pub fn dimensions(&self) -> (u32, u32) {
        self.rgb.dimensions()
    }

    /// Whether the orientation swapped width and height.
    pub fn turned(&self) -> bool {
        matches!(
            self.orientation,
            Orientation::Rotate90
                | Orientation::Rotate270
                | Orientation::Rotate90FlipH
                | Orientation::Rotate270FlipH
        )
    }
}

/// Reads an image file (format from its content) as RGB with its EXIF orientation applied; a
/// file that is cut short (a JPEG without its end-of-image marker, a PNG whose image data
/// stops early) is an error, as in PIL.
pub fn read_image(path: &Path) -> Result<DecodedImage> {
    let bad = |message: String| DataError::Image {
        file: path.to_path_buf(),
        message,
    };
    let mut bytes = std::fs::read(path).map_err(|e| DataError::io(path, "cannot read", e))?;
    let format = image::guess_format(&bytes).map_err(|_| {
        bad(if bytes.is_empty() {
            "the file is empty".into()
        } else {
            "not an image file this build reads (JPEG or PNG)".into()
        })
    })?;
    if format == ImageFormat::Jpeg
        && let Some(problem) = jpeg_truncation(&bytes)
    {
        return Err(bad(format!(
            "the JPEG file is truncated ({problem}); a partial download or an interrupted copy? \
             PIL, which mmdetection and detectron2 read through, refuses it too"
        )));
    }
    // PIL reads a PNG whose image data is whole but whose final IEND chunk is missing; the
    // png crate wants the chunk, so it gets one. Data cut short still fails.
    if format == ImageFormat::Png && !bytes.ends_with(&PNG_IEND) {
        bytes.extend_from_slice(&PNG_IEND);
    }
    let decode = || -> image::ImageResult<(DynamicImage, Orientation)> {
        let reader = ImageReader::with_format(Cursor::new(&bytes), format);
        let mut decoder = reader.into_decoder()?;
        let orientation = decoder.orientation()?;
        Ok((DynamicImage::from_decoder(decoder)?, orientation))
    };
    let (mut img, orientation) = decode().map_err(|e| {
        let truncated = matches!(&e, image::ImageError::IoError(io)
            if io.kind() == std::io::ErrorKind::UnexpectedEof)
            || e.to_string().to_lowercase().contains("eof");
        bad(if truncated {
            format!("the file is truncated ({e}); a partial download or an interrupted copy?")
        } else {
            format!("cannot decode: {e}")
        })
    })?;
    img.apply_orientation(orientation);
    Ok(DecodedImage {
        rgb: img.to_rgb8(),
        orientation,
    })
}

/// A PNG's closing chunk: length 0, `IEND`, its CRC.
const PNG_IEND: [u8; 12] = [0, 0, 0, 0, b'I', b'E', b'N', b'D', 0xAE, 0x42, 0x60, 0x82];

/// Why a JPEG stream ends before its end-of-image marker, or `None` when it has one. Segments
/// are skipped by their length (so an EXIF thumbnail's own markers are never mistaken for the
/// image's), entropy-coded data up to the next marker that is not a stuffed byte or a restart.
fn jpeg_truncation(b: &[u8]) -> Option<String> {
    let n = b.len();
    let cut = |what: &str| {
        Some(format!(
            "{n} bytes end {what}, before the end-of-image marker"
        ))
    };
    let mut i = 2;
    loop {
        // Bytes between segments are skipped, as libjpeg does (with a warning).
        while i < n && b[i] != 0xFF {
            i += 1;
        }
        while i < n && b[i] == 0xFF {
            i += 1;
        }
        let Some(&marker) = b.get(i) else {
            return cut("between segments");
        };
        i += 1;
        match marker {
            0xD9 => return None,
            0x01 | 0xD0..=0xD7 => {}
            _ => {
                let Some(len) = b
                    .get(i..i + 2)
                    .map(|l| usize::from(l[0]) << 8 | usize::from(l[1]))
                else {
                    return cut("inside a segment header");
                };
                i += len;
                if i > n {
                    return cut("inside a segment");
                }
                if marker == 0xDA {
                    // Entropy-coded data: 0xFF 0x00 is a stuffed byte, 0xFF 0xD0-0xD7 a
                    // restart marker; any other 0xFF starts the next marker.
                    loop {
                        match b.get(i..i + 2) {
                            None => return cut("inside the compressed image data"),
                            Some([0xFF, m]) if *m != 0x00 && !(0xD0..=0xD7).contains(m) => break,
                            Some(_) => i += 1,
                        }
                    }
                }
            }
        }
    }
}

/// detectron2's `check_image_size`: the decoded image (EXIF orientation applied) must be the
/// `width` x `height` that `record` (`images[index]` of `json`) says, or its annotations would
/// land in the wrong place.
pub fn check_image_size(
    decoded: &DecodedImage,
    path: &Path,
    record: &Image,
    index: usize,
    json: &Path,
) -> Result<()> {
    let (w, h) = decoded.dimensions();
    if (w, h) == (record.width, record.height) {
        return Ok(());
    }
    let cause = if decoded.turned() && (h, w) == (record.width, record.height) {
        format!(
            "the file's EXIF orientation tag ({}) turns it by 90 degrees, as mmcv and \
             detectron2 read it, so the annotation file was made from the unturned pixels: \
             remove the tag from the file, or turn the annotations and swap width and height",
            decoded.orientation.to_exif()
        )
    } else if (h, w) == (record.width, record.height) {
        "width and height are swapped in the annotation file".to_string()
    } else {
        "a resized or different copy of the image, or a wrong width/height in the annotation \
         file"
            .to_string()
    };
    Err(DataError::Image {
        file: path.to_path_buf(),
        message: format!(
            "the image is {w}x{h}{} but images[{index}] (id {}) of {} says {}x{}; the likely \
             cause: {cause}",
            if decoded.orientation == Orientation::NoTransforms {
                String::new()
            } else {
                format!(
                    " after its EXIF orientation ({})",
                    decoded.orientation.to_exif()
                )
            },
            record.id,
            json.display(),
            record.width,
            record.height
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_end_marker_inside_a_segment_is_not_the_images_end() {
        let ok = std::fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/images/ok.jpg"),
        )
        .expect("fixture");
        assert_eq!(jpeg_truncation(&ok), None);
        // An APP1 segment holding a thumbnail's markers, end-of-image included, after SOI.
        let thumb = [
            b"Exif\0\0".as_slice(),
            &[0xFF, 0xD8, 0xFF, 0xDA, 0x00, 0x02, 0x12, 0xFF, 0xD9],
        ]
        .concat();
        let mut with_thumb = vec![0xFF, 0xD8, 0xFF, 0xE1];
        with_thumb.extend_from_slice(&((thumb.len() + 2) as u16).to_be_bytes());
        with_thumb.extend_from_slice(&thumb);
        with_thumb.extend_from_slice(&ok[2..]);
        assert_eq!(jpeg_truncation(&with_thumb), None);
        // Cut anywhere after the thumbnail, the file is truncated even though it holds an
        // end-of-image marker.
        for cut in [with_thumb.len() - 2, with_thumb.len() - 300, 30] {
            let problem = jpeg_truncation(&with_thumb[..cut]);
            assert!(
                problem
                    .as_deref()
                    .is_some_and(|p| p.contains("before the end-of-image")),
                "cut at {cut}: {problem:?}"
            );
        }
        // Every prefix of a real file is refused, without a panic.
        for cut in 2..ok.len() - 1 {
            assert!(jpeg_truncation(&ok[..cut]).is_some(), "cut at {cut}");
        }
    }
}
