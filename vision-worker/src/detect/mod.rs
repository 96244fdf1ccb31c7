//! The detector: table, balls and their kinds in one BGR frame.
//!
//! Work happens on a copy of the frame shrunk to about 640 pixels wide (area averaging, which
//! also halves the sensor noise); the table is found on a further halved copy. Ball centres
//! are refined to sub-pixel accuracy on the working image, kinds are read from the full frame.
//! Every buffer is kept in the [`Detector`] and reused, so a steady stream allocates nothing
//! per frame beyond small vectors.
//!
//! A dim frame is first lifted to a normal exposure ([`exposure`]: one gain, and in a really
//! dim room the colour cast taken out too) and smoothed, since the gain lifts the sensor noise
//! too; its table is looked for on a copy smoothed further, so low light changes neither the
//! table nor the dark balls' contrast on the cloth.
//!
//! In a stream ([`Detector::process`]) the table is found once on a clear view and then held
//! ([`table_hold`]): only a table that stops fitting its four edges for several frames is
//! detected again, so a cue, a hand or a player over the table cannot move it. Corners from
//! the configuration ([`Detector::with_table_corners`]) fix it outright. The cue stick is
//! looked for in what the ball stage left over ([`cue`]).

mod balls;
mod classify;
mod cue;
mod exposure;
pub(crate) mod geom;
mod table;
mod table_hold;

use std::time::Instant;

use opencv::core::{Mat, Size};
use opencv::imgproc;
use opencv::prelude::*;

pub use crate::model::KindFeatures;

use crate::model::{Ball, Cue, FrameDetections, Table, TableSource};
use balls::{BallBuffers, BallStage, StageTimes};
use cue::CueBuffers;
use table::{TableBuffers, TableModel};
use table_hold::{TableHold, Verdict};

/// What the detector accepts as a frame: an owned [`Mat`] or one borrowed from a buffer
/// (`BoxedRef<Mat>`, e.g. a slot of the frame segment).
pub trait Frame: MatTraitConst + opencv::core::ToInputArray {}
impl<T: MatTraitConst + opencv::core::ToInputArray> Frame for T {}

/// Why a frame could not be processed.
#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    /// The frame is not an 8-bit 3-channel image of a usable size.
    #[error("unsupported frame: {0}")]
    BadFrame(String),
    /// OpenCV failed (out of memory, or a bug here).
    #[error("opencv: {0}")]
    OpenCv(#[from] opencv::Error),
}

/// Tunables of the detector.
#[derive(Debug, Clone)]
pub struct DetectorParams {
    /// With corners fixed by the configuration, measure the cloth colour again every this
    /// many frames (lighting changes); a found table is held, never re-detected on a timer.
    pub table_every: u32,
    /// Width of the working image the balls are found on.
    pub work_width: u32,
}

impl Default for DetectorParams {
    fn default() -> Self {
        DetectorParams {
            table_every: 30,
            work_width: 640,
        }
    }
}

/// Table and ball detector with reusable buffers. Not `Sync`: one per thread.
pub struct Detector {
    params: DetectorParams,
    work: Mat,
    small: Mat,
    /// The full frame with the exposure gains applied, when the frame was dim.
    full: Mat,
    /// Spare buffer the lifted working image is written to (then smoothed into `work`).
    lifted: Mat,
    /// This frame's exposure gains ([`exposure::gains`]), `None` when it was exposed well.
    gains: Option<[f32; 3]>,
    table: Option<TableModel>,
    source: TableSource,
    hold: TableHold,
    /// Corners fixed by the configuration (full-frame pixels), and the frame size the model
    /// of them was built for.
    fixed: Option<[[f32; 2]; 4]>,
    fixed_for: (usize, usize),
    since_table: u32,
    radius_hint: Option<f32>,
    tb: TableBuffers,
    bb: BallBuffers,
    cb: CueBuffers,
    /// Whether the table was (re-)detected (or rebuilt from fixed corners) in the last call.
    pub last_table_redetected: bool,
    /// Nanoseconds spent in resize, table, classification and the cue, accumulated.
    prof: [u64; 4],
    frames: u64,
}

impl Default for Detector {
    fn default() -> Self {
        Detector::new(DetectorParams::default())
    }
}

/// Working-image geometry of one frame.
#[derive(Debug, Clone, Copy)]
struct Geometry {
    fw: usize,
    fh: usize,
    ww: usize,
    wh: usize,
}

