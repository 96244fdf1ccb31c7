//! Ball detection inside the table: everything that is not cloth, split into discs of the
//! ball radius, each refined to sub-pixel accuracy by a circle fit on colour edges.
//!
//! One submodule per step, run in this order by [`find_balls`]:
//!
//! 1. [`cloth`]: a local cloth colour model: the mean colour of cloth-chromaticity pixels per
//!    8x8 block, smoothed and hole-filled, interpolated bilinearly. It follows lamp pools,
//!    gradients and vignetting, so a pixel is compared with the cloth right next to it.
//! 2. [`foreground`]: a pixel whose colour direction differs from the local cloth's by more
//!    than the cloth's own noise allows, or that is much darker (black ball, pocket) or
//!    brighter (white) than the cloth. Shadows and lamp highlights keep the cloth's colour
//!    direction and stay cloth. The mask is cleaned up and labelled into blobs.
//! 3. [`seeds`]: the ball radius, from circle fits of isolated blobs; then local maxima of the
//!    distance transform of the foreground, at least about a radius deep and a radius apart:
//!    one per ball, also in clusters of touching balls (their union has a waist at every
//!    contact point).
//! 4. [`refine`]: rays from the seed; on each, the strongest colour edge near the expected
//!    radius; a robust circle fit through those edge points; a second round from the fitted
//!    centre. Rays that hit a neighbour of the same colour or a stripe's band edge are
//!    outliers.
//! 5. [`validate`]: edge support, foreground coverage, inside the table, no duplicates.
//! 6. [`smear`]: a blob left without a ball whose shape is one ball smeared along its motion
//!    (an ellipse a ball wide) is that ball, at the ellipse's centre.
//!
//! The steps share only [`crate::detect::geom`] with the table stage, and read the table
//! through [`TableModel`].

mod cloth;
mod foreground;
mod refine;
mod seeds;
mod smear;
mod validate;

use std::time::Instant;

pub(crate) use cloth::ClothModel;

use super::table::TableModel;
use super::DetectError;

/// A packed BGR working image.
#[derive(Debug, Clone, Copy)]
struct Image<'a> {
    /// The pixels, `w * h * 3` bytes.
    px: &'a [u8],
    w: usize,
    h: usize,
}

impl<'a> Image<'a> {
    /// The pixels of ROI row `y` (ROI coordinates).
    fn roi_row(self, roi: Roi, y: usize) -> &'a [u8] {
        let start = (roi.y0 + y) * self.w + roi.x0;
        &self.px[start * 3..(start + roi.rw) * 3]
    }
}

/// The table's region of interest in the working image: every per-pixel buffer of the ball
/// stage is ROI-sized.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Roi {
    x0: usize,
    y0: usize,
    rw: usize,
    rh: usize,
}

impl Roi {
    fn of(table: &TableModel) -> Roi {
        let (x0, y0, rw, rh) = table.roi;
        Roi { x0, y0, rw, rh }
    }
}

/// What the steps after the cloth model read: the frame, the table and the cloth.
struct Work<'a> {
    img: Image<'a>,
    roi: Roi,
    table: &'a TableModel,
    cloth: &'a ClothModel,
}

/// A ball found in the working image.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Found {
    pub x: f32,
    pub y: f32,
    pub r: f32,
    pub support: f32,
    pub rms: f32,
}

/// Output of the ball stage.
#[derive(Debug, Default)]
pub(crate) struct BallStage {
    pub balls: Vec<Found>,
    /// The ball radius used, in working pixels.
    pub radius: f32,
    /// Local cloth colour model, for classification.
    pub cloth: ClothModel,
}

/// Time spent in each timed stage of [`find_balls`], nanoseconds, accumulated over calls.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct StageTimes {
    /// Step 1, the cloth model.
    pub cloth_model: u64,
    /// Step 2 up to the marked foreground (with the cloth's noise).
    pub foreground: u64,
    /// Step 2, clean-up, depth and labels of the foreground.
    pub morphology: u64,
    /// Step 3, the ball radius.
    pub radius: u64,
    /// Steps 3 and 4, seeds and their loose fits.
    pub seeds_fits: u64,
    /// Steps 4 and 5, the final fits and validation.
    pub final_fits: u64,
}

