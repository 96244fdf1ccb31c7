//! Real-play conditions over the synthetic table, for the vision worker's evaluation: lamp
//! glare and hot highlights, a cue stick lying across balls, a hand over the table, low light
//! with noise and a colour cast, a tilted camera, a full rack, and fast balls with motion blur.
//!
//! Style conditions ([`Condition::style`]) change the scene itself (camera, layout); image
//! conditions ([`Condition::apply`]) are drawn over a rendered frame and correct its ground
//! truth (balls a hand hides are removed; the cue's tip and angle are returned). Everything
//! is deterministic from the seed.

// Per-channel arithmetic over several colour arrays at once reads clearest with an index.
#![allow(clippy::needless_range_loop)]

use super::rng::Rng;
use super::{GroundTruth, Layout, SceneStyle};

/// One condition of real play.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Condition {
    /// Nothing added: the plain scene.
    Clear,
    /// Broad lamp reflections on the cloth and a clipped hot highlight on every ball.
    Glare,
    /// A cue stick aimed at the cue ball, lying across other balls.
    Cue,
    /// A hand (palm, fingers, thumb, arm) reaching over the table, with its shadow.
    Hand,
    /// A dim room: a third of the light, a colour cast and sensor noise.
    LowLight,
    /// A camera tilted by about 20 degrees: far balls are small, balls sit on the cushions.
    Tilt,
    /// A full rack of touching balls.
    Rack,
    /// Some balls smeared along their direction of travel.
    MotionBlur,
}

/// The cue's ground truth, frame pixels. Given only when the tip is over the cloth, at least
/// 1.5 ball radii from the cushions (see [`inside_play`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CueTruth {
    /// The tip (the end of the stick).
    pub tip: [f32; 2],
    /// Direction from the butt to the tip, degrees, `atan2(dy, dx)` with y down.
    pub angle_deg: f32,
}

impl Condition {
    /// Every condition, in report order.
    pub const ALL: [Condition; 8] = [
        Condition::Clear,
        Condition::Glare,
        Condition::Cue,
        Condition::Hand,
        Condition::LowLight,
        Condition::Tilt,
        Condition::Rack,
        Condition::MotionBlur,
    ];

    /// The condition's name (`clear`, `glare`, `cue`, `hand`, `low-light`, `tilt`, `rack`,
    /// `motion-blur`).
    pub fn name(self) -> &'static str {
        match self {
            Condition::Clear => "clear",
            Condition::Glare => "glare",
            Condition::Cue => "cue",
            Condition::Hand => "hand",
            Condition::LowLight => "low-light",
            Condition::Tilt => "tilt",
            Condition::Rack => "rack",
            Condition::MotionBlur => "motion-blur",
        }
    }

    /// The condition named `name`, if any.
    pub fn from_name(name: &str) -> Option<Condition> {
        Condition::ALL.into_iter().find(|c| c.name() == name)
    }

    /// The scene style for this condition, from `base`.
    pub fn style(self, base: SceneStyle, seed: u64) -> SceneStyle {
        let mut r = Rng::new(seed, 0xC0D1);
        match self {
            Condition::Tilt => SceneStyle {
                tilt_deg: r.range(16.0, 22.0) as f32,
                tilt_azimuth_deg: [0.0f32, 90.0, 180.0, 270.0][r.below(4)]
                    + r.range(-15.0, 15.0) as f32,
                layout: Layout::Scattered,
                cushion_contacts: true,
                ..base
            },
            Condition::Rack => SceneStyle {
                layout: Layout::Rack,
                ..base
            }
            .still(),
            _ => base,
        }
    }

    /// Draws the condition over `frame` (BGR8, `width` x `height`) whose ground truth is
    /// `truth`; removes from `truth` the balls it hides and returns the cue's ground truth
    /// when it drew a cue whose tip is in view.
    pub fn apply(
        self,
        frame: &mut [u8],
        width: u32,
        height: u32,
        truth: &mut GroundTruth,
        seed: u64,
    ) -> Option<CueTruth> {
        let (w, h) = (width as usize, height as usize);
        if frame.len() != w * h * 3 || truth.balls.is_empty() {
            return None;
        }
        let mut rng = Rng::new(seed, 0xC0D2);
        let mut radii: Vec<f32> = truth.balls.iter().map(|b| b.radius).collect();
        radii.sort_by(f32::total_cmp);
        let r = radii[radii.len() / 2] as f64;
        let img = Img { px: frame, w, h };
        match self {
            Condition::Glare => glare(img, truth, r, &mut rng),
            Condition::Cue => return cue(img, truth, r, &mut rng),
            Condition::Hand => hand(img, truth, r, &mut rng),
            Condition::LowLight => low_light(img, &mut rng),
            Condition::MotionBlur => motion_blur(img, truth, r, &mut rng),
            Condition::Clear | Condition::Tilt | Condition::Rack => {}
        }
        None
    }
}