impl Geometry {
    fn to_full(self, p: [f32; 2]) -> [f32; 2] {
        let (kx, ky) = (
            self.fw as f32 / self.ww as f32,
            self.fh as f32 / self.wh as f32,
        );
        [(p[0] + 0.5) * kx - 0.5, (p[1] + 0.5) * ky - 0.5]
    }
    fn scale(self) -> f32 {
        self.fw as f32 / self.ww as f32
    }
}

impl Detector {
    /// A detector with the given parameters.
    pub fn new(params: DetectorParams) -> Self {
        Detector {
            params,
            work: Mat::default(),
            small: Mat::default(),
            full: Mat::default(),
            lifted: Mat::default(),
            gains: None,
            table: None,
            source: TableSource::None,
            hold: TableHold::default(),
            fixed: None,
            fixed_for: (0, 0),
            since_table: 0,
            radius_hint: None,
            tb: TableBuffers::default(),
            bb: BallBuffers::default(),
            cb: CueBuffers::default(),
            last_table_redetected: false,
            prof: [0; 4],
            frames: 0,
        }
    }

    /// The same detector with the playing area fixed to `corners` (frame pixels, clockwise
    /// from the top-left one, as `vision.table_corners`): table detection is skipped.
    pub fn with_table_corners(mut self, corners: [[f32; 2]; 4]) -> Self {
        self.fixed = Some(corners);
        self.table = None;
        self
    }

    /// Where the current table comes from.
    pub fn table_source(&self) -> TableSource {
        self.source
    }

    /// Consecutive frames the held table has not fitted (it is detected again after a few).
    pub fn table_misfits(&self) -> u32 {
        self.hold.misfits()
    }

    /// Detects table and balls in `frame` from scratch (no state from earlier frames): what
    /// the evaluation measures.
    pub fn detect<F: Frame>(&mut self, frame: &F) -> Result<FrameDetections, DetectError> {
        self.table = None;
        self.hold.clear();
        self.radius_hint = None;
        self.process(frame)
    }

    /// Detects the balls and the cue in `frame` on the held table: the table found in an
    /// earlier frame is kept while it fits (see [`table_hold`]), or the fixed corners are used.
    pub fn process<F: Frame>(&mut self, frame: &F) -> Result<FrameDetections, DetectError> {
        let g = self.prepare(frame)?;
        self.last_table_redetected = false;
        let t = Instant::now();
        let r = self.update_table(&g);
        self.prof[1] += t.elapsed().as_nanos() as u64;
        r?;
        self.since_table += 1;
        let Some(stage) = self.run_balls(&g)? else {
            return Ok(FrameDetections {
                table_source: self.source,
                ..FrameDetections::default()
            });
        };
        self.finish(frame, &g, stage)
    }

    /// Brings the table up to date for this frame: the fixed corners, the held table, or a
    /// new detection when there is none or the held one stopped fitting.
    fn update_table(&mut self, g: &Geometry) -> Result<(), DetectError> {
        if let Some(corners) = self.fixed {
            if self.table.is_none()
                || self.since_table >= self.params.table_every
                || self.fixed_for != (g.fw, g.fh)
            {
                self.build_fixed(g, corners)?;
            }
            return Ok(());
        }
        let verdict = match &self.table {
            None => Verdict::Redetect,
            Some(t) => {
                let work = self.work.data_bytes()?;
                self.hold.judge(table_hold::measure(work, g.ww, g.wh, t))
            }
        };
        if verdict == Verdict::Redetect {
            self.redetect_table_inner(g)?;
            match &self.table {
                Some(t) => {
                    let work = self.work.data_bytes()?;
                    self.hold.accept(table_hold::measure(work, g.ww, g.wh, t));
                }
                None => self.hold.clear(),
            }
        }
        self.source = if self.table.is_some() {
            TableSource::Found
        } else {
            TableSource::None
        };
        Ok(())
    }

    /// `small` = the working image at `sw` x `sh` (area-averaged), where the table is sought.
    fn shrink_work(&mut self, sw: usize, sh: usize) -> Result<(), DetectError> {
        imgproc::resize(
            &self.work,
            &mut self.small,
            Size::new(sw as i32, sh as i32),
            0.0,
            0.0,
            imgproc::INTER_AREA,
        )?;
        Ok(())
    }

