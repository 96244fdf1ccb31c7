//! Step 5: validation of the fitted circles: inside the table, mostly foreground, not in a
//! pocket, not skin, no duplicates.
//!
//! A hand reaching over the table has round fingertips and a palm about a ball wide. Skin is
//! a warm colour of moderate saturation: orange, red and yellow balls are far more saturated,
//! white balls far less, so a circle whose pixels are mostly skin-coloured is a hand.

use tracing::trace;

use super::foreground::Blobs;
use super::{Found, Image, Roi, Work};
use crate::detect::geom::convex_inside_dist;

/// Keeps the circles of `found` that are balls, best outlined first; `r_ball` is the common
/// radius.
pub(super) fn validate(
    work: &Work<'_>,
    blobs: &Blobs<'_>,
    mut found: Vec<Found>,
    r_ball: f32,
) -> Vec<Found> {
    let mut kept: Vec<Found> = Vec::new();
    // Best outlined first: many edges on the circle, close to it.
    let quality = |f: &Found| f.support / (1.0 + (f.rms / (0.08 * f.r)).powi(2));
    found.sort_by(|a, b| quality(b).total_cmp(&quality(a)));
    for f in found {
        if let Some(why) = rejection(work, blobs, &f, r_ball, &kept) {
            trace!(x = f.x, y = f.y, r = f.r, why, "rejected");
            continue;
        }
        kept.push(f);
    }
    kept
}

/// Why the circle `f` is not a ball, or `None` when it is one; `kept` holds the balls
/// already accepted (a circle too close to one of them is the same ball).
pub(super) fn rejection(
    work: &Work<'_>,
    blobs: &Blobs<'_>,
    f: &Found,
    r_ball: f32,
    kept: &[Found],
) -> Option<&'static str> {
    let roi = work.roi;
    // A ball's centre is a radius inside the cloth; the hull is right to a pixel or two.
    if convex_inside_dist(&work.table.hull, [f.x, f.y]) < 0.2 * f.r {
        return Some("outside the table");
    }
    if coverage(blobs.closed, roi, f.x, f.y, 0.7 * f.r) < 0.6 {
        return Some("low coverage");
    }
    // A ball fills its outer ring; a stick (the cue's butt is about a ball wide) crosses
    // it twice and leaves half of it cloth.
    let rr = f.r.max(0.85 * r_ball);
    if ring_coverage(blobs.closed, roi, f.x, f.y, (0.6 * rr, 0.85 * rr)) < RING_MIN {
        return Some("ring not filled");
    }
    if skin_fraction(work.img, f.x, f.y, 0.8 * f.r) > SKIN_MAX {
        return Some("skin");
    }
    // A reflection has soft edges: only a weakly outlined circle can be one.
    if f.support < GLARE_SUPPORT && glare_fraction(work, f.x, f.y, 0.8 * f.r) > GLARE_MAX {
        return Some("glare");
    }
    // A ball lies on cloth (or against other balls); a circle inside a pocket has more of
    // the pocket's darkness just around it.
    if ring_coverage(blobs.dark, roi, f.x, f.y, (1.2 * f.r, 1.6 * f.r)) > 0.4 {
        return Some("in a pocket");
    }
    if kept
        .iter()
        .any(|k| (k.x - f.x).powi(2) + (k.y - f.y).powi(2) < (1.4 * r_ball).powi(2))
    {
        return Some("duplicate");
    }
    None
}

/// A ball's outer ring (0.6-0.85 radii) is at least this much foreground.
const RING_MIN: f32 = 0.75;

/// A circle with more than this share of pixels that are the cloth plus white light is a lamp's
/// reflection on the cloth, not a ball.
const GLARE_MAX: f32 = 0.7;
/// Circles outlined at least this well (edge support) are never taken for a reflection.
const GLARE_SUPPORT: f32 = 0.8;

/// Share of the pixels within `r` of `(cx, cy)` that are the local cloth colour plus some white
/// (a reflection on the felt): `p = c + k (1, 1, 1)` with `k` clearly positive, up to the
/// noise. A white ball on a coloured cloth is not (its colour has none of the cloth's tint);
/// on a grey cloth the two cannot be told apart, so nothing is rejected there.
fn glare_fraction(work: &Work<'_>, cx: f32, cy: f32, r: f32) -> f32 {
    let c0 = work.cloth.at(cx, cy);
    let mean0 = (c0[0] + c0[1] + c0[2]) / 3.0;
    let mx = c0[0].max(c0[1]).max(c0[2]);
    let mn = c0[0].min(c0[1]).min(c0[2]);
    if mx <= 0.0 || (mx - mn) / mx < 0.2 || mean0 < 1.0 {
        return 0.0;
    }
    let img = work.img;
    let noise = work.cloth.noise.max(1.0);
    let xa = (cx - r).floor().max(0.0) as usize;
    let xb = ((cx + r).ceil().max(0.0) as usize).min(img.w - 1);
    let ya = (cy - r).floor().max(0.0) as usize;
    let yb = ((cy + r).ceil().max(0.0) as usize).min(img.h - 1);
    let (mut n, mut glare) = (0u32, 0u32);
    for y in ya..=yb {
        for x in xa..=xb {
            if (x as f32 - cx).powi(2) + (y as f32 - cy).powi(2) > r * r {
                continue;
            }
            n += 1;
            let c = work.cloth.at(x as f32, y as f32);
            let o = (y * img.w + x) * 3;
            let p = [img.px[o], img.px[o + 1], img.px[o + 2]];
            glare += u32::from(is_glare(p, c, noise));
        }
    }
    glare as f32 / n.max(1) as f32
}