/// A BGR8 frame being drawn on.
struct Img<'a> {
    px: &'a mut [u8],
    w: usize,
    h: usize,
}

impl Img<'_> {
    /// Blends `col` over pixel `(x, y)` with opacity `a`.
    fn blend(&mut self, x: usize, y: usize, col: [f64; 3], a: f64) {
        let o = (y * self.w + x) * 3;
        for c in 0..3 {
            let v = self.px[o + c] as f64;
            self.px[o + c] = (v + a * (col[c] - v)).round().clamp(0.0, 255.0) as u8;
        }
    }

    /// Multiplies pixel `(x, y)` by `k`.
    fn scale(&mut self, x: usize, y: usize, k: f64) {
        let o = (y * self.w + x) * 3;
        for c in 0..3 {
            self.px[o + c] = (self.px[o + c] as f64 * k).round().clamp(0.0, 255.0) as u8;
        }
    }

    /// The pixel rectangle around `(cx, cy)` with half-size `reach`, clipped.
    fn bounds(&self, cx: f64, cy: f64, reach: f64) -> (usize, usize, usize, usize) {
        let x0 = (cx - reach).floor().max(0.0) as usize;
        let y0 = (cy - reach).floor().max(0.0) as usize;
        let x1 = ((cx + reach).ceil().max(0.0) as usize).min(self.w.saturating_sub(1));
        let y1 = ((cy + reach).ceil().max(0.0) as usize).min(self.h.saturating_sub(1));
        (x0, y0, x1, y1)
    }
}

/// A point of the playing area at table fractions `(u, v)` (bilinear in the corners).
fn table_point(t: &GroundTruth, u: f64, v: f64) -> [f64; 2] {
    let c = t.table_corners.map(|p| [p[0] as f64, p[1] as f64]);
    let mut out = [0.0; 2];
    for (k, o) in out.iter_mut().enumerate() {
        *o = (1.0 - u) * (1.0 - v) * c[0][k]
            + u * (1.0 - v) * c[1][k]
            + u * v * c[2][k]
            + (1.0 - u) * v * c[3][k];
    }
    out
}

