//! Binary masks <-> JSON segmentations, through hotcoco's port of pycocotools' mask API.
//!
//! Our bitmaps are row-major (`y * width + x`), as images are; COCO RLE is column-major.

use crate::dataset::{Rle, RleCounts, Segmentation};
use crate::error::{DataError, Result};

/// A row-major binary mask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bitmap {
    pub height: u32,
    pub width: u32,
    /// `height * width` bytes, 0 or 1.
    pub data: Vec<u8>,
}

impl Bitmap {
    /// An empty mask.
    pub fn zeros(height: u32, width: u32) -> Self {
        Self {
            height,
            width,
            data: vec![0; height as usize * width as usize],
        }
    }

    /// Number of foreground pixels.
    pub fn area(&self) -> u64 {
        self.data.iter().map(|&v| u64::from(v != 0)).sum()
    }

    /// Tight `[x, y, width, height]` box of the foreground, or `None` when empty.
    pub fn bbox(&self) -> Option<[f64; 4]> {
        let (w, h) = (self.width as usize, self.height as usize);
        let (mut x0, mut y0, mut x1, mut y1) = (usize::MAX, usize::MAX, 0, 0);
        for y in 0..h {
            let row = &self.data[y * w..(y + 1) * w];
            if let Some(first) = row.iter().position(|&v| v != 0) {
                let last = row.iter().rposition(|&v| v != 0).unwrap_or(first);
                x0 = x0.min(first);
                x1 = x1.max(last + 1);
                y0 = y0.min(y);
                y1 = y + 1;
            }
        }
        (x0 != usize::MAX).then(|| [x0 as f64, y0 as f64, (x1 - x0) as f64, (y1 - y0) as f64])
    }

    /// The mask as pycocotools' compressed RLE.
    pub fn to_rle(&self) -> Result<Rle> {
        let (h, w) = (self.height as usize, self.width as usize);
        let mut col_major = vec![0u8; h * w];
        for y in 0..h {
            for x in 0..w {
                col_major[x * h + y] = self.data[y * w + x];
            }
        }
        let rle = hotcoco::mask::encode(&col_major, self.height, self.width)
            .map_err(|e| DataError::Request(format!("cannot encode mask: {e}")))?;
        Ok(Rle {
            size: [self.height, self.width],
            counts: RleCounts::Compressed(hotcoco::mask::rle_to_string(&rle)),
        })
    }

    fn from_col_major(col: &[u8], height: u32, width: u32) -> Self {
        let (h, w) = (height as usize, width as usize);
        let mut data = vec![0u8; h * w];
        for x in 0..w {
            for y in 0..h {
                data[y * w + x] = u8::from(col.get(x * h + y).is_some_and(|&v| v != 0));
            }
        }
        Self {
            height,
            width,
            data,
        }
    }
}

/// Rasterises a segmentation on an image of `height` x `width` (pycocotools' rules: polygons
/// are unioned, RLE must already have the image's size).
pub fn decode(seg: &Segmentation, height: u32, width: u32) -> Result<Bitmap> {
    let err = |e: hotcoco::Error| DataError::Request(format!("cannot decode mask: {e}"));
    let rle = match seg {
        Segmentation::Polygons(polys) => {
            hotcoco::mask::fr_polys(polys, height, width).map_err(err)?
        }
        Segmentation::Rle(r) => {
            let [h, w] = r.size;
            if (h, w) != (height, width) {
                return Err(DataError::Request(format!(
                    "RLE size [{h}, {w}] disagrees with the image ([{height}, {width}])"
                )));
            }
            match &r.counts {
                RleCounts::Compressed(s) => hotcoco::mask::rle_from_string(s, h, w).map_err(err)?,
                RleCounts::Uncompressed(c) => hotcoco::Rle {
                    h,
                    w,
                    counts: c.clone(),
                },
            }
        }
    };
    Ok(Bitmap::from_col_major(
        &hotcoco::mask::decode(&rle),
        height,
        width,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rle_round_trip_and_box() {
        let mut m = Bitmap::zeros(5, 7);
        for (y, x) in [(1, 2), (1, 3), (2, 3), (3, 5)] {
            m.data[y * 7 + x] = 1;
        }
        assert_eq!(m.area(), 4);
        assert_eq!(m.bbox(), Some([2.0, 1.0, 4.0, 3.0]));
        let rle = m.to_rle().unwrap();
        let back = decode(&Segmentation::Rle(rle), 5, 7).unwrap();
        assert_eq!(back, m);
        assert_eq!(Bitmap::zeros(3, 3).bbox(), None);
    }

    #[test]
    fn polygon_rasterises_like_pycocotools() {
        // A 4x4 axis-aligned square from (1,1) to (5,5): pycocotools fills 16 pixels.
        let seg = Segmentation::Polygons(vec![vec![1.0, 1.0, 5.0, 1.0, 5.0, 5.0, 1.0, 5.0]]);
        let m = decode(&seg, 8, 8).unwrap();
        assert_eq!(m.area(), 16);
        assert_eq!(m.bbox(), Some([1.0, 1.0, 4.0, 4.0]));
    }

    #[test]
    fn runs_short_of_the_size_leave_the_rest_background() {
        // pycocotools gives such an RLE the area of its runs, decodes the rest from
        // uninitialised memory and never returns from its IoU; we read the rest as background.
        let seg = Segmentation::Rle(Rle {
            size: [40, 50],
            counts: RleCounts::Uncompressed(vec![205, 10, 30, 10]),
        });
        let m = decode(&seg, 40, 50).unwrap();
        assert_eq!((m.height, m.width, m.data.len()), (40, 50, 2000));
        assert_eq!(m.area(), 20);
        assert_eq!(m.bbox(), Some([5.0, 5.0, 2.0, 10.0]));
    }
}