    /// The table model of the fixed corners, with the cloth colour measured on this frame.
    fn build_fixed(&mut self, g: &Geometry, corners: [[f32; 2]; 4]) -> Result<(), DetectError> {
        let (sw, sh) = (g.ww / 2, g.wh / 2);
        self.shrink_work(sw, sh)?;
        let (kx, ky) = (g.fw as f32 / g.ww as f32, g.fh as f32 / g.wh as f32);
        let work_corners = corners.map(|p| [(p[0] + 0.5) / kx - 0.5, (p[1] + 0.5) / ky - 0.5]);
        let t =
            table::model_from_corners(work_corners, self.small.data_bytes()?, sw, sh, g.ww, g.wh)?;
        if self.fixed_for != (g.fw, g.fh) {
            self.radius_hint = None;
        }
        self.table = t;
        self.source = if self.table.is_some() {
            TableSource::Fixed
        } else {
            TableSource::None
        };
        self.fixed_for = (g.fw, g.fh);
        self.since_table = 0;
        self.last_table_redetected = true;
        Ok(())
    }

    /// Finds only the table in `frame` (the fixed corners, when set).
    pub fn detect_table<F: Frame>(&mut self, frame: &F) -> Result<Option<Table>, DetectError> {
        let g = self.prepare(frame)?;
        match self.fixed {
            Some(c) => self.build_fixed(&g, c)?,
            None => {
                self.redetect_table(&g)?;
                self.source = if self.table.is_some() {
                    TableSource::Found
                } else {
                    TableSource::None
                };
            }
        }
        Ok(self.table.as_ref().map(|t| Table {
            corners: t.playing.map(|c| g.to_full(c)),
        }))
    }

    /// Finds the balls in `frame` on the table found last (by [`Detector::detect_table`] or
    /// an earlier [`Detector::process`]); no balls when there is none.
    pub fn detect_balls<F: Frame>(&mut self, frame: &F) -> Result<Vec<Ball>, DetectError> {
        let g = self.prepare(frame)?;
        let Some(stage) = self.run_balls(&g)? else {
            return Ok(Vec::new());
        };
        Ok(self.finish(frame, &g, stage)?.balls)
    }

    /// Pixel statistics behind the kind of a ball at full-frame `(x, y)` with radius `r`,
    /// judged against the table found last.
    pub fn kind_features<F: Frame>(
        &mut self,
        frame: &F,
        x: f32,
        y: f32,
        r: f32,
    ) -> Result<KindFeatures, DetectError> {
        let g = self.prepare(frame)?;
        let Some(stage) = self.run_balls(&g)? else {
            return Ok(KindFeatures::default());
        };
        let k = g.scale();
        let wp = [(x + 0.5) / k - 0.5, (y + 0.5) / k - 0.5];
        let cloth = stage.cloth.at(wp[0], wp[1]);
        let noise = self.full_noise(stage.cloth.noise, k);
        Ok(classify::features(
            kind_pixels(frame, self.gains, &mut self.full)?,
            g.fw,
            g.fh,
            x,
            y,
            r,
            cloth,
            noise,
        ))
    }

    /// Mean time per frame of each stage since the detector was made (or the last
    /// [`Detector::reset_profile`]), in milliseconds: where the time goes.
    pub fn profile(&self) -> Vec<(&'static str, f64)> {
        let n = self.frames.max(1) as f64 * 1e6;
        let mut out = vec![
            ("resize", self.prof[0] as f64 / n),
            ("table", self.prof[1] as f64 / n),
        ];
        out.extend(
            self.bb
                .times
                .named()
                .into_iter()
                .map(|(s, t)| (s, t as f64 / n)),
        );
        out.push(("classify", self.prof[2] as f64 / n));
        out.push(("cue", self.prof[3] as f64 / n));
        out
    }

    /// Clears the stage times.
    pub fn reset_profile(&mut self) {
        self.prof = [0; 4];
        self.bb.times = StageTimes::default();
        self.frames = 0;
    }

    /// The noise of the full frame the kinds are read from, given `work_noise` measured on the
    /// cloth of the working image `k` times smaller: area averaging halved it, and on a lifted
    /// frame the smoothing took it down further.
    fn full_noise(&self, work_noise: f32, k: f32) -> f32 {
        let kept = if self.gains.is_some() {
            exposure::noise_kept(exposure::DENOISE_SIGMA, exposure::DENOISE_TAPS)
        } else {
            1.0
        };
        work_noise * k / kept
    }

    fn prepare<F: Frame>(&mut self, frame: &F) -> Result<Geometry, DetectError> {
        let t = Instant::now();
        let g = self.prepare_inner(frame);
        self.prof[0] += t.elapsed().as_nanos() as u64;
        self.frames += 1;
        g
    }