/// Lamp reflections on the matte cloth (broad, soft, partly washed out) and a clipped hot
/// highlight with a halo on every ball, all from the same lamp direction.
fn glare(mut img: Img<'_>, t: &GroundTruth, r: f64, rng: &mut Rng) {
    for _ in 0..1 + rng.below(3) {
        let c = table_point(t, rng.range(0.15, 0.85), rng.range(0.15, 0.85));
        let (sx, sy) = (r * rng.range(3.0, 6.0), r * rng.range(2.5, 4.0));
        let phi = rng.range(0.0, std::f64::consts::PI);
        let amp = rng.range(50.0, 110.0);
        let (cs, sn) = (phi.cos(), phi.sin());
        let (x0, y0, x1, y1) = img.bounds(c[0], c[1], 3.0 * sx.max(sy));
        for y in y0..=y1 {
            for x in x0..=x1 {
                let (dx, dy) = (x as f64 - c[0], y as f64 - c[1]);
                let (u, v) = (dx * cs + dy * sn, -dx * sn + dy * cs);
                let q = (u / sx).powi(2) + (v / sy).powi(2);
                if q > 9.0 {
                    continue;
                }
                let add = amp * (-0.5 * q).exp();
                let o = (y * img.w + x) * 3;
                for k in 0..3 {
                    img.px[o + k] = (img.px[o + k] as f64 + add).min(255.0) as u8;
                }
            }
        }
    }
    let a = rng.range(0.0, std::f64::consts::TAU);
    let off = rng.range(0.25, 0.45) * r;
    let core = rng.range(0.16, 0.24) * r;
    for b in &t.balls {
        let (hx, hy) = (b.x as f64 + off * a.cos(), b.y as f64 + off * a.sin());
        let halo = 1.8 * core;
        let (x0, y0, x1, y1) = img.bounds(hx, hy, halo + 1.0);
        for y in y0..=y1 {
            for x in x0..=x1 {
                let d = ((x as f64 - hx).powi(2) + (y as f64 - hy).powi(2)).sqrt();
                if d <= core {
                    img.blend(x, y, [255.0; 3], 1.0);
                } else if d <= halo {
                    let k = 1.0 - (d - core) / (halo - core);
                    img.blend(x, y, [255.0; 3], 0.85 * k);
                }
            }
        }
    }
}

