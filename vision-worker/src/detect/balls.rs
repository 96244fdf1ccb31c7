//! Ball detection inside the table: everything that is not cloth, split into discs of the
//! ball radius, each refined to sub-pixel accuracy by a circle fit on colour edges.
//!
//! 1. A local cloth colour model: the mean colour of cloth-chromaticity pixels per 8x8 block,
//!    smoothed and hole-filled, interpolated bilinearly. It follows lamp pools, gradients and
//!    vignetting, so a pixel is compared with the cloth right next to it.
//! 2. Foreground: a pixel whose colour direction differs from the local cloth's by more than
//!    the cloth's own noise allows, or that is much darker (black ball, pocket) or brighter
//!    (white) than the cloth. Shadows and lamp highlights keep the cloth's colour direction
//!    and stay cloth.
//! 3. Seeds: local maxima of the distance transform of the foreground, at least about a
//!    radius deep and a radius apart: one per ball, also in clusters of touching balls (their
//!    union has a waist at every contact point).
//! 4. Refinement: rays from the seed; on each, the strongest colour edge near the expected
//!    radius; a robust circle fit through those edge points; a second round from the fitted
//!    centre. Rays that hit a neighbour of the same colour or a stripe's band edge are outliers.
//! 5. Validation: edge support, foreground coverage, inside the table, no duplicates.

use std::time::Instant;

use tracing::trace;

use opencv::core::{self, Mat, Point, Size};
use opencv::imgproc;
use opencv::prelude::*;

use super::geom::{convex_inside_dist, dot3, fit_circle, pixel, P2};
use super::table::TableModel;
use super::DetectError;

/// Side of a block of the cloth model, in working pixels.
const BLOCK: usize = 8;
/// Rays cast from each seed.
const RAYS: usize = 32;

/// The local cloth colour, per block, over the table's region of interest.
#[derive(Debug, Clone, Default)]
pub(crate) struct ClothModel {
    x0: usize,
    y0: usize,
    gw: usize,
    gh: usize,
    means: Vec<[f32; 3]>,
    /// Noise of the cloth colour (per channel standard deviation, 8-bit levels).
    pub noise: f32,
}

impl ClothModel {
    /// The cloth colour expected at working-image point `(x, y)`.
    pub fn at(&self, x: f32, y: f32) -> [f32; 3] {
        if self.means.is_empty() {
            return [0.0; 3];
        }
        let gx = ((x - self.x0 as f32) / BLOCK as f32 - 0.5).clamp(0.0, (self.gw - 1) as f32);
        let gy = ((y - self.y0 as f32) / BLOCK as f32 - 0.5).clamp(0.0, (self.gh - 1) as f32);
        let (ix, iy) = (gx as usize, gy as usize);
        let (fx, fy) = (gx - ix as f32, gy - iy as f32);
        let ix1 = (ix + 1).min(self.gw - 1);
        let iy1 = (iy + 1).min(self.gh - 1);
        let m = |i: usize, j: usize| self.means[j * self.gw + i];
        let mut out = [0.0; 3];
        for (c, o) in out.iter_mut().enumerate() {
            let top = m(ix, iy)[c] * (1.0 - fx) + m(ix1, iy)[c] * fx;
            let bot = m(ix, iy1)[c] * (1.0 - fx) + m(ix1, iy1)[c] * fx;
            *o = top * (1.0 - fy) + bot * fy;
        }
        out
    }
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
    /// Fraction of the table region that looked like cloth (drops when the table moved).
    pub cloth_fraction: f32,
    /// The ball radius used, in working pixels.
    pub radius: f32,
    /// Local cloth colour model, for classification.
    pub cloth: ClothModel,
}

/// Reusable buffers of the ball stage.
#[derive(Default)]
pub(crate) struct BallBuffers {
    candidate: Vec<u8>,
    fg: Vec<u8>,
    /// Foreground pixels much darker than the cloth (black ball, pockets).
    dark: Vec<u8>,
    grid: Vec<[f32; 4]>,
    grid2: Vec<[f32; 4]>,
    row: Vec<[f32; 3]>,
    angles: Vec<f32>,
    closed: Mat,
    opened: Mat,
    dt: Mat,
    labels: Mat,
    stats: Mat,
    centroids: Mat,
    pts: Vec<P2>,
    wts: Vec<f32>,
    seeds: Vec<(f32, usize, usize)>,
    votes: Vec<f32>,
    /// Time spent per stage (see [`STAGES`]), nanoseconds, accumulated.
    pub prof: [u64; 6],
}

/// Names of the timed stages of [`find_balls`].
pub(crate) const STAGES: [&str; 6] = [
    "cloth model",
    "foreground",
    "morphology",
    "radius",
    "seeds+fits",
    "final fits",
];

