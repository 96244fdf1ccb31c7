//! Step 3: the ball radius, and seeds for the balls of that radius.
//!
//! The radius comes from circle fits of round, isolated blobs. Seeds are local maxima of the
//! distance transform of the foreground, at least about a radius deep and a radius apart: one
//! per ball, also in clusters of touching balls (their union has a waist at every contact
//! point); inside clusters, the outlines against the neighbours also vote for centres. Each
//! seed is fitted loosely (step 4), and everything is seeded again when the measured radius
//! differs much from the estimate.

use tracing::trace;

use super::foreground::{BlobBox, Blobs};
use super::refine::{refine, FitScratch, RefineRequest};
use super::{Found, Image, Work};
use crate::detect::geom::median;
use crate::detect::table::TableModel;
use crate::detect::DetectError;

/// Fraction of a full circle's edge votes a voted seed needs.
const MIN_VOTES: f32 = 0.33;

/// The ball radii a table allows, in working pixels.
#[derive(Debug, Clone, Copy)]
pub(super) struct RadiusRange {
    /// The radius on a table of the usual proportions.
    pub prior: f32,
    /// Smallest plausible radius.
    pub lo: f32,
    /// Largest plausible radius.
    pub hi: f32,
}

impl RadiusRange {
    /// The table size bounds the ball size (7 to 9 ft tables and their cushions).
    pub fn of(table: &TableModel) -> RadiusRange {
        RadiusRange {
            prior: table.long_side / (2.0 * 40.0),
            lo: table.long_side / (2.0 * 52.0),
            hi: table.long_side / (2.0 * 30.0),
        }
    }
}

/// Reusable buffers of the seeding step.
#[derive(Default)]
pub(super) struct SeedScratch {
    /// Seeds of one blob: (rank, x, y) in ROI pixels, best rank first once sorted.
    seeds: Vec<(f32, usize, usize)>,
    /// Edge votes over one blob's box.
    votes: Vec<f32>,
}

/// Estimates the ball radius: circle fits of round, isolated blobs measure it; a `hint` from
/// earlier frames helps when few blobs are isolated; the blob areas (biased by shadows) are
/// the fallback.
pub(super) fn estimate_radius(
    work: &Work<'_>,
    blobs: &Blobs<'_>,
    range: RadiusRange,
    hint: Option<f32>,
    fit: &mut FitScratch,
) -> Result<f32, DetectError> {
    let RadiusRange {
        prior: r_prior,
        lo: r_lo,
        hi: r_hi,
    } = range;
    let (x0, y0, rw) = (work.roi.x0, work.roi.y0, work.roi.rw);
    let mut area_radii = Vec::new();
    let mut fit_radii = Vec::new();
    for l in 1..blobs.n {
        let b = blobs.bbox(l)?;
        let (bx, by, bw, bh, area) = (b.x, b.y, b.w, b.h, b.area);
        let r = (area / std::f32::consts::PI).sqrt();
        let aspect = bw as f32 / bh.max(1) as f32;
        let fill = area / (bw * bh).max(1) as f32;
        if !((r_lo * 0.85..=r_hi * 1.15).contains(&r)
            && (0.75..=1.33).contains(&aspect)
            && (0.6..=0.9).contains(&fill))
        {
            continue;
        }
        // A pocket is a round dark blob on the rim, often larger than a ball: it must not
        // set the radius (in a rack scene, two middle pockets outvote the one free ball).
        let (contact, dark_px) = rim_contact(work, blobs, l, b);
        if contact as f32 >= r || (contact > 0 && dark_px as f32 >= 0.5 * area) {
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
                let v = blobs.dt[y * rw + x];
                if v > best.0 {
                    best = (v, x, y);
                }
            }
        }
        let (sx, sy) = ((best.1 + x0) as f32, (best.2 + y0) as f32);
        let r0 = r.clamp(r_lo, r_hi);
        let req = RefineRequest {
            start: (sx, sy, r0),
            r_prior: r0,
            bounds: (0.85 * r_lo, 1.15 * r_hi),
            pull: 0.0,
            rounds: 2,
        };
        if let Some(f) = refine(work.img, work.cloth, &req, fit) {
            if f.support >= 0.7 && f.rms <= 0.1 * f.r {
                fit_radii.push(f.r);
            }
        }
    }
    let r_est = match (median(&mut fit_radii), hint, median(&mut area_radii)) {
        (Some(m), Some(hint), _) if fit_radii.len() < 3 && (r_lo..=r_hi).contains(&hint) => {
            0.5 * (m + hint)
        }
        (Some(m), _, _) => m,
        (None, Some(hint), _) if (r_lo..=r_hi).contains(&hint) => hint,
        (None, _, Some(a)) => a.clamp(r_lo, r_hi),
        _ => r_prior,
    };
    trace!(r_prior, r_lo, r_hi, ?fit_radii, r_est, "ball radius");
    Ok(r_est)
}