/// A cue stick aimed at the cue ball (or a point of the table), crossing other balls when it
/// can. Proportions of a real cue: a 13 mm tip and a 30 mm butt for a 57 mm ball.
fn cue(mut img: Img<'_>, t: &GroundTruth, r: f64, rng: &mut Rng) -> Option<CueTruth> {
    let target = match t.balls.iter().find(|b| b.number == 0) {
        Some(b) if rng.chance(0.85) => [b.x as f64, b.y as f64],
        _ => table_point(t, rng.range(0.2, 0.8), rng.range(0.2, 0.8)),
    };
    let length = 52.0 * r;
    let gap = r * rng.range(0.6, 2.5);
    // Prefer a direction whose stick lies over other balls, further back than the tip's
    // first few radii: near the tip the stick is as low as the cue ball's centre, so no ball
    // can be under it there.
    let mut best = (-1i32, 0.0f64);
    for _ in 0..24 {
        let a = rng.range(-std::f64::consts::PI, std::f64::consts::PI);
        let (dx, dy) = (a.cos(), a.sin());
        let tip = [target[0] - dx * (r + gap), target[1] - dy * (r + gap)];
        let (mut crossed, mut blocked) = (0i32, false);
        for b in &t.balls {
            let (px, py) = (b.x as f64 - tip[0], b.y as f64 - tip[1]);
            let along = -(px * dx + py * dy);
            let perp = (-px * dy + py * dx).abs();
            if (-0.5 * r..4.0 * r).contains(&along) && perp < 1.5 * r {
                blocked = true;
            } else if along > 4.0 * r && along < 25.0 * r && perp < 1.1 * r {
                crossed += 1;
            }
        }
        let crossed = if blocked { -1 } else { crossed };
        if crossed > best.0 || best.0 < 0 && crossed == best.0 && best.1 == 0.0 {
            best = (crossed, a);
        }
    }
    let a = best.1;
    let dir = [a.cos(), a.sin()];
    let tip = [
        target[0] - dir[0] * (r + gap),
        target[1] - dir[1] * (r + gap),
    ];
    let half = |s: f64| r * (0.23 + 0.29 * (s / length).clamp(0.0, 1.0));
    let colour = |s: f64| -> [f64; 3] {
        if s < 0.12 * r {
            [160.0, 110.0, 60.0] // blue chalk on the leather
        } else if s < 0.95 * r {
            [212.0, 226.0, 232.0] // the ferrule
        } else if s < 0.55 * length {
            [118.0, 172.0, 206.0] // maple shaft
        } else if s < 0.56 * length {
            [205.0, 205.0, 205.0] // the joint
        } else {
            [28.0, 42.0, 78.0] // the butt
        }
    };
    // The stick's bounding box, then every pixel near the segment.
    let butt = [tip[0] - dir[0] * length, tip[1] - dir[1] * length];
    let shadow = [0.35 * r, 0.55 * r];
    let (bx0, by0, bx1, by1) = {
        let pad = 0.6 * r + 2.0 + shadow[0].abs().max(shadow[1].abs());
        let xs = [tip[0], butt[0]];
        let ys = [tip[1], butt[1]];
        let x0 = (xs[0].min(xs[1]) - pad).floor().max(0.0) as usize;
        let y0 = (ys[0].min(ys[1]) - pad).floor().max(0.0) as usize;
        let x1 = ((xs[0].max(xs[1]) + pad).ceil().max(0.0) as usize).min(img.w - 1);
        let y1 = ((ys[0].max(ys[1]) + pad).ceil().max(0.0) as usize).min(img.h - 1);
        (x0, y0, x1, y1)
    };
    // (s along the stick from the tip, signed distance across it).
    let coords = |x: f64, y: f64| {
        let (px, py) = (x - tip[0], y - tip[1]);
        (-(px * dir[0] + py * dir[1]), -px * dir[1] + py * dir[0])
    };
    // Its soft shadow first (the stick is above the balls' tops).
    for y in by0..=by1 {
        for x in bx0..=bx1 {
            let (s, d) = coords(x as f64 - shadow[0], y as f64 - shadow[1]);
            if !(-1.0..=length).contains(&s) {
                continue;
            }
            let hw = half(s.max(0.0)) * 1.15;
            let a = (hw - d.abs() + 1.0).clamp(0.0, 2.0) / 2.0 * (s + 1.0).clamp(0.0, 1.0);
            if a > 0.0 {
                img.scale(x, y, 1.0 - 0.4 * a);
            }
        }
    }
    for y in by0..=by1 {
        for x in bx0..=bx1 {
            let (s, d) = coords(x as f64, y as f64);
            if !(-1.0..=length).contains(&s) {
                continue;
            }
            let hw = half(s.max(0.0));
            let a = (hw - d.abs() + 0.5).clamp(0.0, 1.0) * (s + 0.5).clamp(0.0, 1.0);
            if a <= 0.0 {
                continue;
            }
            // A cylinder lit from above, with a glossy line.
            let n = (d / hw).clamp(-1.0, 1.0);
            let shade = 0.55 + 0.45 * (1.0 - n * n).sqrt();
            let gloss = 45.0 * (-((n + 0.35) / 0.18).powi(2)).exp();
            let col = colour(s.max(0.0)).map(|c| c * shade + gloss);
            img.blend(x, y, col, a);
        }
    }
    (inside_play(t, tip) >= 1.5 * r).then(|| CueTruth {
        tip: [tip[0] as f32, tip[1] as f32],
        angle_deg: dir[1].atan2(dir[0]).to_degrees() as f32,
    })
}

