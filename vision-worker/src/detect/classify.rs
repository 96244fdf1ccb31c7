//! Ball kind from the pixels inside the ball: the fractions of white, dark and coloured
//! pixels and, for a little white, whether it sits on two opposite sides (the caps of a
//! stripe) or in one place (the number circle of a solid, or a highlight).
//!
//! White and dark are judged against the cloth right next to the ball, so a dim frame or a
//! lamp pool changes nothing; "neutral" allows for the sensor noise measured on the cloth.
//!
//! A lamp's hot highlight on a ball is a small clipped spot (every channel near 255) with a
//! bright halo: it is white, but not the ball's white. Clipped pixels are left out with the
//! halo around them, so a highlight never turns a solid into a stripe, but only when they
//! look like a highlight: a few percent of the disc, on the ball's colour. More clipped
//! pixels are the ball's own white in bright light (a stripe's whole cap, a white ball in a
//! pool), and so are clipped pixels inside white paint (the pixels just beyond their halo
//! mostly white): leaving those out turned stripes into solids.

use crate::model::{BallKind, KindFeatures};

/// Outer limit of the examined disc, in radii (the rim itself mixes with the cloth).
const DISC: f32 = 0.9;
/// Inner limit of the outer ring, in radii.
const RING: f32 = 0.66;
/// A channel value this high is clipped by the sensor.
const CLIPPED: u8 = 250;
/// Clipped pixels covering less than this share of the disc can be a highlight. A lamp's
/// highlight covers a few percent (the glare conditions draw windows of up to 5.5%); a
/// stripe's white cap clipped in bright light covers 10-25% of the disc.
const HIGHLIGHT_MAX: f32 = 0.08;
/// Radius of a highlight's halo around its clipped pixels, in ball radii.
const HALO: f32 = 0.2;
/// Clipped pixels are the ball's white, not a highlight, when at least this share of the
/// pixels just beyond their halo (one to two halo radii from them) are white.
const WHITE_AROUND_MIN: f32 = 0.5;