/// Bilinear BGR sample of a working image at `(x, y)` (clamped to the image).
#[inline]
pub(crate) fn sample(img: &[u8], w: usize, h: usize, x: f32, y: f32) -> [f32; 3] {
    let x = x.clamp(0.0, (w - 1) as f32 - 0.001);
    let y = y.clamp(0.0, (h - 1) as f32 - 0.001);
    let (ix, iy) = (x as usize, y as usize);
    let (fx, fy) = (x - ix as f32, y - iy as f32);
    let o = (iy * w + ix) * 3;
    let o2 = o + w * 3;
    let mut out = [0.0; 3];
    for (c, v) in out.iter_mut().enumerate() {
        let top = img[o + c] as f32 * (1.0 - fx) + img[o + 3 + c] as f32 * fx;
        let bot = img[o2 + c] as f32 * (1.0 - fx) + img[o2 + 3 + c] as f32 * fx;
        *v = top * (1.0 - fy) + bot * fy;
    }
    out
}

/// Builds the local cloth model over the table's region.
fn cloth_model(
    img: &[u8],
    w: usize,
    table: &TableModel,
    bufs: &mut BallBuffers,
) -> (ClothModel, f32) {
    let (x0, y0, rw, rh) = table.roi;
    let gw = rw.div_ceil(BLOCK);
    let gh = rh.div_ceil(BLOCK);
    bufs.grid.clear();
    bufs.grid.resize(gw * gh, [0.0; 4]);
    bufs.candidate.clear();
    bufs.candidate.resize(rw * rh, 0);
    let cl = &table.cloth;
    let tol2 = (cl.tol * 1.2).powi(2);
    let lo = (0.15 * cl.intensity).max(24.0);
    let mut inside = 0usize;
    let mut cloth_px = 0usize;
    for y in 0..rh {
        let row = &img[((y0 + y) * w + x0) * 3..((y0 + y) * w + x0 + rw) * 3];
        let mrow = &table.mask[y * rw..(y + 1) * rw];
        let crow = &mut bufs.candidate[y * rw..(y + 1) * rw];
        let grow = &mut bufs.grid[(y / BLOCK) * gw..(y / BLOCK + 1) * gw];
        for x in 0..rw {
            if mrow[x] == 0 {
                continue;
            }
            inside += 1;
            let [b, g, r] = pixel(row, x);
            if b + g + r < lo || cl.chroma_dist2(b, g, r) >= tol2 {
                continue;
            }
            cloth_px += 1;
            crow[x] = 1;
            let cell = &mut grow[x / BLOCK];
            cell[0] += b;
            cell[1] += g;
            cell[2] += r;
            cell[3] += 1.0;
        }
    }
    let cloth_fraction = if inside > 0 {
        cloth_px as f32 / inside as f32
    } else {
        0.0
    };
    // Normalised 3x3 box smoothing of the block sums, then fill empty blocks from neighbours.
    bufs.grid2.clear();
    bufs.grid2.resize(gw * gh, [0.0; 4]);
    for gy in 0..gh {
        for gx in 0..gw {
            let mut acc = [0.0f32; 4];
            for j in gy.saturating_sub(1)..=(gy + 1).min(gh - 1) {
                for i in gx.saturating_sub(1)..=(gx + 1).min(gw - 1) {
                    let c = bufs.grid[j * gw + i];
                    // The centre block counts double: the model stays local.
                    let k = if i == gx && j == gy { 2.0 } else { 1.0 };
                    for (a, v) in acc.iter_mut().zip(c.iter()) {
                        *a += k * v;
                    }
                }
            }
            bufs.grid2[gy * gw + gx] = acc;
        }
    }
    let min_count = (BLOCK * BLOCK) as f32 * 0.5;
    let mut means: Vec<Option<[f32; 3]>> = bufs
        .grid2
        .iter()
        .map(|c| (c[3] >= min_count).then(|| [c[0] / c[3], c[1] / c[3], c[2] / c[3]]))
        .collect();
    for _ in 0..(gw.max(gh)) {
        if means.iter().all(Option::is_some) {
            break;
        }
        let prev = means.clone();
        for gy in 0..gh {
            for gx in 0..gw {
                if prev[gy * gw + gx].is_some() {
                    continue;
                }
                let mut acc = [0.0f32; 3];
                let mut n = 0.0;
                for j in gy.saturating_sub(1)..=(gy + 1).min(gh - 1) {
                    for i in gx.saturating_sub(1)..=(gx + 1).min(gw - 1) {
                        if let Some(m) = prev[j * gw + i] {
                            for c in 0..3 {
                                acc[c] += m[c];
                            }
                            n += 1.0;
                        }
                    }
                }
                if n > 0.0 {
                    means[gy * gw + gx] = Some([acc[0] / n, acc[1] / n, acc[2] / n]);
                }
            }
        }
    }
    let fallback = {
        let c = cl.chroma;
        let s = cl.intensity;
        [c[0] * s, c[1] * s, c[2] * s]
    };
    let means: Vec<[f32; 3]> = means.into_iter().map(|m| m.unwrap_or(fallback)).collect();
    (
        ClothModel {
            x0,
            y0,
            gw,
            gh,
            means,
            noise: 0.0,
        },
        cloth_fraction,
    )
}