    fn prepare_inner<F: Frame>(&mut self, frame: &F) -> Result<Geometry, DetectError> {
        if frame.typ() != opencv::core::CV_8UC3 {
            return Err(DetectError::BadFrame(format!(
                "expected 8-bit BGR (CV_8UC3), got type {}",
                frame.typ()
            )));
        }
        let (fw, fh) = (frame.cols() as usize, frame.rows() as usize);
        if fw < 64 || fh < 48 {
            return Err(DetectError::BadFrame(format!(
                "{fw}x{fh} is too small (at least 64x48)"
            )));
        }
        if !frame.is_continuous() {
            return Err(DetectError::BadFrame(
                "frame rows are not contiguous".into(),
            ));
        }
        // Shrink to about `work_width` (area averaging also cuts the noise); frames up to a
        // third wider are used as they are.
        let target = self.params.work_width.max(160) as f32;
        let factor = fw as f32 / target;
        let (ww, wh) = if factor <= 1.33 {
            (fw, fh)
        } else {
            (
                target as usize,
                ((fh as f32 / factor).round() as usize).max(1),
            )
        };
        if ww == fw {
            frame.copy_to(&mut self.work)?;
        } else {
            imgproc::resize(
                frame,
                &mut self.work,
                Size::new(ww as i32, wh as i32),
                0.0,
                0.0,
                imgproc::INTER_AREA,
            )?;
        }
        self.gains = exposure::gains(self.work.data_bytes()?, ww, wh);
        if let Some(k) = self.gains {
            // The gain lifts the sensor noise with the light: the balls are looked for on a
            // smoothed copy (a normally exposed frame is left exactly as it was).
            scale_channels(&self.work, &mut self.lifted, k)?;
            let s = exposure::DENOISE_SIGMA;
            let taps = exposure::DENOISE_TAPS;
            imgproc::gaussian_blur(
                &self.lifted,
                &mut self.work,
                Size::new(taps, taps),
                s,
                s,
                opencv::core::BORDER_REPLICATE,
            )?;
        }
        Ok(Geometry { fw, fh, ww, wh })
    }

    fn redetect_table(&mut self, g: &Geometry) -> Result<(), DetectError> {
        let t = Instant::now();
        let r = self.redetect_table_inner(g);
        self.prof[1] += t.elapsed().as_nanos() as u64;
        r
    }

    fn redetect_table_inner(&mut self, g: &Geometry) -> Result<(), DetectError> {
        let (sw, sh) = (g.ww / 2, g.wh / 2);
        // A lifted dim frame carries the sensor noise times the gain: the table's edges are
        // looked for on a copy smoothed with a sigma of `blur` in all (the working image is
        // already smoothed with exposure::DENOISE_SIGMA; Gaussians add in squares).
        let smoothed = self.gains.is_some();
        let blur = if smoothed { TABLE_BLUR } else { 0.0 };
        if smoothed {
            let extra = (f64::from(TABLE_BLUR).powi(2) - exposure::DENOISE_SIGMA.powi(2))
                .max(0.09)
                .sqrt();
            imgproc::gaussian_blur(
                &self.work,
                &mut self.full,
                Size::new(5, 5),
                extra,
                extra,
                opencv::core::BORDER_REPLICATE,
            )?;
        }
        let src = if smoothed { &self.full } else { &self.work };
        imgproc::resize(
            src,
            &mut self.small,
            Size::new(sw as i32, sh as i32),
            0.0,
            0.0,
            imgproc::INTER_AREA,
        )?;
        let k = g.ww as f32 / sw as f32;
        let small = self.small.data_bytes()?;
        let work = src.data_bytes()?;
        let mut t = table::detect_table(small, sw, sh, k, work, g.ww, g.wh, blur, &mut self.tb)?;
        if let (true, Some(t)) = (smoothed, t.as_mut()) {
            // The stages after this one see the unsmoothed frame: the cloth's colour tolerance
            // must allow for its real noise (a quarter of the way, geometrically: more keeps the dark balls out).
            self.shrink_work(sw, sh)?;
            if let Some(c) = table::cloth_reference(self.small.data_bytes()?, sw, sh) {
                t.cloth.tol = t.cloth.tol.powf(0.75) * c.tol.powf(0.25);
            }
        }
        if let (Some(new), Some(old)) = (&t, &self.table) {
            if (new.long_side / old.long_side - 1.0).abs() > 0.05 {
                self.radius_hint = None;
            }
        } else {
            self.radius_hint = None;
        }
        self.table = t;
        self.since_table = 0;
        self.last_table_redetected = true;
        Ok(())
    }