/// A hand reaching in from the side nearest to it: palm, four fingers, a thumb and the arm,
/// with a soft shadow. Balls it mostly covers are taken out of the ground truth.
fn hand(mut img: Img<'_>, t: &mut GroundTruth, r: f64, rng: &mut Rng) {
    let (u, v) = (rng.range(0.2, 0.8), rng.range(0.2, 0.8));
    let palm = table_point(t, u, v);
    // The arm comes from the nearest side of the table.
    let edge = [(u, 0.0), (1.0, v), (u, 1.0), (0.0, v)]
        .into_iter()
        .min_by(|a, b| {
            let da = (a.0 - u).abs() + (a.1 - v).abs();
            let db = (b.0 - u).abs() + (b.1 - v).abs();
            da.total_cmp(&db)
        })
        .unwrap_or((u, 0.0));
    let from = table_point(t, edge.0, edge.1);
    let mut fwd = [palm[0] - from[0], palm[1] - from[1]];
    let n = (fwd[0] * fwd[0] + fwd[1] * fwd[1]).sqrt().max(1e-6);
    fwd = [fwd[0] / n, fwd[1] / n];
    let side = [-fwd[1], fwd[0]];
    let flip = if rng.chance(0.5) { 1.0 } else { -1.0 };
    let scale = rng.range(0.9, 1.15);
    // Capsules: (from, to, half-width).
    let at = |a: f64, b: f64| {
        [
            palm[0] + fwd[0] * a + side[0] * b,
            palm[1] + fwd[1] * a + side[1] * b,
        ]
    };
    let mut parts: Vec<([f64; 2], [f64; 2], f64)> = vec![
        (
            at(-40.0 * r, 0.0),
            at(-1.5 * r * scale, 0.0),
            1.15 * r * scale,
        ), // arm
        (
            at(-0.8 * r * scale, 0.0),
            at(0.9 * r * scale, 0.0),
            1.45 * r * scale,
        ), // palm
    ];
    for (i, spread) in [-0.27f64, -0.09, 0.09, 0.27].iter().enumerate() {
        let base = at(1.2 * r * scale, spread * 4.0 * r * scale);
        let len = r * scale * [2.2, 2.6, 2.5, 2.0][i];
        let ang = spread * 0.5 + rng.range(-0.08, 0.08);
        let d = [
            fwd[0] * ang.cos() + side[0] * ang.sin(),
            fwd[1] * ang.cos() + side[1] * ang.sin(),
        ];
        parts.push((
            base,
            [base[0] + d[0] * len, base[1] + d[1] * len],
            0.33 * r * scale,
        ));
    }
    let thumb_base = at(-0.2 * r * scale, flip * 1.2 * r * scale);
    let ta = flip * 1.0;
    let td = [
        fwd[0] * ta.cos() + side[0] * ta.sin(),
        fwd[1] * ta.cos() + side[1] * ta.sin(),
    ];
    parts.push((
        thumb_base,
        [
            thumb_base[0] + td[0] * 1.8 * r * scale,
            thumb_base[1] + td[1] * 1.8 * r * scale,
        ],
        0.4 * r * scale,
    ));
    // Signed distance to the union of the capsules (negative inside).
    let sdf = |x: f64, y: f64| {
        parts
            .iter()
            .map(|&(a, b, hw)| seg_dist([x, y], a, b) - hw)
            .fold(f64::INFINITY, f64::min)
    };
    let tone = rng.range(0.55, 1.15);
    let skin = [
        110.0 * tone * rng.range(0.9, 1.1),
        140.0 * tone,
        205.0 * tone.min(1.05),
    ];
    let shadow = [0.8 * r, 1.0 * r];
    let (x0, y0, x1, y1) = (0, 0, img.w - 1, img.h - 1);
    // Only the hand's neighbourhood matters: a box around the palm and the arm's line.
    let reach = 6.0 * r;
    for y in y0..=y1 {
        for x in x0..=x1 {
            let p = [x as f64, y as f64];
            if seg_dist(p, parts[0].0, at(4.0 * r, 0.0)) > reach {
                continue;
            }
            let ds = sdf(p[0] - shadow[0], p[1] - shadow[1]);
            let d = sdf(p[0], p[1]);
            if ds < 0.8 * r {
                let a = ((0.8 * r - ds) / (1.6 * r)).clamp(0.0, 1.0);
                img.scale(x, y, 1.0 - 0.45 * a);
            }
            let a = (0.5 - d).clamp(0.0, 1.0);
            if a > 0.0 {
                // Rounded: darker towards the outline.
                let shade = 0.72 + 0.28 * (-d / (0.5 * r)).clamp(0.0, 1.0);
                img.blend(x, y, skin.map(|c| c * shade), a);
            }
        }
    }
    // Balls mostly under the hand are not visible.
    t.balls.retain(|b| {
        let covered = (0..9)
            .filter(|&k| {
                let (px, py) = if k == 8 {
                    (b.x as f64, b.y as f64)
                } else {
                    let a = k as f64 * std::f64::consts::FRAC_PI_4;
                    (
                        b.x as f64 + 0.7 * b.radius as f64 * a.cos(),
                        b.y as f64 + 0.7 * b.radius as f64 * a.sin(),
                    )
                };
                sdf(px, py) < 0.0
            })
            .count();
        covered < 3
    });
}