/// Pixels of blob `l` (box `b`) on the rim of the table region, and those much darker than
/// the cloth.
fn rim_contact(work: &Work<'_>, blobs: &Blobs<'_>, l: i32, b: BlobBox) -> (usize, usize) {
    let super::Roi { rw, rh, .. } = work.roi;
    let mask = &work.table.mask;
    let (mut contact, mut dark_px) = (0usize, 0usize);
    for y in b.y..b.y + b.h {
        for x in b.x..b.x + b.w {
            let i = y * rw + x;
            if blobs.labels[i] != l {
                continue;
            }
            dark_px += usize::from(blobs.dark[i] != 0);
            contact += usize::from(on_rim(mask, rw, rh, x, y));
        }
    }
    (contact, dark_px)
}

/// Whether ROI pixel (`x`, `y`) has a 4-neighbour outside the table region `mask` (or the ROI).
fn on_rim(mask: &[u8], rw: usize, rh: usize, x: usize, y: usize) -> bool {
    let outside = |dx: i32, dy: i32| {
        let (nx, ny) = (x as i32 + dx, y as i32 + dy);
        nx < 0
            || ny < 0
            || nx >= rw as i32
            || ny >= rh as i32
            || mask[ny as usize * rw + nx as usize] == 0
    };
    outside(1, 0) || outside(-1, 0) || outside(0, 1) || outside(0, -1)
}

/// Seeds every blob for balls of radius `r_est` and fits each seed loosely; when the fits
/// measure a radius more than 7% off, seeds again for that one. Returns the fits, each with
/// whether its blob is open to the table's rim, and the measured common radius.
pub(super) fn seed_all(
    work: &Work<'_>,
    blobs: &Blobs<'_>,
    range: RadiusRange,
    r_est: f32,
    scratch: &mut SeedScratch,
    fit: &mut FitScratch,
) -> Result<(Vec<(Found, bool)>, f32), DetectError> {
    let (r_lo, r_hi) = (range.lo, range.hi);
    let mut first = seed_and_fit(work, blobs, r_est, scratch, fit)?;
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
        first = seed_and_fit(work, blobs, r_ball, scratch, fit)?;
        let mut radii = good(&first);
        r_ball = median(&mut radii).map_or(r_ball, |m| m.clamp(r_lo, r_hi));
    }
    Ok((first, r_ball))
}