/// Fills `row` with the cloth model interpolated along working-image row `y` of the ROI.
fn model_row(model: &ClothModel, y: usize, rw: usize, row: &mut Vec<[f32; 3]>) {
    row.clear();
    let gy = ((y as f32 + 0.5) / BLOCK as f32 - 0.5).clamp(0.0, (model.gh - 1) as f32);
    let iy = gy as usize;
    let fy = gy - iy as f32;
    let iy1 = (iy + 1).min(model.gh - 1);
    // The two grid rows blended once; then each pixel blends two neighbours of that.
    let (top, bot) = (
        &model.means[iy * model.gw..(iy + 1) * model.gw],
        &model.means[iy1 * model.gw..(iy1 + 1) * model.gw],
    );
    let mut v = [[0.0f32; 3]; 160];
    let gw = model.gw.min(v.len());
    for i in 0..gw {
        for c in 0..3 {
            v[i][c] = top[i][c] + (bot[i][c] - top[i][c]) * fy;
        }
    }
    let last = (gw - 1) as f32;
    for x in 0..rw {
        let gx = ((x as f32 + 0.5) * (1.0 / BLOCK as f32) - 0.5).clamp(0.0, last);
        let ix = gx as usize;
        let fx = gx - ix as f32;
        let ix1 = (ix + 1).min(gw - 1);
        let (a, b) = (v[ix], v[ix1]);
        row.push([
            a[0] + (b[0] - a[0]) * fx,
            a[1] + (b[1] - a[1]) * fx,
            a[2] + (b[2] - a[2]) * fx,
        ]);
    }
}