    fn run_balls(&mut self, g: &Geometry) -> Result<Option<BallStage>, DetectError> {
        let Some(table) = &self.table else {
            return Ok(None);
        };
        let work = self.work.data_bytes()?;
        let stage = balls::find_balls(work, g.ww, g.wh, table, self.radius_hint, &mut self.bb)?;
        Ok(Some(stage))
    }

    /// Radii, kinds and the cue: what follows the ball stage.
    fn finish<F: Frame>(
        &mut self,
        frame: &F,
        g: &Geometry,
        stage: BallStage,
    ) -> Result<FrameDetections, DetectError> {
        let t_classify = Instant::now();
        let Some(table) = &self.table else {
            return Ok(FrameDetections::default());
        };
        let mut radii: Vec<f32> = stage
            .balls
            .iter()
            .filter(|b| b.support > 0.6)
            .map(|b| b.r)
            .collect();
        if let Some(m) = geom::median(&mut radii) {
            if radii.len() >= 3 {
                self.radius_hint = Some(match self.radius_hint {
                    Some(h) => 0.8 * h + 0.2 * m,
                    None => m,
                });
            }
        }
        let k = g.scale();
        let noise_full = self.full_noise(stage.cloth.noise, k);
        let data = kind_pixels(frame, self.gains, &mut self.full)?;
        let r_ref = stage.radius;
        let balls = stage
            .balls
            .iter()
            .map(|b| {
                let c = g.to_full([b.x, b.y]);
                // Per-ball radii scatter with the edge noise; pull them towards the common one.
                let r = (0.5 * b.r + 0.5 * r_ref) * k;
                let cloth = stage.cloth.at(b.x, b.y);
                // The full frame: a ball is only 20-30 pixels across, and the number
                // circle or a stripe's caps are a few of them.
                let f = classify::features(data, g.fw, g.fh, c[0], c[1], r, cloth, noise_full);
                Ball {
                    x: c[0],
                    y: c[1],
                    radius: r,
                    kind: classify::decide(&f),
                    score: b.support,
                    fit_rms: b.rms / b.r.max(1e-3),
                    features: f,
                }
            })
            .collect();
        self.prof[2] += t_classify.elapsed().as_nanos() as u64;
        let t_cue = Instant::now();
        let found_cue = {
            let inp = cue::CueInput {
                img: self.work.data_bytes()?,
                w: g.ww,
                h: g.wh,
                table,
                fg: self.bb.foreground()?,
                balls: &stage.balls,
                radius: stage.radius,
                cloth: &stage.cloth,
            };
            cue::find_cue(&inp, &mut self.cb)?
        };
        let cue = found_cue.map(|c| {
            let tip = g.to_full(c.tip);
            let ahead = g.to_full([c.tip[0] + 10.0 * c.dir[0], c.tip[1] + 10.0 * c.dir[1]]);
            Cue {
                tip,
                angle_deg: (ahead[1] - tip[1]).atan2(ahead[0] - tip[0]).to_degrees(),
                confidence: c.confidence,
            }
        });
        self.prof[3] += t_cue.elapsed().as_nanos() as u64;
        Ok(FrameDetections {
            table: Some(Table {
                corners: table.playing.map(|c| g.to_full(c)),
            }),
            balls,
            cue,
            table_source: self.source,
        })
    }
}

/// Sigma (working pixels) of all the smoothing the table of a lifted frame is looked for on.
const TABLE_BLUR: f32 = 1.2;

/// The full-frame bytes the kinds are read from: `frame` itself, or on a dim frame (exposure
/// `gains`) the frame lifted into `lifted`.
fn kind_pixels<'a, F: Frame>(
    frame: &'a F,
    gains: Option<[f32; 3]>,
    lifted: &'a mut Mat,
) -> Result<&'a [u8], DetectError> {
    match gains {
        Some(k) => {
            scale_channels(frame, lifted, k)?;
            Ok(lifted.data_bytes()?)
        }
        None => Ok(frame.data_bytes()?),
    }
}

/// `dst` = `src` with its B, G and R channels multiplied by `k` (saturating).
fn scale_channels<F: Frame>(src: &F, dst: &mut Mat, k: [f32; 3]) -> Result<(), DetectError> {
    let s = opencv::core::Scalar::new(k[0] as f64, k[1] as f64, k[2] as f64, 1.0);
    opencv::core::multiply(src, &s, dst, 1.0, -1)?;
    Ok(())
}