/// Whether pixel `p` (BGR) is the cloth colour `c` plus some white light: `p = c + k (1, 1, 1)`
/// with `k` clearly above the `noise`. A channel clipped at white got less than `k`, so the
/// white is measured on the channels below the clip (on a blue cloth the blue channel clips
/// first; taking it into `k` would make the rest look tinted and the glare a ball).
fn is_glare(p: [u8; 3], c: [f32; 3], noise: f32) -> bool {
    let cn = (c[0] * c[0] + c[1] * c[1] + c[2] * c[2]).sqrt();
    let d = [p[0] as f32 - c[0], p[1] as f32 - c[1], p[2] as f32 - c[2]];
    let below = |i: usize| p[i] < 250;
    let n_below = (0..3).filter(|&i| below(i)).count();
    if n_below == 0 {
        // White all through: only light does that on a coloured cloth.
        return true;
    }
    let k = (0..3).filter(|&i| below(i)).map(|i| d[i]).sum::<f32>() / n_below as f32;
    let e2: f32 = (0..3)
        .filter(|&i| below(i))
        .map(|i| (d[i] - k).powi(2))
        .sum();
    // A clipped channel must not have more added than the others.
    let clipped_ok = (0..3).all(|i| below(i) || d[i] <= k + 2.5 * noise);
    let tol = (2.5 * noise).max(0.06 * cn);
    k > 6.0 * noise && e2 <= tol * tol && clipped_ok
}

/// A circle with more than this share of skin-coloured pixels is a hand, not a ball.
const SKIN_MAX: f32 = 0.45;

/// Whether a BGR colour is skin-like: red above green above blue, a hue of about 5-30 degrees
/// and a saturation of 0.15-0.62, not too dark.
fn is_skin(b: f32, g: f32, r: f32) -> bool {
    if !(r > g && g > b) || r < 50.0 {
        return false;
    }
    let chroma = r - b;
    let sat = chroma / r;
    let hue = 60.0 * (g - b) / chroma.max(1.0);
    chroma >= 20.0 && (0.15..=0.62).contains(&sat) && (5.0..=30.0).contains(&hue)
}

/// Share of skin-coloured pixels within `r` of `(cx, cy)` (working coordinates).
fn skin_fraction(img: Image<'_>, cx: f32, cy: f32, r: f32) -> f32 {
    let xa = (cx - r).floor().max(0.0) as usize;
    let xb = ((cx + r).ceil().max(0.0) as usize).min(img.w - 1);
    let ya = (cy - r).floor().max(0.0) as usize;
    let yb = ((cy + r).ceil().max(0.0) as usize).min(img.h - 1);
    let (mut n, mut skin) = (0u32, 0u32);
    for y in ya..=yb {
        for x in xa..=xb {
            if (x as f32 - cx).powi(2) + (y as f32 - cy).powi(2) > r * r {
                continue;
            }
            let o = (y * img.w + x) * 3;
            n += 1;
            skin += u32::from(is_skin(
                img.px[o] as f32,
                img.px[o + 1] as f32,
                img.px[o + 2] as f32,
            ));
        }
    }
    skin as f32 / n.max(1) as f32
}