/// Finds the balls on the table in the working image `img` (`w` x `h`, BGR).
pub(crate) fn find_balls(
    img: &[u8],
    w: usize,
    h: usize,
    table: &TableModel,
    radius_hint: Option<f32>,
    bufs: &mut BallBuffers,
) -> Result<BallStage, DetectError> {
    let (x0, y0, rw, rh) = table.roi;
    let mut lap = Instant::now();
    let (mut model, cloth_fraction) = cloth_model(img, w, table, bufs);
    bufs.prof[0] += lap.elapsed().as_nanos() as u64;
    lap = Instant::now();

    // Noise of the cloth: the spread of the colour-direction angle on cloth pixels.
    bufs.angles.clear();
    let mut mags = Vec::with_capacity(1024);
    for y in (0..rh).step_by(3) {
        model_row(&model, y, rw, &mut bufs.row);
        let row = &img[((y0 + y) * w + x0) * 3..((y0 + y) * w + x0 + rw) * 3];
        for x in (0..rw).step_by(3) {
            if bufs.candidate[y * rw + x] == 0 {
                continue;
            }
            let p = pixel(row, x);
            let c = bufs.row[x];
            let cc = dot3(c, c);
            let pc = dot3(p, c);
            let s = pc / cc.max(1.0);
            let d = [p[0] - s * c[0], p[1] - s * c[1], p[2] - s * c[2]];
            let dn = dot3(d, d).sqrt();
            bufs.angles.push(dn / (s * cc.sqrt()).max(1.0));
            if mags.len() < 4096 {
                mags.push(dn);
            }
        }
    }
    let theta_med = median(&mut bufs.angles).unwrap_or(0.02);
    // Orthogonal residual of a 3-channel Gaussian lies in a 2-D plane: Rayleigh, median 1.18 s.
    model.noise = median(&mut mags).unwrap_or(2.0) / 1.18;
    let theta_t = (4.0 * theta_med / 1.18).max(0.07);
    let theta_t2 = theta_t * theta_t;
    trace!(
        theta_med,
        theta_t,
        noise = model.noise,
        cloth_fraction,
        "cloth model"
    );
    let (s_lo, s_hi) = (0.42f32, 1.6f32);
    let noise = model.noise;

    bufs.fg.clear();
    bufs.fg.resize(rw * rh, 0);
    bufs.dark.clear();
    bufs.dark.resize(rw * rh, 0);
    for y in 0..rh {
        model_row(&model, y, rw, &mut bufs.row);
        let row = &img[((y0 + y) * w + x0) * 3..((y0 + y) * w + x0 + rw) * 3];
        let mrow = &table.mask[y * rw..(y + 1) * rw];
        let frow = &mut bufs.fg[y * rw..(y + 1) * rw];
        let drow = &mut bufs.dark[y * rw..(y + 1) * rw];
        for x in 0..rw {
            if mrow[x] == 0 {
                continue;
            }
            let p = pixel(row, x);
            let c = bufs.row[x];
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

    bufs.prof[1] += lap.elapsed().as_nanos() as u64;
    lap = Instant::now();
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
        let r_prior = table.long_side / 80.0;
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

    bufs.prof[2] += lap.elapsed().as_nanos() as u64;
    lap = Instant::now();
    // Ball radius: the table size bounds it (7 to 9 ft tables and cushions); circle fits of
    // round, isolated blobs measure it; the blob areas (biased by shadows) are the fallback.
    let r_prior = table.long_side / (2.0 * 40.0);
    let (r_lo, r_hi) = (
        table.long_side / (2.0 * 52.0),
        table.long_side / (2.0 * 30.0),
    );
    let dt = bufs.dt.data_typed::<f32>()?;
    let mut area_radii = Vec::new();
    let mut fit_radii = Vec::new();
    for l in 1..n {
        let st = |k: i32| bufs.stats.at_2d::<i32>(l, k).map(|v| *v as usize);
        let (bx, by, bw, bh, area) = (
            st(imgproc::CC_STAT_LEFT)?,
            st(imgproc::CC_STAT_TOP)?,
            st(imgproc::CC_STAT_WIDTH)?,
            st(imgproc::CC_STAT_HEIGHT)?,
            st(imgproc::CC_STAT_AREA)? as f32,
        );
        let r = (area / std::f32::consts::PI).sqrt();
        let aspect = bw as f32 / bh.max(1) as f32;
        let fill = area / (bw * bh).max(1) as f32;
        if !((r_lo * 0.85..=r_hi * 1.15).contains(&r)
            && (0.75..=1.33).contains(&aspect)
            && (0.6..=0.9).contains(&fill))
        {
            continue;
        }
        area_radii.push(r);
        if fit_radii.len() >= 8 {
            continue;
        }
        // Deepest point of the blob as the seed.
        let mut best = (0.0f32, 0usize, 0usize);
        for y in by..by + bh {
            for x in bx..bx + bw {
                let v = dt[y * rw + x];
                if v > best.0 {
                    best = (v, x, y);
                }
            }
        }
        let (sx, sy) = ((best.1 + x0) as f32, (best.2 + y0) as f32);
        let r0 = r.clamp(r_lo, r_hi);
        if let Some(f) = refine(
            img,
            w,
            h,
            (sx, sy, r0),
            r0,
            (0.85 * r_lo, 1.15 * r_hi),
            0.0,
            2,
            &model,
            &mut bufs.pts,
            &mut bufs.wts,
        ) {
            if f.support >= 0.7 && f.rms <= 0.1 * f.r {
                fit_radii.push(f.r);
            }
        }
    }
    let r_est = match (median(&mut fit_radii), radius_hint, median(&mut area_radii)) {
        (Some(m), Some(hint), _) if fit_radii.len() < 3 && (r_lo..=r_hi).contains(&hint) => {
            0.5 * (m + hint)
        }
        (Some(m), _, _) => m,
        (None, Some(hint), _) if (r_lo..=r_hi).contains(&hint) => hint,
        (None, _, Some(a)) => a.clamp(r_lo, r_hi),
        _ => r_prior,
    };
    trace!(r_prior, r_lo, r_hi, ?fit_radii, r_est, "ball radius");

    bufs.prof[3] += lap.elapsed().as_nanos() as u64;
    lap = Instant::now();
    // Seeds: distance-transform maxima per component (and edge votes in clusters), refined
    // with loose radius bounds; seeded again when the measured radius differs much.
    let labels = bufs.labels.data_typed::<i32>()?;
    let stats = &bufs.stats;
    let mut ctx = SeedCtx {
        img,
        w,
        h,
        table,
        model: &model,
        dt,
        labels,
        dark: &bufs.dark,
        seeds: &mut bufs.seeds,
        votes: &mut bufs.votes,
        pts: &mut bufs.pts,
        wts: &mut bufs.wts,
    };
    let mut first = seed_and_fit(&mut ctx, stats, n, r_est)?;
    let good = |first: &[(Found, bool)]| -> Vec<f32> {
        first
            .iter()
            .filter(|(f, edge)| !edge && f.support >= 0.7 && f.rms <= 0.1 * f.r)
            .map(|(f, _)| f.r)
            .collect()
    };
    let mut radii = good(&first);
    let mut r_ball = median(&mut radii).map_or(r_est, |m| m.clamp(r_lo, r_hi));
    if (r_ball / r_est - 1.0).abs() > 0.07 {
        first = seed_and_fit(&mut ctx, stats, n, r_ball)?;
        let mut radii = good(&first);
        r_ball = median(&mut radii).map_or(r_ball, |m| m.clamp(r_lo, r_hi));
    }
    let SeedCtx { pts, wts, .. } = ctx;

    let t_seeds = lap.elapsed().as_nanos() as u64;
    lap = Instant::now();
    // Final fits with the radius held close to the common one.
    let mut found: Vec<Found> = Vec::new();
    for (f0, edge_blob) in first {
        let bounds = (0.82 * r_ball, 1.2 * r_ball);
        // A clean outline of about the common radius needs no second look.
        let clean =
            f0.support >= 0.9 && f0.rms <= 0.06 * f0.r && (f0.r / r_ball - 1.0).abs() <= 0.05;
        let refit = if clean {
            Some(f0)
        } else {
            refine(
                img,
                w,
                h,
                (f0.x, f0.y, r_ball),
                r_ball,
                bounds,
                2.0,
                1,
                &model,
                pts,
                wts,
            )
        };
        let Some(f) = refit else {
            continue;
        };
        // A radius pinned at a bound means the edges belong to something else.
        let pinned = f.r <= bounds.0 + 0.01 || f.r >= bounds.1 - 0.01;
        trace!(
            x = f.x,
            y = f.y,
            r = f.r,
            r_ball,
            support = f.support,
            rms = f.rms,
            pinned,
            edge_blob,
            "candidate"
        );
        if f.support < 0.45 || f.rms > 0.2 * f.r || pinned {
            continue;
        }
        // In a blob that is open to the table's rim (a pocket, or a ball frozen to the
        // cushion), only well-outlined circles are balls: a pocket is twice as wide.
        if edge_blob && f.support < 0.75 {
            continue;
        }
        found.push(f);
    }

    // Validation: inside the table, mostly foreground, no duplicates.
    let closed = bufs.closed.data_typed::<u8>()?;
    let mut kept: Vec<Found> = Vec::new();
    // Best outlined first: many edges on the circle, close to it.
    let quality = |f: &Found| f.support / (1.0 + (f.rms / (0.08 * f.r)).powi(2));
    found.sort_by(|a, b| quality(b).total_cmp(&quality(a)));
    for f in found {
        // A ball's centre is a radius inside the cloth; the hull is right to a pixel or two.
        if convex_inside_dist(&table.hull, [f.x, f.y]) < 0.2 * f.r {
            continue;
        }
        if coverage(closed, x0, y0, rw, rh, f.x, f.y, 0.7 * f.r) < 0.6 {
            continue;
        }
        // A ball lies on cloth (or against other balls); a circle inside a pocket has more of
        // the pocket's darkness just around it.
        if ring_coverage(&bufs.dark, x0, y0, rw, rh, f.x, f.y, 1.2 * f.r, 1.6 * f.r) > 0.4 {
            continue;
        }
        if kept
            .iter()
            .any(|k| (k.x - f.x).powi(2) + (k.y - f.y).powi(2) < (1.4 * r_ball).powi(2))
        {
            continue;
        }
        kept.push(f);
    }

    bufs.prof[4] += t_seeds;
    bufs.prof[5] += lap.elapsed().as_nanos() as u64;
    Ok(BallStage {
        balls: kept,
        cloth_fraction,
        radius: r_ball,
        cloth: model,
    })
}

/// What seeding needs of the frame and the buffers.
struct SeedCtx<'a> {
    img: &'a [u8],
    w: usize,
    h: usize,
    table: &'a TableModel,
    model: &'a ClothModel,
    dt: &'a [f32],
    labels: &'a [i32],
    dark: &'a [u8],
    seeds: &'a mut Vec<(f32, usize, usize)>,
    votes: &'a mut Vec<f32>,
    pts: &'a mut Vec<P2>,
    wts: &'a mut Vec<f32>,
}

/// Seeds every component for balls of radius `r_est` and fits each seed loosely; returns the
/// fits and whether their component is open to the table's rim.
fn seed_and_fit(
    ctx: &mut SeedCtx<'_>,
    stats: &Mat,
    n: i32,
    r_est: f32,
) -> Result<Vec<(Found, bool)>, DetectError> {
    let (x0, y0, rw, rh) = ctx.table.roi;
    let (img, w, h, table, model, dt, labels, dark) = (
        ctx.img, ctx.w, ctx.h, ctx.table, ctx.model, ctx.dt, ctx.labels, ctx.dark,
    );
    let mut first: Vec<(Found, bool)> = Vec::new();
    let ball_area = std::f32::consts::PI * r_est * r_est;
    for l in 1..n {
        let st = |k: i32| stats.at_2d::<i32>(l, k).map(|v| *v as usize);
        let area = st(imgproc::CC_STAT_AREA)? as f32;
        if area < 0.3 * ball_area || area > 80.0 * ball_area {
            continue;
        }
        let (bx, by, bw, bh) = (
            st(imgproc::CC_STAT_LEFT)?,
            st(imgproc::CC_STAT_TOP)?,
            st(imgproc::CC_STAT_WIDTH)?,
            st(imgproc::CC_STAT_HEIGHT)?,
        );
        // Pixels of the blob on the rim of the table region: a pocket bites into the cloth
        // along a long chord, a ball frozen to a cushion touches it along a short one.
        let mut contact = 0usize;
        let mut dark_px = 0usize;
        ctx.seeds.clear();
        for y in by..by + bh {
            for x in bx..bx + bw {
                let i = y * rw + x;
                if labels[i] != l {
                    continue;
                }
                dark_px += usize::from(dark[i] != 0);
                let outside = |dx: i32, dy: i32| {
                    let (nx, ny) = (x as i32 + dx, y as i32 + dy);
                    nx < 0
                        || ny < 0
                        || nx >= rw as i32
                        || ny >= rh as i32
                        || table.mask[ny as usize * rw + nx as usize] == 0
                };
                if outside(1, 0) || outside(-1, 0) || outside(0, 1) || outside(0, -1) {
                    contact += 1;
                }
                let v = dt[i];
                if v < 0.45 * r_est {
                    continue;
                }
                let mut is_max = true;
                'n: for dy in -1i32..=1 {
                    for dx in -1i32..=1 {
                        let (nx, ny) = (x as i32 + dx, y as i32 + dy);
                        if (dx == 0 && dy == 0)
                            || nx < 0
                            || ny < 0
                            || nx >= rw as i32
                            || ny >= rh as i32
                        {
                            continue;
                        }
                        if dt[ny as usize * rw + nx as usize] > v {
                            is_max = false;
                            break 'n;
                        }
                    }
                }
                if is_max {
                    ctx.seeds.push((v, x, y));
                }
            }
        }
        // A large blob that is mostly much darker than the cloth is a pocket (the eight ball
        // alone is one ball's area), as is one open to the rim: only circles with a clear
        // outline all round are balls in them.
        let pocket_like = area >= 2.2 * ball_area && dark_px as f32 >= 0.6 * area;
        let edge_blob = contact as f32 >= 1.5 * r_est || pocket_like;
        if area > 2.5 * ball_area {
            // A cluster: balls inside it have no cloth around them and no distance-transform
            // peak, but their outlines against their neighbours vote for their centres.
            vote_seeds(
                img,
                w,
                (bx + x0, by + y0, bw, bh),
                r_est,
                model.noise,
                (x0, y0),
                0.33,
                None,
                ctx.votes,
                ctx.seeds,
            );
        }
        ctx.seeds.sort_by(|a, b| b.0.total_cmp(&a.0));
        // Non-maximum suppression within each kind of seed: a distance-transform peak between
        // balls of a cluster must not hide the vote peak of the ball next to it (the final
        // de-duplication keeps the better fit).
        let mut accepted: Vec<(f32, f32, bool)> = Vec::new();
        for &(rank, x, y) in ctx.seeds.iter() {
            let (fx, fy) = ((x + x0) as f32, (y + y0) as f32);
            let voted = rank < 0.0;
            if accepted
                .iter()
                .filter(|a| a.2 == voted)
                .all(|&(ax, ay, _)| (ax - fx).powi(2) + (ay - fy).powi(2) >= (1.25 * r_est).powi(2))
            {
                accepted.push((fx, fy, voted));
            }
        }
        trace!(
            label = l,
            area,
            bx,
            by,
            bw,
            bh,
            contact,
            seeds = accepted.len(),
            "blob"
        );
        for (sx, sy, _) in accepted {
            let bounds = (0.7 * r_est, 1.4 * r_est);
            if let Some(f) = refine(
                img,
                w,
                h,
                (sx, sy, r_est),
                r_est,
                bounds,
                0.5,
                2,
                model,
                ctx.pts,
                ctx.wts,
            ) {
                first.push((f, edge_blob));
            }
        }
    }

    Ok(first)
}

