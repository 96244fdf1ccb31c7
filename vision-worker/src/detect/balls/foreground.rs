//! Step 2: foreground, and the blobs it forms.
//!
//! A pixel is foreground when its colour direction differs from the local cloth's by more than
//! the cloth's own noise allows, or when it is much darker (black ball, pocket) or brighter
//! (white) than the cloth. Shadows and lamp highlights keep the cloth's colour direction and
//! stay cloth. The mask is then cleaned up, labelled into blobs and its depth measured.

use opencv::core::{self, Mat, Point, Size};
use opencv::imgproc;
use opencv::prelude::*;

use super::cloth::ClothModel;
use super::{Image, Roi};
use crate::detect::geom::{dot3, pixel};
use crate::detect::table::TableModel;
use crate::detect::DetectError;

/// Reusable buffers of the foreground step; after [`blobs`], [`ForegroundBuffers::blobs`]
/// reads them.
#[derive(Default)]
pub(super) struct ForegroundBuffers {
    fg: Vec<u8>,
    /// Foreground pixels much darker than the cloth (black ball, pockets).
    dark: Vec<u8>,
    closed: Mat,
    opened: Mat,
    dt: Mat,
    labels: Mat,
    stats: Mat,
    centroids: Mat,
}

/// The blobs of the foreground, as the later steps read them (all ROI-sized).
pub(super) struct Blobs<'a> {
    /// Number of labels, background (label 0) included.
    pub n: i32,
    stats: &'a Mat,
    /// Blob label per pixel.
    pub labels: &'a [i32],
    /// Distance of each foreground pixel to the nearest background pixel.
    pub dt: &'a [f32],
    /// Foreground much darker than the cloth.
    pub dark: &'a [u8],
    /// The foreground with pinholes closed.
    pub closed: &'a [u8],
}

/// Bounding box and area of one blob, in ROI pixels.
#[derive(Debug, Clone, Copy)]
pub(super) struct BlobBox {
    pub x: usize,
    pub y: usize,
    pub w: usize,
    pub h: usize,
    pub area: f32,
}

impl Blobs<'_> {
    /// Bounding box and area of blob `label` (1..n).
    pub fn bbox(&self, label: i32) -> Result<BlobBox, DetectError> {
        let st = |k: i32| self.stats.at_2d::<i32>(label, k).map(|v| *v as usize);
        Ok(BlobBox {
            x: st(imgproc::CC_STAT_LEFT)?,
            y: st(imgproc::CC_STAT_TOP)?,
            w: st(imgproc::CC_STAT_WIDTH)?,
            h: st(imgproc::CC_STAT_HEIGHT)?,
            area: st(imgproc::CC_STAT_AREA)? as f32,
        })
    }
}

impl ForegroundBuffers {
    /// The cleaned (closed, not yet opened) foreground of the last frame, ROI-sized: thin
    /// objects such as the cue survive in it.
    pub(super) fn closed(&self) -> Result<&[u8], DetectError> {
        Ok(self.closed.data_typed::<u8>()?)
    }

    /// The blobs found by the last [`blobs`] call, which returned `n`.
    pub fn blobs(&self, n: i32) -> Result<Blobs<'_>, DetectError> {
        Ok(Blobs {
            n,
            stats: &self.stats,
            labels: self.labels.data_typed::<i32>()?,
            dt: self.dt.data_typed::<f32>()?,
            dark: &self.dark,
            closed: self.closed.data_typed::<u8>()?,
        })
    }
}

/// Marks the foreground of the table region against the local cloth `model`; `theta_t2` is
/// the squared sine of the largest colour-direction angle of cloth, `row_model` a scratch row.
pub(super) fn mark(
    img: Image<'_>,
    roi: Roi,
    table: &TableModel,
    model: &ClothModel,
    theta_t2: f32,
    row_model: &mut Vec<[f32; 3]>,
    bufs: &mut ForegroundBuffers,
) {
    let Roi { rw, rh, .. } = roi;
    let (s_lo, s_hi) = (0.42f32, 1.6f32);
    let noise = model.noise;

    bufs.fg.clear();
    bufs.fg.resize(rw * rh, 0);
    bufs.dark.clear();
    bufs.dark.resize(rw * rh, 0);
    for y in 0..rh {
        model.row(y, rw, row_model);
        let row = img.roi_row(roi, y);
        let mrow = &table.mask[y * rw..(y + 1) * rw];
        let frow = &mut bufs.fg[y * rw..(y + 1) * rw];
        let drow = &mut bufs.dark[y * rw..(y + 1) * rw];
        for x in 0..rw {
            if mrow[x] == 0 {
                continue;
            }
            let p = pixel(row, x);
            let c = row_model[x];
            let cc = dot3(c, c).max(1.0);
            let pc = dot3(p, c);
            let s = pc / cc;
            let pp = dot3(p, p);
            let sin2 = if pp > 1.0 {
                1.0 - pc * pc / (pp * cc)
            } else {
                0.0
            };
            // Brighter than the local cloth by more than its noise and texture allow: the lit
            // side of a ball of the cloth's own colour (lamp pools are in the model).
            let s_hi = (1.0 + (5.0 * noise / cc.sqrt()).max(0.25)).min(s_hi);
            if !(s_lo..=s_hi).contains(&s) || sin2 > theta_t2 {
                frow[x] = 255;
                drow[x] = u8::from(s < s_lo);
            }
        }
    }
}