/// How far `p` lies inside the playing area (negative outside): a cue counts as over the
/// table when its tip is at least 1.5 ball radii inside, off the cushions.
pub fn inside_play(t: &GroundTruth, p: [f64; 2]) -> f64 {
    let c = t.table_corners.map(|q| [q[0] as f64, q[1] as f64]);
    let centre = [
        c.iter().map(|q| q[0]).sum::<f64>() / 4.0,
        c.iter().map(|q| q[1]).sum::<f64>() / 4.0,
    ];
    (0..4)
        .map(|i| {
            let (a, b) = (c[i], c[(i + 1) % 4]);
            let (dx, dy) = (b[0] - a[0], b[1] - a[1]);
            let len = (dx * dx + dy * dy).sqrt().max(1e-9);
            let side = |q: [f64; 2]| ((q[0] - a[0]) * dy - (q[1] - a[1]) * dx) / len;
            // Positive towards the centre, whichever way the corners turn.
            if side(centre) >= 0.0 {
                side(p)
            } else {
                -side(p)
            }
        })
        .fold(f64::INFINITY, f64::min)
}

/// Distance from `p` to the segment `a`-`b`.
fn seg_dist(p: [f64; 2], a: [f64; 2], b: [f64; 2]) -> f64 {
    let (dx, dy) = (b[0] - a[0], b[1] - a[1]);
    let l2 = (dx * dx + dy * dy).max(1e-12);
    let s = (((p[0] - a[0]) * dx + (p[1] - a[1]) * dy) / l2).clamp(0.0, 1.0);
    ((p[0] - a[0] - s * dx).powi(2) + (p[1] - a[1] - s * dy).powi(2)).sqrt()
}

/// A dim room: about a third of the light, a warm, cool or green cast, and sensor noise.
fn low_light(img: Img<'_>, rng: &mut Rng) {
    let gain = rng.range(0.28, 0.42);
    let cast = match rng.below(3) {
        0 => [0.82, 0.95, 1.12],
        1 => [1.12, 1.0, 0.85],
        _ => [0.9, 1.1, 0.9],
    };
    let sigma = rng.range(3.0, 6.0);
    for px in img.px.chunks_exact_mut(3) {
        for c in 0..3 {
            let v = px[c] as f64 * gain * cast[c] + sigma * rng.gauss();
            px[c] = v.round().clamp(0.0, 255.0) as u8;
        }
    }
}