/// Adds to `seeds` the centres voted for by the colour edges inside the working-image box
/// `(x, y, w, h)`: each edge pixel (inside `mask`, box-sized, when given) votes at about one
/// radius along its gradient, both ways; local maxima with at least `min_votes` of a full
/// circle's votes are seeds. Seeds are in ROI coordinates (`(rx0, ry0)` is the ROI origin)
/// like the distance-transform ones, ranked after them (negative rank, stronger first).
#[allow(clippy::too_many_arguments)]
fn vote_seeds(
    img: &[u8],
    w: usize,
    (bx, by, bw, bh): (usize, usize, usize, usize),
    r: f32,
    noise: f32,
    (rx0, ry0): (usize, usize),
    min_votes: f32,
    mask: Option<&[u8]>,
    votes: &mut Vec<f32>,
    seeds: &mut Vec<(f32, usize, usize)>,
) {
    let pad = (1.2 * r).ceil() as usize;
    let (ax, ay) = (bx.saturating_sub(pad).max(1), by.saturating_sub(pad).max(1));
    let h_img = img.len() / (3 * w);
    let (ex, ey) = ((bx + bw + pad).min(w - 1), (by + bh + pad).min(h_img - 1));
    let (vw, vh) = (ex - ax, ey - ay);
    votes.clear();
    votes.resize(vw * vh, 0.0);
    let g_min2 = (6.0 * noise).max(20.0).powi(2);
    let radii = [0.88 * r, r, 1.12 * r];
    // A mask, when given, covers the box itself (it is the table's ROI mask).
    let mask_w = bw;
    for y in by.max(1)..(by + bh).min(h_img - 1) {
        for x in bx.max(1)..(bx + bw).min(w - 1) {
            if let Some(m) = mask {
                // The mask is ROI-sized, like the seeds' coordinates.
                if m[(y - ry0) * mask_w + (x - rx0)] == 0 {
                    continue;
                }
            }
            let o = (y * w + x) * 3;
            let (mut best, mut gx, mut gy) = (0.0f32, 0.0f32, 0.0f32);
            for c in 0..3 {
                let dx = img[o + 3 + c] as f32 - img[o - 3 + c] as f32;
                let dy = img[o + 3 * w + c] as f32 - img[o - 3 * w + c] as f32;
                let m = dx * dx + dy * dy;
                if m > best {
                    (best, gx, gy) = (m, dx, dy);
                }
            }
            if best < g_min2 {
                continue;
            }
            let inv = 1.0 / best.sqrt();
            let (ux, uy) = (gx * inv, gy * inv);
            for &t in &radii {
                for sgn in [-1.0f32, 1.0] {
                    let vx = (x as f32 + sgn * t * ux).round() as isize - ax as isize;
                    let vy = (y as f32 + sgn * t * uy).round() as isize - ay as isize;
                    if vx >= 0 && vy >= 0 && (vx as usize) < vw && (vy as usize) < vh {
                        votes[vy as usize * vw + vx as usize] += 1.0;
                    }
                }
            }
        }
    }
    // 3x3 sum, local maxima above a third of a full circle's votes.
    let thr = min_votes * std::f32::consts::TAU * r;
    let sum3 = |v: &[f32], x: usize, y: usize| -> f32 {
        let mut s = 0.0;
        for j in y.saturating_sub(1)..=(y + 1).min(vh - 1) {
            for i in x.saturating_sub(1)..=(x + 1).min(vw - 1) {
                s += v[j * vw + i];
            }
        }
        s
    };
    for y in 1..vh.saturating_sub(1) {
        for x in 1..vw.saturating_sub(1) {
            // Only centres inside the blob's box.
            let (gx, gy) = (x + ax, y + ay);
            if gx < bx || gy < by || gx >= bx + bw || gy >= by + bh {
                continue;
            }
            let v = sum3(votes, x, y);
            if v < thr {
                continue;
            }
            let mut is_max = true;
            'n: for j in y - 1..=y + 1 {
                for i in x - 1..=x + 1 {
                    if (i != x || j != y) && sum3(votes, i, j) > v {
                        is_max = false;
                        break 'n;
                    }
                }
            }
            if is_max {
                // Ranked below every distance-transform seed (their depth is at most ~r).
                seeds.push((-1.0 / v, gx - rx0, gy - ry0));
            }
        }
    }
}

