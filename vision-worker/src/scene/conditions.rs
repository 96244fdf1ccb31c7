//! The real-play conditions of `video_worker::synthetic::conditions`, drawn this renderer's own
//! way (other shapes, colours and profiles), so that the detector is not tuned to one look:
//! a round lamp's ring reflection and window-shaped highlights, a cue with a linear taper and
//! a wrapped butt, a hand made of discs, low light through the scene's own gain and noise
//! with a cast, a tilt through the homography, a forced rack, and a triangle-weighted blur.

// Per-channel arithmetic over several colour arrays at once reads clearest with an index.
#![allow(clippy::needless_range_loop)]

use video_worker::synthetic::conditions::{Condition, CueTruth};

use super::{AltScene, Rng, Truth};

/// The scene knobs for `cond` (tilt, rack, low light), from `base`.
pub fn scene_for(cond: Condition, mut base: AltScene) -> AltScene {
    let mut rng = Rng::new(base.seed ^ 0xA17_C0D);
    match cond {
        Condition::Tilt => base.tilt = rng.range(0.1, 0.17),
        Condition::Rack => base.rack = true,
        Condition::LowLight => {
            base.gain = rng.range(0.3, 0.42);
            base.noise_sigma = rng.range(4.0, 8.0);
        }
        _ => {}
    }
    base
}

/// Draws `cond` over a rendered alt frame (`w` x `h`, BGR) with ground truth `truth`;
/// removes the balls a hand hides and returns the cue's ground truth when its tip is in view.
pub fn apply(
    cond: Condition,
    frame: &mut [u8],
    w: usize,
    h: usize,
    truth: &mut Truth,
    seed: u64,
) -> Option<CueTruth> {
    if frame.len() != w * h * 3 || truth.balls.is_empty() {
        return None;
    }
    let mut rng = Rng::new(seed ^ 0xC0_4D17);
    let mut radii: Vec<f32> = truth.balls.iter().map(|b| b.radius).collect();
    radii.sort_by(f32::total_cmp);
    let r = radii[radii.len() / 2] as f64;
    match cond {
        Condition::Glare => glare(frame, w, h, truth, r, &mut rng),
        Condition::Cue => return cue(frame, w, h, truth, r, &mut rng),
        Condition::Hand => hand(frame, w, h, truth, r, &mut rng),
        Condition::LowLight => cast(frame, &mut rng),
        Condition::MotionBlur => blur(frame, w, h, truth, r, &mut rng),
        _ => {}
    }
    None
}

fn inside_point(t: &Truth, u: f64, v: f64) -> [f64; 2] {
    let c = t.corners.map(|p| [p[0] as f64, p[1] as f64]);
    [0, 1].map(|k| {
        (1.0 - u) * (1.0 - v) * c[0][k]
            + u * (1.0 - v) * c[1][k]
            + u * v * c[2][k]
            + (1.0 - u) * v * c[3][k]
    })
}

fn put(frame: &mut [u8], w: usize, x: usize, y: usize, col: [f64; 3], a: f64) {
    let o = (y * w + x) * 3;
    for c in 0..3 {
        let v = frame[o + c] as f64;
        frame[o + c] = (v + a * (col[c] - v)).round().clamp(0.0, 255.0) as u8;
    }
}

fn clip_box(w: usize, h: usize, c: [f64; 2], reach: f64) -> (usize, usize, usize, usize) {
    (
        (c[0] - reach).floor().max(0.0) as usize,
        (c[1] - reach).floor().max(0.0) as usize,
        ((c[0] + reach).ceil().max(0.0) as usize).min(w - 1),
        ((c[1] + reach).ceil().max(0.0) as usize).min(h - 1),
    )
}

