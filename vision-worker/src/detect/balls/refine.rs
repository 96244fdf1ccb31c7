//! Step 4: refinement of a circle to sub-pixel accuracy.
//!
//! Rays from the seed; on each, the strongest colour edge near the expected radius; a robust
//! circle fit through those edge points; a second round from the fitted centre. Rays that hit a
//! neighbour of the same colour or a stripe's band edge are outliers. The final fits hold the
//! radius close to the common one.

use tracing::trace;

use super::cloth::ClothModel;
use super::{Found, Image, Work};
use crate::detect::geom::{dot3, fit_circle, sample, P2};

/// Rays cast from each seed.
const RAYS: usize = 32;

/// What to refine and how.
#[derive(Debug, Clone, Copy)]
pub(super) struct RefineRequest {
    /// The starting circle `(x, y, r)` in working pixels; a fit that wanders more than about
    /// a radius from its centre is rejected.
    pub start: (f32, f32, f32),
    /// The expected radius: the edge search spans 0.45 to 1.6 times it.
    pub r_prior: f32,
    /// Smallest and largest radius the fit may reach.
    pub bounds: (f32, f32),
    /// Pull of the fitted radius towards `r_prior`, in edge points (0 = free).
    pub pull: f32,
    /// Rounds of edge search and fit, each from the previous fit.
    pub rounds: usize,
}

/// Scratch vectors of the circle fits, reused from fit to fit.
#[derive(Default)]
pub(super) struct FitScratch {
    pts: Vec<P2>,
    wts: Vec<f32>,
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

/// Refines the circle of `req` on `img` against the local cloth `model`.
///
/// On each ray the edge is where the colour stops being ball and becomes cloth (the steepest
/// fall of the cloth distance), which ignores a stripe's band edges and the ball's own
/// shading; rays that meet another ball instead of cloth take the strongest colour edge.
pub(super) fn refine(
    img: Image<'_>,
    model: &ClothModel,
    req: &RefineRequest,
    scratch: &mut FitScratch,
) -> Option<Found> {
    let RefineRequest {
        start,
        r_prior,
        bounds,
        pull,
        rounds,
    } = *req;
    let FitScratch { pts, wts } = scratch;
    let Image { px, w, h } = img;
    let (sx, sy, _) = start;
    let (mut cx, mut cy, mut cr) = start;
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
                prof[i] = sample(px, w, h, cx + t * dx, cy + t * dy);
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
            pull,
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

/// Fits each seeded circle of `first` again with the radius held close to the common
/// `r_ball`, and keeps the fits that look like a ball's outline. Each entry of `first` says
/// whether its blob is open to the table's rim.
pub(super) fn final_fits(
    work: &Work<'_>,
    first: Vec<(Found, bool)>,
    r_ball: f32,
    scratch: &mut FitScratch,
) -> Vec<Found> {
    let mut found: Vec<Found> = Vec::new();
    for (f0, edge_blob) in first {
        let bounds = (0.82 * r_ball, 1.2 * r_ball);
        // A clean outline of about the common radius needs no second look.
        let clean =
            f0.support >= 0.9 && f0.rms <= 0.06 * f0.r && (f0.r / r_ball - 1.0).abs() <= 0.05;
        let refit = if clean {
            Some(f0)
        } else {
            let req = RefineRequest {
                start: (f0.x, f0.y, r_ball),
                r_prior: r_ball,
                bounds,
                pull: 2.0,
                rounds: 1,
            };
            refine(work.img, work.cloth, &req, scratch)
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
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rays_are_unit_and_evenly_spread() {
        let d = ray_dirs();
        assert!(d.iter().all(|(x, y)| (x * x + y * y - 1.0).abs() < 1e-6));
        assert!((d[0].0 - 1.0).abs() < 1e-6 && d[0].1.abs() < 1e-6);
        assert!((d[RAYS / 4].1 - 1.0).abs() < 1e-6, "a quarter turn is +y");
    }

    #[test]
    fn cloth_distance_ignores_shading_but_not_colour() {
        let cloth = [40.0, 120.0, 30.0];
        let inv_cc = 1.0 / dot3(cloth, cloth);
        assert!(cloth_distance(cloth, cloth, inv_cc) < 1e-3);
        let shadow = [28.0, 84.0, 21.0];
        assert!(cloth_distance(shadow, cloth, inv_cc) < 1e-3);
        let red = [30.0, 30.0, 200.0];
        assert!(cloth_distance(red, cloth, inv_cc) > 100.0);
    }
}