/// Fraction of foreground pixels of `mask` (ROI-sized) within `r` of `(cx, cy)` (working
/// coordinates).
#[allow(clippy::too_many_arguments)]
fn coverage(
    mask: &[u8],
    x0: usize,
    y0: usize,
    rw: usize,
    rh: usize,
    cx: f32,
    cy: f32,
    r: f32,
) -> f32 {
    let (lx, ly) = (cx - x0 as f32, cy - y0 as f32);
    let xa = (lx - r).floor().max(0.0) as usize;
    let xb = ((lx + r).ceil().max(0.0) as usize).min(rw - 1);
    let ya = (ly - r).floor().max(0.0) as usize;
    let yb = ((ly + r).ceil().max(0.0) as usize).min(rh - 1);
    let (mut inside, mut on) = (0u32, 0u32);
    for y in ya..=yb {
        for x in xa..=xb {
            if (x as f32 - lx).powi(2) + (y as f32 - ly).powi(2) <= r * r {
                inside += 1;
                if mask[y * rw + x] != 0 {
                    on += 1;
                }
            }
        }
    }
    if inside == 0 {
        0.0
    } else {
        on as f32 / inside as f32
    }
}

/// Unit directions of the rays, once.
fn ray_dirs() -> &'static [(f32, f32); RAYS] {
    static DIRS: std::sync::OnceLock<[(f32, f32); RAYS]> = std::sync::OnceLock::new();
    DIRS.get_or_init(|| {
        std::array::from_fn(|k| {
            let a = k as f32 / RAYS as f32 * std::f32::consts::TAU;
            (a.cos(), a.sin())
        })
    })
}