/// Seeds every blob for balls of radius `r_est` and fits each seed loosely; returns the fits
/// and whether their blob is open to the table's rim.
fn seed_and_fit(
    work: &Work<'_>,
    blobs: &Blobs<'_>,
    r_est: f32,
    scratch: &mut SeedScratch,
    fit: &mut FitScratch,
) -> Result<Vec<(Found, bool)>, DetectError> {
    let super::Roi { x0, y0, rw, rh } = work.roi;
    let (table, dt, labels, dark) = (work.table, blobs.dt, blobs.labels, blobs.dark);
    let mut first: Vec<(Found, bool)> = Vec::new();
    let ball_area = std::f32::consts::PI * r_est * r_est;
    for l in 1..blobs.n {
        let b = blobs.bbox(l)?;
        let area = b.area;
        if area < 0.3 * ball_area || area > 80.0 * ball_area {
            continue;
        }
        let (bx, by, bw, bh) = (b.x, b.y, b.w, b.h);
        // Pixels of the blob on the rim of the table region: a pocket bites into the cloth
        // along a long chord, a ball frozen to a cushion touches it along a short one.
        let mut contact = 0usize;
        let mut dark_px = 0usize;
        scratch.seeds.clear();
        for y in by..by + bh {
            for x in bx..bx + bw {
                let i = y * rw + x;
                if labels[i] != l {
                    continue;
                }
                dark_px += usize::from(dark[i] != 0);
                contact += usize::from(on_rim(&table.mask, rw, rh, x, y));
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
                    scratch.seeds.push((v, x, y));
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
                work.img,
                (bx + x0, by + y0, bw, bh),
                r_est,
                work.cloth.noise,
                (x0, y0),
                scratch,
            );
        }
        scratch.seeds.sort_by(|a, b| b.0.total_cmp(&a.0));
        // Non-maximum suppression within each kind of seed: a distance-transform peak between
        // balls of a cluster must not hide the vote peak of the ball next to it (the final
        // de-duplication keeps the better fit).
        let mut accepted: Vec<(f32, f32, bool)> = Vec::new();
        for &(rank, x, y) in scratch.seeds.iter() {
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
            let req = RefineRequest {
                start: (sx, sy, r_est),
                r_prior: r_est,
                bounds: (0.7 * r_est, 1.4 * r_est),
                pull: 0.5,
                rounds: 2,
            };
            if let Some(f) = refine(work.img, work.cloth, &req, fit) {
                first.push((f, edge_blob));
            }
        }
    }

    Ok(first)
}

/// Adds to `scratch.seeds` the centres voted for by the colour edges inside the working-image
/// box `(x, y, w, h)`: each edge pixel votes at about one radius `r` along its gradient, both
/// ways; local maxima with at least [`MIN_VOTES`] of a full circle's votes are seeds. Seeds
/// are in ROI coordinates (`(rx0, ry0)` is the ROI origin) like the distance-transform ones,
/// ranked after them (negative rank, stronger first).
fn vote_seeds(
    img: Image<'_>,
    (bx, by, bw, bh): (usize, usize, usize, usize),
    r: f32,
    noise: f32,
    (rx0, ry0): (usize, usize),
    scratch: &mut SeedScratch,
) {
    let (img, w) = (img.px, img.w);
    let SeedScratch { seeds, votes } = scratch;
    let pad = (1.2 * r).ceil() as usize;
    let (ax, ay) = (bx.saturating_sub(pad).max(1), by.saturating_sub(pad).max(1));
    let h_img = img.len() / (3 * w);
    let (ex, ey) = ((bx + bw + pad).min(w - 1), (by + bh + pad).min(h_img - 1));
    let (vw, vh) = (ex - ax, ey - ay);
    votes.clear();
    votes.resize(vw * vh, 0.0);
    let g_min2 = (6.0 * noise).max(20.0).powi(2);
    let radii = [0.88 * r, r, 1.12 * r];
    for y in by.max(1)..(by + bh).min(h_img - 1) {
        for x in bx.max(1)..(bx + bw).min(w - 1) {
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
    let thr = MIN_VOTES * std::f32::consts::TAU * r;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_disc_outline_votes_for_its_centre() {
        // A white disc of radius 10 on black, 64x48.
        let (w, h) = (64usize, 48usize);
        let mut px = vec![0u8; w * h * 3];
        for y in 0..h {
            for x in 0..w {
                let d = ((x as f32 - 30.0).powi(2) + (y as f32 - 22.0).powi(2)).sqrt();
                if d <= 10.0 {
                    px[(y * w + x) * 3..(y * w + x) * 3 + 3].fill(255);
                }
            }
        }
        let img = Image { px: &px, w, h };
        let mut scratch = SeedScratch::default();
        vote_seeds(img, (15, 7, 31, 31), 10.0, 1.0, (5, 2), &mut scratch);
        assert!(!scratch.seeds.is_empty());
        // The strongest vote (the highest rank, -1/votes) is at the centre.
        let best = scratch
            .seeds
            .iter()
            .max_by(|a, b| a.0.total_cmp(&b.0))
            .copied();
        let (rank, x, y) = best.unwrap();
        assert!(rank < 0.0, "voted seeds rank below depth seeds");
        assert!(
            (x as i32 - 25).abs() <= 1 && (y as i32 - 20).abs() <= 1,
            "{:?}",
            scratch.seeds
        );
    }
}