/// A round lamp's reflection (a bright ring with a softer middle) on the cloth, and a
/// clipped window-shaped highlight on each ball.
fn glare(f: &mut [u8], w: usize, h: usize, t: &Truth, r: f64, rng: &mut Rng) {
    for _ in 0..1 + rng.below(2) {
        let c = inside_point(t, rng.range(0.1, 0.9), rng.range(0.1, 0.9));
        let ring = r * rng.range(2.0, 4.0);
        let width = r * rng.range(0.8, 1.5);
        let amp = rng.range(60.0, 120.0);
        let (x0, y0, x1, y1) = clip_box(w, h, c, ring + 3.0 * width);
        for y in y0..=y1 {
            for x in x0..=x1 {
                let d = ((x as f64 - c[0]).powi(2) + (y as f64 - c[1]).powi(2)).sqrt();
                let add = amp
                    * ((-((d - ring) / width).powi(2)).exp() * 0.8
                        + 0.35 * (-(d / ring).powi(2)).exp());
                let o = (y * w + x) * 3;
                for k in 0..3 {
                    f[o + k] = (f[o + k] as f64 + add).min(255.0) as u8;
                }
            }
        }
    }
    let (ox, oy) = (rng.range(-0.4, 0.4), rng.range(-0.4, 0.4));
    let (hw, hh) = (rng.range(0.14, 0.22), rng.range(0.1, 0.16));
    for b in &t.balls {
        let br = b.radius as f64;
        let c = [b.x as f64 + ox * br, b.y as f64 + oy * br];
        let (x0, y0, x1, y1) = clip_box(w, h, c, br * 0.5);
        for y in y0..=y1 {
            for x in x0..=x1 {
                let (dx, dy) = (
                    (x as f64 - c[0]).abs() / (hw * br),
                    (y as f64 - c[1]).abs() / (hh * br),
                );
                let q = dx.max(dy);
                if q <= 1.0 {
                    put(f, w, x, y, [255.0; 3], 1.0);
                } else if q <= 1.6 {
                    put(f, w, x, y, [250.0, 250.0, 255.0], 0.8 * (1.6 - q) / 0.6);
                }
            }
        }
    }
}

/// A cue with a linear taper, a white ferrule, a pale shaft and a black wrapped butt, aimed
/// at the cue ball from a random side; no shadow (a high lamp).
fn cue(f: &mut [u8], w: usize, h: usize, t: &Truth, r: f64, rng: &mut Rng) -> Option<CueTruth> {
    let target = t
        .balls
        .iter()
        .find(|b| b.number == 0)
        .map(|b| [b.x as f64, b.y as f64])
        .unwrap_or_else(|| inside_point(t, rng.range(0.25, 0.75), rng.range(0.25, 0.75)));
    let gap = r * rng.range(0.8, 3.0);
    // A direction with no ball under the tip's first radii (the stick is low there).
    let mut a = rng.range(-std::f64::consts::PI, std::f64::consts::PI);
    for _ in 0..36 {
        let (dx, dy) = (a.cos(), a.sin());
        let tip = [target[0] - dx * (r + gap), target[1] - dy * (r + gap)];
        let clear = t.balls.iter().all(|b| {
            let (px, py) = (b.x as f64 - tip[0], b.y as f64 - tip[1]);
            let along = -(px * dx + py * dy);
            let perp = (-px * dy + py * dx).abs();
            !((-0.5 * r..4.0 * r).contains(&along) && perp < 1.5 * r)
        });
        if clear {
            break;
        }
        a += 0.7;
    }
    let dir = [a.cos(), a.sin()];
    let tip = [
        target[0] - dir[0] * (r + gap),
        target[1] - dir[1] * (r + gap),
    ];
    let length = 50.0 * r;
    let half = |s: f64| r * (0.25 + 0.25 * (s / length).clamp(0.0, 1.0));
    let colour = |s: f64| -> [f64; 3] {
        if s < 0.8 * r {
            [238.0, 240.0, 240.0]
        } else if s < 0.6 * length {
            [150.0, 200.0, 226.0]
        } else if ((s / r) as i64) % 3 == 0 {
            [45.0, 45.0, 45.0]
        } else {
            [20.0, 20.0, 22.0]
        }
    };
    let butt = [tip[0] - dir[0] * length, tip[1] - dir[1] * length];
    let lo = [tip[0].min(butt[0]), tip[1].min(butt[1])];
    let hi = [tip[0].max(butt[0]), tip[1].max(butt[1])];
    let x0 = (lo[0] - r).floor().max(0.0) as usize;
    let y0 = (lo[1] - r).floor().max(0.0) as usize;
    let x1 = ((hi[0] + r).ceil().max(0.0) as usize).min(w - 1);
    let y1 = ((hi[1] + r).ceil().max(0.0) as usize).min(h - 1);
    for y in y0..=y1 {
        for x in x0..=x1 {
            let (px, py) = (x as f64 - tip[0], y as f64 - tip[1]);
            let s = -(px * dir[0] + py * dir[1]);
            if !(-1.0..=length).contains(&s) {
                continue;
            }
            let d = (-px * dir[1] + py * dir[0]).abs();
            let hw = half(s.max(0.0));
            let a = (hw - d + 0.5).clamp(0.0, 1.0) * (s + 0.5).clamp(0.0, 1.0);
            if a <= 0.0 {
                continue;
            }
            // Edges darker (seen from above, the sides turn away from the lamp).
            let shade = 1.0 - 0.35 * (d / hw).clamp(0.0, 1.0).powi(2);
            put(f, w, x, y, colour(s.max(0.0)).map(|c| c * shade), a);
        }
    }
    // Over the table: the tip on the cloth, off the cushions.
    let c = t.corners.map(|q| [q[0] as f64, q[1] as f64]);
    let centre = [
        c.iter().map(|q| q[0]).sum::<f64>() / 4.0,
        c.iter().map(|q| q[1]).sum::<f64>() / 4.0,
    ];
    let inside = (0..4)
        .map(|i| {
            let (a, b) = (c[i], c[(i + 1) % 4]);
            let n = [b[1] - a[1], a[0] - b[0]];
            let len = (n[0] * n[0] + n[1] * n[1]).sqrt().max(1e-9);
            let d = |q: [f64; 2]| ((q[0] - a[0]) * n[0] + (q[1] - a[1]) * n[1]) / len;
            if d(centre) >= 0.0 {
                d(tip)
            } else {
                -d(tip)
            }
        })
        .fold(f64::INFINITY, f64::min);
    (inside >= 1.5 * r).then(|| CueTruth {
        tip: [tip[0] as f32, tip[1] as f32],
        angle_deg: dir[1].atan2(dir[0]).to_degrees() as f32,
    })
}