/// Smears three to six balls along a random direction of travel by 0.6-1.6 radii, as a fast
/// ball looks in one exposure; the blur is centred on the ball, so its centre stays true.
fn motion_blur(img: Img<'_>, t: &GroundTruth, r: f64, rng: &mut Rng) {
    let n = (3 + rng.below(4)).min(t.balls.len());
    let mut order: Vec<usize> = (0..t.balls.len()).collect();
    rng.shuffle(&mut order);
    const TAPS: usize = 9;
    for &i in &order[..n] {
        let b = &t.balls[i];
        let a = rng.range(0.0, std::f64::consts::TAU);
        let len = r * rng.range(0.6, 1.6);
        let d = [a.cos() * len, a.sin() * len];
        let (x0, y0, x1, y1) = img.bounds(b.x as f64, b.y as f64, b.radius as f64 + len + 2.0);
        let (bw, bh) = (x1 - x0 + 1, y1 - y0 + 1);
        let mut src = vec![0u8; bw * bh * 3];
        for y in 0..bh {
            let o = ((y0 + y) * img.w + x0) * 3;
            src[y * bw * 3..(y + 1) * bw * 3].copy_from_slice(&img.px[o..o + bw * 3]);
        }
        for y in 0..bh {
            for x in 0..bw {
                let mut acc = [0.0f64; 3];
                for k in 0..TAPS {
                    let f = k as f64 / (TAPS - 1) as f64 - 0.5;
                    let sx = (x as f64 - f * d[0]).round().clamp(0.0, (bw - 1) as f64) as usize;
                    let sy = (y as f64 - f * d[1]).round().clamp(0.0, (bh - 1) as f64) as usize;
                    let o = (sy * bw + sx) * 3;
                    for c in 0..3 {
                        acc[c] += src[o + c] as f64;
                    }
                }
                let o = ((y0 + y) * img.w + x0 + x) * 3;
                for c in 0..3 {
                    img.px[o + c] = (acc[c] / TAPS as f64).round() as u8;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Scene, SceneParams};
    use super::*;

    fn frame(seed: u64, style: SceneStyle) -> (Vec<u8>, GroundTruth) {
        let scene = Scene::new(SceneParams::new(640, 360, seed).with_style(style)).unwrap();
        let mut buf = vec![0u8; scene.frame_len()];
        let gt = scene.render_into(&mut buf).unwrap();
        (buf, gt)
    }

    #[test]
    fn names_round_trip() {
        for c in Condition::ALL {
            assert_eq!(Condition::from_name(c.name()), Some(c));
        }
        assert_eq!(Condition::from_name("fog"), None);
    }

    #[test]
    fn conditions_are_deterministic_and_change_the_frame() {
        for c in [
            Condition::Glare,
            Condition::Cue,
            Condition::Hand,
            Condition::LowLight,
            Condition::MotionBlur,
        ] {
            let (clean, gt0) = frame(3, SceneStyle::default().still());
            let (mut a, mut ga) = (clean.clone(), gt0.clone());
            let (mut b, mut gb) = (clean.clone(), gt0.clone());
            let ta = c.apply(&mut a, 640, 360, &mut ga, 9);
            let tb = c.apply(&mut b, 640, 360, &mut gb, 9);
            assert_eq!(a, b, "{c:?}");
            assert_eq!(ta, tb, "{c:?}");
            assert_eq!(ga, gb, "{c:?}");
            assert_ne!(a, clean, "{c:?} draws something");
        }
    }

    #[test]
    fn the_cue_tip_is_where_the_stick_ends() {
        let (clean, gt0) = frame(5, SceneStyle::default().still());
        let mut hits = 0;
        for seed in 0..10 {
            let (mut f, mut gt) = (clean.clone(), gt0.clone());
            let Some(cue) = Condition::Cue.apply(&mut f, 640, 360, &mut gt, seed) else {
                continue;
            };
            hits += 1;
            let a = (cue.angle_deg as f64).to_radians();
            let px = |s: f64| {
                let x = (cue.tip[0] as f64 - a.cos() * s).round() as usize;
                let y = (cue.tip[1] as f64 - a.sin() * s).round() as usize;
                let o = (y * 640 + x) * 3;
                (f[o..o + 3].to_vec(), clean[o..o + 3].to_vec())
            };
            // Behind the tip, on the ferrule: drawn over.
            let (drawn, was) = px(4.0);
            assert_ne!(drawn, was, "seed {seed}: {cue:?}");
        }
        assert!(hits >= 8, "the tip is in view in most scenes: {hits}");
    }

    #[test]
    fn a_hand_hides_the_balls_under_it() {
        let mut hidden = 0;
        for seed in 0..20 {
            let (mut f, mut gt) = frame(seed, SceneStyle::default().still());
            let before = gt.balls.len();
            Condition::Hand.apply(&mut f, 640, 360, &mut gt, seed);
            hidden += before - gt.balls.len();
        }
        assert!(hidden > 0, "some ball is under some hand");
    }

    #[test]
    fn style_conditions_make_valid_scenes() {
        for seed in 0..20 {
            for c in [Condition::Tilt, Condition::Rack] {
                let style = c.style(SceneStyle::varied(seed), seed);
                Scene::new(SceneParams::new(320, 180, seed).with_style(style))
                    .unwrap_or_else(|e| panic!("{c:?} seed {seed}: {e}"));
            }
        }
    }
}