/// Distance of a colour from the local cloth colour `c` lit between 0.6x and 1.4x as
/// strongly (the local model already follows the lighting): near zero on cloth and in soft
/// shadow, large on a ball.
#[inline]
fn cloth_distance(p: [f32; 3], c: [f32; 3], inv_cc: f32) -> f32 {
    let s = (dot3(p, c) * inv_cc).clamp(0.6, 1.4);
    ((p[0] - s * c[0]).powi(2) + (p[1] - s * c[1]).powi(2) + (p[2] - s * c[2]).powi(2)).sqrt()
}

/// Fraction of set pixels of `mask` (ROI-sized) in the ring between `r_in` and `r_out` around
/// `(cx, cy)` (working coordinates); pixels outside the ROI count as unset.
#[allow(clippy::too_many_arguments)]
fn ring_coverage(
    mask: &[u8],
    x0: usize,
    y0: usize,
    rw: usize,
    rh: usize,
    cx: f32,
    cy: f32,
    r_in: f32,
    r_out: f32,
) -> f32 {
    let (lx, ly) = (cx - x0 as f32, cy - y0 as f32);
    let (mut n, mut on) = (0u32, 0u32);
    let ya = (ly - r_out).floor() as i64;
    let yb = (ly + r_out).ceil() as i64;
    let xa = (lx - r_out).floor() as i64;
    let xb = (lx + r_out).ceil() as i64;
    for y in ya..=yb {
        for x in xa..=xb {
            let d2 = (x as f32 - lx).powi(2) + (y as f32 - ly).powi(2);
            if d2 < r_in * r_in || d2 > r_out * r_out {
                continue;
            }
            n += 1;
            if x >= 0
                && y >= 0
                && (x as usize) < rw
                && (y as usize) < rh
                && mask[y as usize * rw + x as usize] != 0
            {
                on += 1;
            }
        }
    }
    if n == 0 {
        0.0
    } else {
        on as f32 / n as f32
    }
}