/// A hand made of discs: a round palm, five fingers of three shrinking discs each, a wide
/// forearm of discs reaching off the table; a uniform shadow under it.
fn hand(f: &mut [u8], w: usize, h: usize, t: &mut Truth, r: f64, rng: &mut Rng) {
    let palm = inside_point(t, rng.range(0.25, 0.75), rng.range(0.25, 0.75));
    let a = rng.range(0.0, std::f64::consts::TAU);
    let (fx, fy) = (a.cos(), a.sin());
    let mut discs: Vec<([f64; 2], f64)> = vec![(palm, 1.7 * r)];
    for k in 1..40 {
        let s = 1.6 * r * k as f64;
        discs.push(([palm[0] - fx * s, palm[1] - fy * s], 1.3 * r));
    }
    for (i, spread) in [-0.9f64, -0.45, -0.15, 0.15, 0.45].iter().enumerate() {
        let fa = a + spread * if i == 0 { 1.4 } else { 0.6 };
        let len = if i == 0 { 1.6 } else { 2.3 };
        for j in 0..3 {
            let s = 1.7 * r + len * r * j as f64 / 2.0;
            discs.push((
                [palm[0] + fa.cos() * s, palm[1] + fa.sin() * s],
                r * (0.38 - 0.05 * j as f64),
            ));
        }
    }
    let covered = |x: f64, y: f64| {
        discs
            .iter()
            .map(|&(c, rad)| ((x - c[0]).powi(2) + (y - c[1]).powi(2)).sqrt() - rad)
            .fold(f64::INFINITY, f64::min)
    };
    let tone = rng.range(0.6, 1.1);
    let skin = [100.0 * tone, 135.0 * tone, 195.0 * tone.min(1.08)];
    let off = [r * rng.range(-1.0, 1.0), r * rng.range(0.5, 1.2)];
    for y in 0..h {
        for x in 0..w {
            let (xf, yf) = (x as f64, y as f64);
            // Far from the palm-to-elbow line: nothing to draw.
            let along = ((xf - palm[0]) * fx + (yf - palm[1]) * fy).clamp(-64.0 * r, 0.0);
            let (ax, ay) = (palm[0] + along * fx, palm[1] + along * fy);
            if (xf - ax).powi(2) + (yf - ay).powi(2) > (7.0 * r).powi(2) {
                continue;
            }
            let ds = covered(xf - off[0], yf - off[1]);
            if ds < 0.0 {
                put(f, w, x, y, [0.0; 3], 0.35);
            }
            let d = covered(xf, yf);
            let alpha = (0.5 - d).clamp(0.0, 1.0);
            if alpha > 0.0 {
                // Mottled skin: a little per-pixel variation.
                let m = 0.92 + 0.08 * (((x * 31 + y * 17) % 13) as f64 / 13.0);
                put(f, w, x, y, skin.map(|c| c * m), alpha);
            }
        }
    }
    t.balls.retain(|b| {
        let (x, y, br) = (b.x as f64, b.y as f64, b.radius as f64);
        let hidden = [(0.0, 0.0), (0.7, 0.0), (-0.7, 0.0), (0.0, 0.7), (0.0, -0.7)]
            .iter()
            .filter(|(dx, dy)| covered(x + dx * br, y + dy * br) < 0.0)
            .count();
        hidden < 2
    });
}