impl StageTimes {
    /// Each stage with its name in the profile, in the order the stages run.
    pub fn named(&self) -> [(&'static str, u64); 6] {
        [
            ("cloth model", self.cloth_model),
            ("foreground", self.foreground),
            ("morphology", self.morphology),
            ("radius", self.radius),
            ("seeds+fits", self.seeds_fits),
            ("final fits", self.final_fits),
        ]
    }
}

/// A stopwatch for consecutive stages.
struct Lap(Instant);

impl Lap {
    fn start() -> Lap {
        Lap(Instant::now())
    }

    /// Nanoseconds since the last lap (or the start); starts the next lap.
    fn split(&mut self) -> u64 {
        let ns = self.0.elapsed().as_nanos() as u64;
        self.0 = Instant::now();
        ns
    }
}

/// Reusable buffers of the ball stage.
#[derive(Default)]
pub(crate) struct BallBuffers {
    cloth: cloth::ClothBuffers,
    fg: foreground::ForegroundBuffers,
    seeds: seeds::SeedScratch,
    fit: refine::FitScratch,
    /// Time spent per stage, accumulated.
    pub times: StageTimes,
}

impl BallBuffers {
    /// The cleaned foreground of the last [`find_balls`] call (table ROI sized, non-zero where
    /// the pixel is not cloth), for the stages that look for other things than balls.
    pub(crate) fn foreground(&self) -> Result<&[u8], DetectError> {
        self.fg.closed()
    }
}

/// Finds the balls on the table in the working image `img` (`w` x `h`, BGR); `radius_hint`
/// is the ball radius measured on earlier frames, if any.
pub(crate) fn find_balls(
    img: &[u8],
    w: usize,
    h: usize,
    table: &TableModel,
    radius_hint: Option<f32>,
    bufs: &mut BallBuffers,
) -> Result<BallStage, DetectError> {
    let img = Image { px: img, w, h };
    let roi = Roi::of(table);
    let mut lap = Lap::start();
    let (mut model, cloth_fraction) = cloth::build(img, roi, table, &mut bufs.cloth);
    bufs.times.cloth_model += lap.split();

    let theta_t2 = cloth::measure_noise(img, roi, &mut model, cloth_fraction, &mut bufs.cloth);
    foreground::mark(
        img,
        roi,
        table,
        &model,
        theta_t2,
        &mut bufs.cloth.row,
        &mut bufs.fg,
    );
    bufs.times.foreground += lap.split();
    let n = foreground::blobs(&mut bufs.fg, roi, table.long_side)?;
    bufs.times.morphology += lap.split();

    let work = Work {
        img,
        roi,
        table,
        cloth: &model,
    };
    let blobs = bufs.fg.blobs(n)?;
    let range = seeds::RadiusRange::of(table);
    let r_est = seeds::estimate_radius(&work, &blobs, range, radius_hint, &mut bufs.fit)?;
    bufs.times.radius += lap.split();

    let (first, r_ball) =
        seeds::seed_all(&work, &blobs, range, r_est, &mut bufs.seeds, &mut bufs.fit)?;
    let t_seeds = lap.split();

    let found = refine::final_fits(&work, first, r_ball, &mut bufs.fit);
    let mut kept = validate::validate(&work, &blobs, found, r_ball);
    smear::add_smeared(&work, &blobs, &mut kept, r_ball)?;
    bufs.times.seeds_fits += t_seeds;
    bufs.times.final_fits += lap.split();
    Ok(BallStage {
        balls: kept,
        radius: r_ball,
        cloth: model,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roi_rows_are_cut_from_the_working_image() {
        // 4x3 image whose blue channel is the pixel index.
        let px: Vec<u8> = (0..12u8).flat_map(|i| [i, 0, 0]).collect();
        let img = Image {
            px: &px,
            w: 4,
            h: 3,
        };
        let roi = Roi {
            x0: 1,
            y0: 1,
            rw: 2,
            rh: 2,
        };
        assert_eq!(img.roi_row(roi, 0), &[5, 0, 0, 6, 0, 0]);
        assert_eq!(img.roi_row(roi, 1), &[9, 0, 0, 10, 0, 0]);
    }

    #[test]
    fn stage_names_follow_the_fields() {
        let t = StageTimes {
            cloth_model: 1,
            foreground: 2,
            morphology: 3,
            radius: 4,
            seeds_fits: 5,
            final_fits: 6,
        };
        let named = t.named();
        assert_eq!(named[0], ("cloth model", 1));
        assert_eq!(named[4], ("seeds+fits", 5));
        assert_eq!(named.map(|(_, ns)| ns), [1, 2, 3, 4, 5, 6]);
    }
}