/// Measures the ball at `(cx, cy)` with radius `r` in a BGR image (`w` x `h`), given the cloth
/// colour next to it and the per-channel noise of the image.
#[allow(clippy::too_many_arguments)]
pub(crate) fn features(
    img: &[u8],
    w: usize,
    h: usize,
    cx: f32,
    cy: f32,
    r: f32,
    cloth: [f32; 3],
    noise: f32,
) -> KindFeatures {
    let vc = cloth[0].max(cloth[1]).max(cloth[2]).max(8.0);
    let cc = (cloth[0] * cloth[0] + cloth[1] * cloth[1] + cloth[2] * cloth[2]).max(1.0);
    // Colour-direction tolerance of the cloth at this noise (as in the ball stage).
    let cloth_sin2 = ((2.5 * noise / cc.sqrt()).max(0.08)).powi(2);
    let rr = DISC * r;
    let xa = (cx - rr).floor().max(0.0) as usize;
    let xb = ((cx + rr).ceil().max(0.0) as usize).min(w.saturating_sub(1));
    let ya = (cy - rr).floor().max(0.0) as usize;
    let yb = ((cy + rr).ceil().max(0.0) as usize).min(h.saturating_sub(1));
    let (mut n, mut nw, mut nd, mut nc) = (0u32, 0u32, 0u32, 0u32);
    let (mut ring_n, mut ring_c, mut ring_w) = (0u32, 0u32, 0u32);
    let mut white_pos: Vec<(f32, f32)> = Vec::new();
    // Hue and brightness of the saturated pixels, for the number (see `identify`).
    let (mut hue_a, mut hue_b, mut value, mut white_value) = (0.0f32, 0.0f32, 0.0f32, 0.0f32);
    // Hot highlights: where the clipped pixels are, and whether they are few enough to leave
    // out.
    let clipped_at = |x: usize, y: usize| {
        let o = (y * w + x) * 3;
        img[o].min(img[o + 1]).min(img[o + 2]) >= CLIPPED
    };
    let (mut disc_n, mut clipped) = (0u32, Vec::new());
    for y in ya..=yb {
        for x in xa..=xb {
            let (dx, dy) = (x as f32 - cx, y as f32 - cy);
            if dx * dx + dy * dy <= rr * rr {
                disc_n += 1;
                if clipped_at(x, y) {
                    clipped.push((x as f32, y as f32));
                }
            }
        }
    }
    // White as the main loop counts it (judged against the cloth, allowing for noise).
    let is_white = |b: f32, g: f32, rd: f32| {
        let mx = b.max(g).max(rd);
        mx - b.min(g).min(rd) <= 0.22 * mx + 2.0 * noise && mx >= 0.6 * vc
    };
    let halo2 = (HALO * r).powi(2);
    // Squared distance to the nearest clipped pixel, or at least 4 halos when it is further.
    let bw = (xb + 1).saturating_sub(xa);
    let mut near = Vec::new();
    let mut skip_highlights =
        !clipped.is_empty() && (clipped.len() as f32) < HIGHLIGHT_MAX * disc_n as f32;
    if skip_highlights {
        near = vec![4.0 * halo2 + 1.0; bw * (yb + 1 - ya)];
        let (mut around, mut around_white) = (0u32, 0u32);
        for y in ya..=yb {
            for x in xa..=xb {
                let (dx, dy) = (x as f32 - cx, y as f32 - cy);
                if dx * dx + dy * dy > rr * rr {
                    continue;
                }
                let cell = &mut near[(y - ya) * bw + (x - xa)];
                for &(hx, hy) in &clipped {
                    *cell = cell.min((x as f32 - hx).powi(2) + (y as f32 - hy).powi(2));
                    if *cell <= halo2 {
                        break;
                    }
                }
                if *cell > halo2 && *cell <= 4.0 * halo2 {
                    around += 1;
                    let o = (y * w + x) * 3;
                    around_white += u32::from(is_white(
                        img[o] as f32,
                        img[o + 1] as f32,
                        img[o + 2] as f32,
                    ));
                }
            }
        }
        // A highlight sits on the ball's colour; a clipped stripe cap lies inside white paint.
        skip_highlights = (around_white as f32) < WHITE_AROUND_MIN * around as f32;
    }
    // The halo: within a fifth of a radius of a clipped pixel.
    let in_highlight =
        |x: usize, y: usize| skip_highlights && near[(y - ya) * bw + (x - xa)] <= halo2;
    for y in ya..=yb {
        for x in xa..=xb {
            let (dx, dy) = (x as f32 - cx, y as f32 - cy);
            let d2 = dx * dx + dy * dy;
            if d2 > rr * rr {
                continue;
            }
            if in_highlight(x, y) {
                continue;
            }
            let o = (y * w + x) * 3;
            let (b, g, rd) = (img[o] as f32, img[o + 1] as f32, img[o + 2] as f32);
            let in_ring = d2 > (RING * r).powi(2);
            if in_ring {
                // Near the rim, cloth-coloured pixels are the cloth itself (a centre a pixel
                // off), not the ball.
                let pc = b * cloth[0] + g * cloth[1] + rd * cloth[2];
                let pp = (b * b + g * g + rd * rd).max(1.0);
                let s = pc / cc;
                if (0.42..=1.6).contains(&s) && 1.0 - pc * pc / (pp * cc) < cloth_sin2 {
                    continue;
                }
                ring_n += 1;
            }
            n += 1;
            let mx = b.max(g).max(rd);
            let mn = b.min(g).min(rd);
            let chroma = mx - mn;
            if is_white(b, g, rd) {
                nw += 1;
                white_value += mx / vc;
                ring_w += u32::from(in_ring);
                white_pos.push((dx / r, dy / r));
            } else if mx < 0.5 * vc && chroma <= 0.45 * mx + 2.0 * noise {
                nd += 1;
            } else if chroma > 0.3 * mx {
                nc += 1;
                let inv = 1.0 / mx.max(1.0);
                hue_a += (rd - 0.5 * (g + b)) * inv;
                hue_b += 0.866_025_4 * (g - b) * inv;
                value += mx / vc;
                if in_ring {
                    ring_c += 1;
                }
            }
        }
    }
    let two_sided = if white_pos.len() >= 4 {
        // Principal axis of the white pixels about the ball centre.
        let (mut sxx, mut sxy, mut syy) = (0.0f32, 0.0f32, 0.0f32);
        for &(x, y) in &white_pos {
            sxx += x * x;
            sxy += x * y;
            syy += y * y;
        }
        let theta = 0.5 * (2.0 * sxy).atan2(sxx - syy);
        let (ex, ey) = (theta.cos(), theta.sin());
        let (mut pos, mut neg) = (0u32, 0u32);
        for &(x, y) in &white_pos {
            let p = x * ex + y * ey;
            if p > 0.35 {
                pos += 1;
            } else if p < -0.35 {
                neg += 1;
            }
        }
        pos.min(neg) as f32 >= 0.25 * white_pos.len() as f32
    } else {
        false
    };
    let nf = n.max(1) as f32;
    KindFeatures {
        white: nw as f32 / nf,
        dark: nd as f32 / nf,
        colour: nc as f32 / nf,
        ring_colour: ring_c as f32 / ring_n.max(1) as f32,
        ring_white: ring_w as f32 / ring_n.max(1) as f32,
        two_sided,
        n,
        hue: if nc > 0 {
            [hue_a / nc as f32, hue_b / nc as f32]
        } else {
            [0.0, 0.0]
        },
        value: if nc > 0 { value / nc as f32 } else { 0.0 },
        white_value: if nw > 0 { white_value / nw as f32 } else { 0.0 },
    }
}