/// Fraction of foreground pixels of `mask` (ROI-sized) within `r` of `(cx, cy)` (working
/// coordinates).
fn coverage(mask: &[u8], roi: Roi, cx: f32, cy: f32, r: f32) -> f32 {
    let Roi { x0, y0, rw, rh } = roi;
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

/// Fraction of set pixels of `mask` (ROI-sized) in the ring between radii `r_in` and `r_out`
/// around `(cx, cy)` (working coordinates); pixels outside the ROI count as unset.
fn ring_coverage(mask: &[u8], roi: Roi, cx: f32, cy: f32, (r_in, r_out): (f32, f32)) -> f32 {
    let Roi { x0, y0, rw, rh } = roi;
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

#[cfg(test)]
mod tests {
    use super::*;

    const ROI: Roi = Roi {
        x0: 100,
        y0: 50,
        rw: 40,
        rh: 30,
    };

    /// A ROI-sized mask set where `set(x, y)` (ROI coordinates) says so.
    fn mask(set: impl Fn(usize, usize) -> bool) -> Vec<u8> {
        (0..ROI.rw * ROI.rh)
            .map(|i| u8::from(set(i % ROI.rw, i / ROI.rw)))
            .collect()
    }

    #[test]
    fn a_stick_does_not_fill_a_ring_and_a_ball_does() {
        // A disc of radius 6 at (20, 15) and a bar 6 px wide through (20, 15).
        let disc = mask(|x, y| (x as f32 - 20.0).powi(2) + (y as f32 - 15.0).powi(2) <= 36.0);
        let bar = mask(|_, y| (12..=18).contains(&y));
        let ring = (0.6 * 6.0, 0.85 * 6.0);
        assert!(ring_coverage(&disc, ROI, 120.0, 65.0, ring) >= RING_MIN);
        assert!(ring_coverage(&bar, ROI, 120.0, 65.0, ring) < RING_MIN);
    }

    #[test]
    fn glare_clipped_in_one_channel_is_still_glare() {
        let (cloth, noise) = ([220.0, 140.0, 70.0], 2.0);
        // 80 of white added: blue clips at 255, green and red rise by 80.
        assert!(is_glare([255, 220, 150], cloth, noise));
        // Unclipped glare and fully white glare.
        assert!(is_glare([240, 160, 90], [200.0, 120.0, 50.0], noise));
        assert!(is_glare([255, 255, 255], cloth, noise));
        // A white ball has none of the cloth's tint; a red ball is another colour; plain cloth
        // has no white added.
        assert!(!is_glare([235, 238, 240], cloth, noise));
        assert!(!is_glare([40, 40, 210], cloth, noise));
        assert!(!is_glare([221, 141, 70], cloth, noise));
    }

    #[test]
    fn skin_is_told_from_ball_colours() {
        // Light, medium and dark skin (BGR).
        for skin in [
            [150.0, 175.0, 225.0],
            [110.0, 140.0, 205.0],
            [60.0, 85.0, 130.0],
        ] {
            assert!(is_skin(skin[0], skin[1], skin[2]), "{skin:?}");
        }
        // Ball colours of both renderers, white and cloths are not.
        for not in [
            [0.0, 190.0, 244.0],
            [10.0, 106.0, 248.0],
            [25.0, 115.0, 245.0],
            [34.0, 30.0, 206.0],
            [34.0, 26.0, 124.0],
            [228.0, 238.0, 240.0],
            [22.0, 20.0, 20.0],
            [58.0, 112.0, 24.0],
            [92.0, 140.0, 176.0],
        ] {
            assert!(!is_skin(not[0], not[1], not[2]), "{not:?}");
        }
    }

    #[test]
    fn skin_fraction_counts_the_disc() {
        let (w, h) = (20usize, 20usize);
        let mut px = vec![0u8; w * h * 3];
        for i in 0..w * h {
            let c: [u8; 3] = if i % w < 10 {
                [110, 140, 205]
            } else {
                [58, 112, 24]
            };
            px[i * 3..i * 3 + 3].copy_from_slice(&c);
        }
        let img = Image { px: &px, w, h };
        assert!(skin_fraction(img, 4.0, 10.0, 3.0) > 0.99);
        assert!(skin_fraction(img, 15.0, 10.0, 3.0) < 0.01);
        let half = skin_fraction(img, 9.5, 10.0, 4.0);
        assert!((0.4..0.6).contains(&half), "{half}");
    }

    #[test]
    fn coverage_counts_the_disc_in_working_coordinates() {
        let full = mask(|_, _| true);
        assert_eq!(coverage(&full, ROI, 120.0, 65.0, 5.0), 1.0);
        let left = mask(|x, _| x < 20);
        let c = coverage(&left, ROI, 120.0, 65.0, 5.0);
        assert!((0.4..0.5).contains(&c), "{c}");
        assert_eq!(coverage(&mask(|_, _| false), ROI, 120.0, 65.0, 5.0), 0.0);
    }

    #[test]
    fn ring_coverage_counts_outside_the_roi_as_unset() {
        let full = mask(|_, _| true);
        assert_eq!(ring_coverage(&full, ROI, 120.0, 65.0, (3.0, 6.0)), 1.0);
        // Centred on the ROI's left edge: about half the ring lies outside it.
        let c = ring_coverage(&full, ROI, 100.0, 65.0, (3.0, 6.0));
        assert!((0.45..0.6).contains(&c), "{c}");
        // The hole of the ring is not counted.
        let centre_only = mask(|x, y| x == 20 && y == 15);
        assert_eq!(
            ring_coverage(&centre_only, ROI, 120.0, 65.0, (3.0, 6.0)),
            0.0
        );
    }
}