/// Cleans the marked foreground up, measures its depth and labels its blobs; returns the
/// number of labels (background included). `long_side` is the table's, in working pixels.
pub(super) fn blobs(
    bufs: &mut ForegroundBuffers,
    roi: Roi,
    long_side: f32,
) -> Result<i32, DetectError> {
    let Roi { rw, rh, .. } = roi;
    // Close pinholes (highlights, number circles in noise), then label and measure depth.
    {
        let src = Mat::new_rows_cols_with_data::<u8>(rh as i32, rw as i32, &bufs.fg)?;
        let k3 = imgproc::get_structuring_element(
            imgproc::MORPH_RECT,
            Size::new(3, 3),
            Point::new(-1, -1),
        )?;
        imgproc::morphology_ex(
            &src,
            &mut bufs.closed,
            imgproc::MORPH_CLOSE,
            &k3,
            Point::new(-1, -1),
            1,
            core::BORDER_CONSTANT,
            imgproc::morphology_default_border_value()?,
        )?;
    }
    // Open away thin structures: the strip of rail the search margin takes in when the cloth
    // region ends at the cushion's outer edge, and the necks between touching balls.
    {
        let r_prior = long_side / 80.0;
        let k = if r_prior >= 5.0 { 5 } else { 3 };
        let kernel = imgproc::get_structuring_element(
            imgproc::MORPH_ELLIPSE,
            Size::new(k, k),
            Point::new(-1, -1),
        )?;
        imgproc::morphology_ex(
            &bufs.closed,
            &mut bufs.opened,
            imgproc::MORPH_OPEN,
            &kernel,
            Point::new(-1, -1),
            1,
            core::BORDER_CONSTANT,
            imgproc::morphology_default_border_value()?,
        )?;
    }
    imgproc::distance_transform(
        &bufs.opened,
        &mut bufs.dt,
        imgproc::DIST_L2,
        imgproc::DIST_MASK_5,
        core::CV_32F,
    )?;
    let n = imgproc::connected_components_with_stats(
        &bufs.opened,
        &mut bufs.labels,
        &mut bufs.stats,
        &mut bufs.centroids,
        8,
        core::CV_32S,
    )?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_disc_is_one_blob_as_deep_as_its_radius() {
        let roi = Roi {
            x0: 0,
            y0: 0,
            rw: 60,
            rh: 40,
        };
        let fg = (0..roi.rw * roi.rh)
            .map(|i| {
                let (x, y) = ((i % roi.rw) as f32, (i / roi.rw) as f32);
                let inside = (x - 30.0).powi(2) + (y - 20.0).powi(2) <= 100.0;
                if inside {
                    255
                } else {
                    0
                }
            })
            .collect();
        let mut bufs = ForegroundBuffers {
            fg,
            dark: vec![0; roi.rw * roi.rh],
            ..ForegroundBuffers::default()
        };
        let n = blobs(&mut bufs, roi, 400.0).unwrap();
        assert_eq!(n, 2, "background and the disc");
        let b = bufs.blobs(n).unwrap();
        let bb = b.bbox(1).unwrap();
        // The opening trims the one-pixel tips of the disc: 19 to 21 pixels across.
        assert!(
            (20..=21).contains(&bb.x) && (10..=11).contains(&bb.y),
            "{bb:?}"
        );
        assert!(
            (19..=21).contains(&bb.w) && (19..=21).contains(&bb.h),
            "{bb:?}"
        );
        assert!((bb.area - 317.0).abs() < 20.0, "{bb:?}");
        let depth = b.dt[20 * roi.rw + 30];
        assert!((9.0..=11.5).contains(&depth), "{depth}");
        assert_eq!(b.labels[20 * roi.rw + 30], 1);
        assert_eq!(b.labels[0], 0);
    }
}