/// The kind that the features say, or `Unknown` when they say nothing clear.
pub(crate) fn decide(f: &KindFeatures) -> BallKind {
    if f.n < 8 {
        return BallKind::Unknown;
    }
    // No other ball has dark, neutral pixels beyond a shadowed sliver.
    if f.dark >= 0.3 && f.dark >= f.colour {
        return BallKind::Eight;
    }
    if f.white >= 0.55 && f.colour < 0.05 && f.ring_colour < 0.1 {
        return BallKind::Cue;
    }
    // A stripe's caps reach the rim; a solid's number circle facing the camera is central.
    if (f.white >= 0.28 && f.colour >= 0.05)
        || (f.white >= 0.15 && f.ring_white >= 0.15 && f.colour >= 0.05)
        || (f.white >= 0.08 && f.two_sided && f.colour >= 0.25)
    {
        return BallKind::Stripe;
    }
    if f.colour >= 0.35 {
        return BallKind::Solid;
    }
    BallKind::Unknown
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: usize = 48;
    const CLOTH: [u8; 3] = [58, 112, 24];

    /// A 48x48 image: green cloth outside a ball of radius 14 at (24, 24), `ball(dx, dy)`
    /// inside it (offsets from the centre).
    fn paint(ball: impl Fn(f32, f32) -> [u8; 3]) -> Vec<u8> {
        let mut img = vec![0u8; W * W * 3];
        for y in 0..W {
            for x in 0..W {
                let (dx, dy) = (x as f32 - 24.0, y as f32 - 24.0);
                let px = if dx * dx + dy * dy > 14.0 * 14.0 {
                    CLOTH
                } else {
                    ball(dx, dy)
                };
                img[(y * W + x) * 3..(y * W + x) * 3 + 3].copy_from_slice(&px);
            }
        }
        img
    }

    /// A 48x48 green-cloth image with a red ball of radius 14 at (24, 24) and, optionally, a
    /// hot highlight (clipped core, bright halo) up and left of its centre.
    fn red_ball(highlight: bool) -> Vec<u8> {
        paint(|dx, dy| {
            let dh = ((dx + 5.0).powi(2) + (dy + 5.0).powi(2)).sqrt();
            if highlight && dh <= 2.5 {
                [255, 255, 255]
            } else if highlight && dh <= 4.0 {
                [225, 228, 240]
            } else {
                [34, 30, 206]
            }
        })
    }

    #[test]
    fn a_hot_highlight_does_not_make_a_solid_a_stripe() {
        let cloth = [58.0, 112.0, 24.0];
        let plain = features(&red_ball(false), 48, 48, 24.0, 24.0, 14.0, cloth, 1.0);
        assert_eq!(decide(&plain), BallKind::Solid, "{plain:?}");
        let hot = features(&red_ball(true), 48, 48, 24.0, 24.0, 14.0, cloth, 1.0);
        assert_eq!(decide(&hot), BallKind::Solid, "{hot:?}");
        assert!(hot.white < 0.05, "{hot:?}");
    }

    #[test]
    fn a_stripe_with_a_clipped_cap_is_still_a_stripe() {
        // A red stripe in bright light: its upper cap is clipped (a fifth of the disc), its
        // lower cap, turned away from the lamp, is not.
        let (w, h) = (W, W);
        let img = paint(|_, dy| {
            if dy < -6.0 {
                [255; 3]
            } else if dy > 9.0 {
                [228, 234, 236]
            } else {
                [34, 30, 206]
            }
        });
        let f = features(&img, w, h, 24.0, 24.0, 14.0, [58.0, 112.0, 24.0], 1.0);
        assert_eq!(decide(&f), BallKind::Stripe, "{f:?}");
        assert!(f.white > 0.25, "{f:?}");
    }

    #[test]
    fn a_clipped_spot_inside_white_paint_is_white() {
        // A small clipped spot in the middle of a stripe's white cap: the white around it
        // says it is the ball's own white, so none of the cap is left out.
        let (w, h) = (W, W);
        let mut img = paint(|dx, dy| {
            if dx.abs() <= 1.0 && (-9.0..=-7.0).contains(&dy) {
                [255; 3]
            } else if dy.abs() > 3.0 {
                [228, 234, 236]
            } else {
                [34, 30, 206]
            }
        });
        let with_spot = features(&img, w, h, 24.0, 24.0, 14.0, [58.0, 112.0, 24.0], 1.0);
        for y in 15..=17 {
            for x in 23..=25 {
                img[(y * w + x) * 3..(y * w + x) * 3 + 3].copy_from_slice(&[228, 234, 236]);
            }
        }
        let plain = features(&img, w, h, 24.0, 24.0, 14.0, [58.0, 112.0, 24.0], 1.0);
        assert_eq!(decide(&with_spot), BallKind::Stripe, "{with_spot:?}");
        assert_eq!(with_spot.n, plain.n, "{with_spot:?} vs {plain:?}");
        assert!((with_spot.white - plain.white).abs() < 1e-6);
    }

    #[test]
    fn a_white_ball_in_a_bright_pool_is_still_white() {
        // Every pixel of the ball clipped: it is the ball's white, not a highlight.
        let (w, h) = (W, W);
        let img = paint(|_, _| [255; 3]);
        let f = features(&img, w, h, 24.0, 24.0, 14.0, [58.0, 112.0, 24.0], 1.0);
        assert_eq!(decide(&f), BallKind::Cue, "{f:?}");
    }
}