/// A colour cast on the already dim scene (its gain and noise come from [`scene_for`]).
fn cast(f: &mut [u8], rng: &mut Rng) {
    let k = match rng.below(3) {
        0 => [0.8, 0.97, 1.15],
        1 => [1.15, 1.02, 0.82],
        _ => [0.92, 1.12, 0.88],
    };
    for px in f.chunks_exact_mut(3) {
        for c in 0..3 {
            px[c] = (px[c] as f64 * k[c]).round().clamp(0.0, 255.0) as u8;
        }
    }
}

/// A triangle-weighted smear of a few balls along random directions, centred on each ball.
fn blur(f: &mut [u8], w: usize, h: usize, t: &Truth, r: f64, rng: &mut Rng) {
    let n = (2 + rng.below(5)).min(t.balls.len());
    for i in 0..n {
        let b = &t.balls[(i * 7 + rng.below(t.balls.len())) % t.balls.len()];
        let a = rng.range(0.0, std::f64::consts::TAU);
        let len = r * rng.range(0.8, 1.8);
        let d = [a.cos() * len, a.sin() * len];
        let c = [b.x as f64, b.y as f64];
        let (x0, y0, x1, y1) = clip_box(w, h, c, b.radius as f64 + len + 2.0);
        let (bw, bh) = (x1 - x0 + 1, y1 - y0 + 1);
        let mut src = vec![0u8; bw * bh * 3];
        for y in 0..bh {
            let o = ((y0 + y) * w + x0) * 3;
            src[y * bw * 3..(y + 1) * bw * 3].copy_from_slice(&f[o..o + bw * 3]);
        }
        const TAPS: i32 = 11;
        for y in 0..bh {
            for x in 0..bw {
                let (mut acc, mut wsum) = ([0.0f64; 3], 0.0);
                for k in -(TAPS / 2)..=TAPS / 2 {
                    let s = k as f64 / (TAPS - 1) as f64;
                    let wt = 1.0 - 2.0 * s.abs() + 0.1;
                    let sx = (x as f64 - s * d[0]).round().clamp(0.0, (bw - 1) as f64) as usize;
                    let sy = (y as f64 - s * d[1]).round().clamp(0.0, (bh - 1) as f64) as usize;
                    let o = (sy * bw + sx) * 3;
                    for ch in 0..3 {
                        acc[ch] += wt * src[o + ch] as f64;
                    }
                    wsum += wt;
                }
                let o = ((y0 + y) * w + x0 + x) * 3;
                for ch in 0..3 {
                    f[o + ch] = (acc[ch] / wsum).round() as u8;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::render_alt;
    use super::*;

    #[test]
    fn every_condition_renders_deterministically() {
        for cond in Condition::ALL {
            let sc = scene_for(cond, AltScene::random(320, 180, 11));
            let (mut a, mut b) = (Vec::new(), Vec::new());
            let mut ta = render_alt(&sc, &mut a);
            let mut tb = render_alt(&sc, &mut b);
            let ca = apply(cond, &mut a, 320, 180, &mut ta, 5);
            let cb = apply(cond, &mut b, 320, 180, &mut tb, 5);
            assert_eq!(a, b, "{cond:?}");
            assert_eq!(ta, tb, "{cond:?}");
            assert_eq!(ca, cb, "{cond:?}");
        }
    }

    #[test]
    fn a_tilted_view_makes_the_far_side_shorter() {
        let base = AltScene::random(640, 360, 4);
        let tilted = scene_for(Condition::Tilt, base.clone());
        let mut buf = Vec::new();
        let t = render_alt(&tilted, &mut buf);
        let top = t.corners[1][0] - t.corners[0][0];
        let bottom = t.corners[2][0] - t.corners[3][0];
        assert!(top < 0.95 * bottom, "top {top} bottom {bottom}");
    }

    #[test]
    fn the_cue_is_drawn_and_its_truth_given() {
        let mut shown = 0;
        for seed in 0..8 {
            let sc = AltScene::random(640, 360, seed);
            let mut buf = Vec::new();
            let mut t = render_alt(&sc, &mut buf);
            let clean = buf.clone();
            if let Some(c) = apply(Condition::Cue, &mut buf, 640, 360, &mut t, seed) {
                shown += 1;
                let a = (c.angle_deg as f64).to_radians();
                let (x, y) = (
                    (c.tip[0] as f64 - 2.0 * a.cos()).round() as usize,
                    (c.tip[1] as f64 - 2.0 * a.sin()).round() as usize,
                );
                let o = (y * 640 + x) * 3;
                assert_ne!(buf[o..o + 3], clean[o..o + 3], "seed {seed}");
            }
        }
        assert!(shown >= 6, "{shown}");
    }
}