/// Refines a circle estimate `(x, y, r)`: `rounds` rounds of edge search along rays and a
/// robust fit with the radius pulled towards `r_prior` (weight `lambda`) within `bounds`.
///
/// On each ray the edge is where the colour stops being ball and becomes cloth (the steepest
/// fall of the cloth distance), which ignores a stripe's band edges and the ball's own
/// shading; rays that meet another ball instead of cloth take the strongest colour edge.
#[allow(clippy::too_many_arguments)]
fn refine(
    img: &[u8],
    w: usize,
    h: usize,
    init: (f32, f32, f32),
    r_prior: f32,
    bounds: (f32, f32),
    lambda: f32,
    rounds: usize,
    model: &ClothModel,
    pts: &mut Vec<P2>,
    wts: &mut Vec<f32>,
) -> Option<Found> {
    let (sx, sy, _) = init;
    let (mut cx, mut cy, mut cr) = init;
    let c = model.at(cx, cy);
    let inv_cc = 1.0 / dot3(c, c).max(1.0);
    let tau_c = (4.0 * model.noise).max(0.15 / inv_cc.sqrt());
    let g_min_rgb = (6.0 * model.noise).max(12.0);
    let step = 0.25f32;
    let dirs = ray_dirs();
    let mut fit = None;
    for round in 0..rounds {
        pts.clear();
        wts.clear();
        let (t0, t1) = (0.45 * r_prior, 1.6 * r_prior);
        let n_t = (((t1 - t0) / step) as usize + 1).min(96);
        let sigma = if round == 0 && rounds > 1 {
            0.35 * r_prior
        } else {
            0.2 * r_prior
        };
        let inv_2s2 = 1.0 / (2.0 * sigma * sigma);
        // The radius prior is the same along every ray.
        let mut prior = [0.0f32; 96];
        for (i, p) in prior.iter_mut().enumerate().take(n_t) {
            let t = t0 + i as f32 * step;
            *p = (-(t - cr).powi(2) * inv_2s2).exp();
        }
        let g_min2 = g_min_rgb * g_min_rgb;
        let mut prof = [[0.0f32; 3]; 96];
        let mut dist = [0.0f32; 96];
        let mut sd = [0.0f32; 96];
        let mut sg = [0.0f32; 96];
        for &(dx, dy) in dirs.iter() {
            for i in 0..n_t {
                let t = t0 + i as f32 * step;
                prof[i] = sample(img, w, h, cx + t * dx, cy + t * dy);
                dist[i] = cloth_distance(prof[i], c, inv_cc);
            }
            // The sharpest colour edge near the radius that has cloth just outside it and no
            // cloth just inside it: the ball's outline against the cloth. Shading, a stripe's
            // band edges and highlights have ball on both sides.
            let mut best_d = (0.0f32, 0usize);
            let mut best_g = (0.0f32, 0usize);
            sd[..n_t].fill(0.0);
            sg[..n_t].fill(0.0);
            for i in 2..n_t - 2 {
                let (p, q) = (prof[i + 2], prof[i - 2]);
                let g2 = (p[0] - q[0]).powi(2) + (p[1] - q[1]).powi(2) + (p[2] - q[2]).powi(2);
                if g2 < g_min2 {
                    continue;
                }
                sg[i] = g2.sqrt() * prior[i];
                let outside = dist[(i + 4).min(n_t - 1)];
                let inside = dist[i.saturating_sub(4)];
                if outside <= tau_c && inside > tau_c {
                    sd[i] = sg[i];
                }
                if sd[i] > best_d.0 {
                    best_d = (sd[i], i);
                }
                if sg[i] > best_g.0 {
                    best_g = (sg[i], i);
                }
            }
            let (scores, i, weight) = if best_d.0 > 0.0 {
                (&sd, best_d.1, 1.0)
            } else if best_g.0 > 0.0 {
                (&sg, best_g.1, 0.5)
            } else {
                continue;
            };
            if i < 3 || i + 3 > n_t {
                continue;
            }
            // Sub-sample peak by a parabola through the neighbours.
            let (a0, a1, a2) = (scores[i - 1], scores[i], scores[i + 1]);
            let den = a0 - 2.0 * a1 + a2;
            let off = if den < 0.0 {
                (0.5 * (a0 - a2) / den).clamp(-0.5, 0.5)
            } else {
                0.0
            };
            let t = t0 + (i as f32 + off) * step;
            pts.push([cx + t * dx, cy + t * dy]);
            wts.push(weight);
        }
        let Some(f) = fit_circle(
            pts,
            wts,
            (cx, cy, cr),
            r_prior,
            lambda,
            bounds.0,
            bounds.1,
            0.6,
        ) else {
            trace!(sx, sy, edges = pts.len(), "refine: no circle fits");
            return None;
        };
        // A seed that wandered more than a radius was not this ball's.
        if (f.x - sx).powi(2) + (f.y - sy).powi(2) > (1.2 * r_prior).powi(2) {
            trace!(
                sx,
                sy,
                x = f.x,
                y = f.y,
                "refine: the fit wandered off the seed"
            );
            return None;
        }
        cx = f.x;
        cy = f.y;
        cr = f.r;
        fit = Some(f);
    }
    let f = fit?;
    Some(Found {
        x: f.x,
        y: f.y,
        r: f.r,
        support: f.inliers as f32 / RAYS as f32,
        rms: f.rms,
    })
}

/// Median of `v` (reorders it), `None` when empty.
pub(crate) fn median(v: &mut [f32]) -> Option<f32> {
    if v.is_empty() {
        return None;
    }
    let mid = v.len() / 2;
    Some(*v.select_nth_unstable_by(mid, f32::total_cmp).1)
}
