//! An independent synthetic table renderer ("alt look"), used by the tests and `vision-eval`
//! so that the detector is not tuned to the official renderer of the video worker.
//!
//! It differs on purpose from `billiards_video_worker::synthetic`: per-pixel inverse mapping
//! through a homography (perspective), felt texture with low-frequency mottling, several lamp
//! pools plus a vignette, Phong-shaded 3-D balls with randomly rotated stripe bands and number
//! circles (or a flat, rim-darkened style), soft offset shadows, pearl diamonds, a head spot,
//! pockets, optional defocus and Gaussian sensor noise. Everything is driven by one seed.

use crate::model::BallKind;

pub mod conditions;

/// A small deterministic generator (SplitMix64): reproducible scenes without a dependency.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Uniform in [a, b).
    pub fn range(&mut self, a: f64, b: f64) -> f64 {
        a + (b - a) * self.f64()
    }
    /// Uniform integer in [0, n).
    pub fn below(&mut self, n: usize) -> usize {
        ((self.f64() * n as f64) as usize).min(n.saturating_sub(1))
    }
    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.f64() < p
    }
    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = self.f64().max(1e-12);
        let u2 = self.f64();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

/// One ball of the ground truth, in frame pixels (pixel centres at integer coordinates).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrueBall {
    /// Centre, x.
    pub x: f32,
    /// Centre, y.
    pub y: f32,
    /// Radius in the image.
    pub radius: f32,
    /// Pool number (0 = cue).
    pub number: u32,
    /// Kind derived from the number.
    pub kind: BallKind,
}

/// Ground truth of one rendered frame.
#[derive(Debug, Clone, PartialEq)]
pub struct Truth {
    /// Every ball on the table.
    pub balls: Vec<TrueBall>,
    /// Corners of the playing surface (cushion noses), clockwise from top-left.
    pub corners: [[f32; 2]; 4],
}

/// Knobs of one alt-look scene; [`AltScene::random`] draws them from a seed.
#[derive(Debug, Clone)]
pub struct AltScene {
    /// Frame width.
    pub width: u32,
    /// Frame height.
    pub height: u32,
    /// Seed of every random choice.
    pub seed: u64,
    /// Overall light gain (dim scenes below 0.5).
    pub gain: f64,
    /// Sensor noise standard deviation, in 8-bit levels.
    pub noise_sigma: f64,
    /// Corner jitter of the homography, as a fraction of the frame size (perspective).
    pub perspective: f64,
    /// Camera tilt: the far (top) side of the table is this fraction of its length shorter
    /// than the near side, and pushed down by half of it (0 = overhead).
    pub tilt: f64,
    /// Always rack balls (some scenes do anyway).
    pub rack: bool,
}

impl AltScene {
    /// A varied scene drawn from `seed`: about one frame in six is dim, one in four noisy.
    pub fn random(width: u32, height: u32, seed: u64) -> Self {
        let mut rng = Rng::new(seed.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ 0xA17);
        let gain = if rng.chance(0.17) {
            rng.range(0.32, 0.5)
        } else {
            rng.range(0.7, 1.15)
        };
        let noise_sigma = if rng.chance(0.25) {
            rng.range(6.0, 12.0)
        } else {
            rng.range(0.5, 4.0)
        };
        let perspective = rng.range(0.0, 0.03);
        AltScene {
            width,
            height,
            seed,
            gain,
            noise_sigma,
            perspective,
            tilt: 0.0,
            rack: false,
        }
    }
}

/// A 3x3 homography (row-major).
#[derive(Debug, Clone, Copy)]
struct Homography([f64; 9]);

impl Homography {
    /// The homography mapping `src[i]` to `dst[i]` (solves the 8x8 DLT system).
    fn from_points(src: &[[f64; 2]; 4], dst: &[[f64; 2]; 4]) -> Option<Self> {
        let mut a = [[0.0f64; 9]; 8];
        for i in 0..4 {
            let [x, y] = src[i];
            let [u, v] = dst[i];
            a[2 * i] = [x, y, 1.0, 0.0, 0.0, 0.0, -u * x, -u * y, u];
            a[2 * i + 1] = [0.0, 0.0, 0.0, x, y, 1.0, -v * x, -v * y, v];
        }
        // Gaussian elimination with partial pivoting on the augmented 8x9 matrix.
        for col in 0..8 {
            let piv = (col..8).max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))?;
            if a[piv][col].abs() < 1e-12 {
                return None;
            }
            a.swap(col, piv);
            for row in 0..8 {
                if row != col {
                    let f = a[row][col] / a[col][col];
                    let pivot_row = a[col];
                    for (x, p) in a[row].iter_mut().zip(pivot_row.iter()).skip(col) {
                        *x -= f * p;
                    }
                }
            }
        }
        let mut h = [0.0; 9];
        for i in 0..8 {
            h[i] = a[i][8] / a[i][i];
        }
        h[8] = 1.0;
        Some(Homography(h))
    }

    fn apply(&self, x: f64, y: f64) -> [f64; 2] {
        let h = &self.0;
        let w = h[6] * x + h[7] * y + h[8];
        [
            (h[0] * x + h[1] * y + h[2]) / w,
            (h[3] * x + h[4] * y + h[5]) / w,
        ]
    }

    fn inverse(&self) -> Option<Self> {
        let m = &self.0;
        let det = m[0] * (m[4] * m[8] - m[5] * m[7]) - m[1] * (m[3] * m[8] - m[5] * m[6])
            + m[2] * (m[3] * m[7] - m[4] * m[6]);
        if det.abs() < 1e-15 {
            return None;
        }
        let inv = [
            (m[4] * m[8] - m[5] * m[7]) / det,
            (m[2] * m[7] - m[1] * m[8]) / det,
            (m[1] * m[5] - m[2] * m[4]) / det,
            (m[5] * m[6] - m[3] * m[8]) / det,
            (m[0] * m[8] - m[2] * m[6]) / det,
            (m[2] * m[3] - m[0] * m[5]) / det,
            (m[3] * m[7] - m[4] * m[6]) / det,
            (m[1] * m[6] - m[0] * m[7]) / det,
            (m[0] * m[4] - m[1] * m[3]) / det,
        ];
        Some(Homography(inv))
    }

    /// Local linear scale (square root of the Jacobian determinant) at a source point.
    fn scale_at(&self, x: f64, y: f64) -> f64 {
        let e = 1e-3;
        let p = self.apply(x, y);
        let px = self.apply(x + e, y);
        let py = self.apply(x, y + e);
        let j = (px[0] - p[0]) * (py[1] - p[1]) - (px[1] - p[1]) * (py[0] - p[0]);
        (j.abs()).sqrt() / e
    }
}

fn hsv_to_bgr(h: f64, s: f64, v: f64) -> [f64; 3] {
    let h = h.rem_euclid(360.0) / 60.0;
    let c = v * s;
    let x = c * (1.0 - ((h % 2.0) - 1.0).abs());
    let (r, g, b) = match h as u32 {
        0 => (c, x, 0.0),
        1 => (x, c, 0.0),
        2 => (0.0, c, x),
        3 => (0.0, x, c),
        4 => (x, 0.0, c),
        _ => (c, 0.0, x),
    };
    let m = v - c;
    [(b + m) * 255.0, (g + m) * 255.0, (r + m) * 255.0]
}

/// Ball colours (BGR) of numbers 1..=7 (9..=15 share them), deliberately not the official
/// renderer's palette.
const BALL_COLOURS: [[f64; 3]; 7] = [
    [20.0, 190.0, 240.0], // yellow
    [170.0, 70.0, 15.0],  // blue
    [35.0, 35.0, 210.0],  // red
    [125.0, 35.0, 95.0],  // purple
    [25.0, 115.0, 245.0], // orange
    [70.0, 125.0, 15.0],  // green
    [35.0, 30.0, 125.0],  // maroon
];

/// Geometry of the table in its own plane: the playing surface is [0, 2] x [0, 1].
const PLAY_L: f64 = 2.0;
const PLAY_W: f64 = 1.0;
const CUSHION: f64 = 0.045;
const RAIL: f64 = 0.09;

struct PlacedBall {
    u: f64,
    v: f64,
    number: u32,
}

/// Renders the scene into `out` (BGR, `width * height * 3` bytes, resized as needed) and
/// returns its ground truth.
pub fn render_alt(scene: &AltScene, out: &mut Vec<u8>) -> Truth {
    let (w, h) = (scene.width as usize, scene.height as usize);
    out.clear();
    out.resize(w * h * 3, 0);
    let mut rng = Rng::new(scene.seed);

    // Table size relative to ball: 7 ft to 9 ft tables.
    let ball_r = PLAY_L / (2.0 * rng.range(34.0, 45.0));
    let outer = CUSHION + RAIL;
    let (ol, ow) = (PLAY_L + 2.0 * outer, PLAY_W + 2.0 * outer);
    let fill = rng.range(0.86, 0.99);
    let s = (fill * w as f64 / ol).min(fill * h as f64 / ow);
    let rot = rng.range(-3.0f64, 3.0).to_radians();
    let (cx, cy) = (
        w as f64 / 2.0 + rng.range(-0.02, 0.02) * w as f64,
        h as f64 / 2.0 + rng.range(-0.02, 0.02) * h as f64,
    );
    let src = [
        [-outer, -outer],
        [PLAY_L + outer, -outer],
        [PLAY_L + outer, PLAY_W + outer],
        [-outer, PLAY_W + outer],
    ];
    let mut dst = [[0.0; 2]; 4];
    for (i, (d, p)) in dst.iter_mut().zip(src.iter()).enumerate() {
        let (mut x, mut y) = ((p[0] - PLAY_L / 2.0) * s, (p[1] - PLAY_W / 2.0) * s);
        if i < 2 && scene.tilt > 0.0 {
            // The far side: shorter and lower, as a camera tilted towards it sees it.
            x *= 1.0 - scene.tilt;
            y += 0.5 * scene.tilt * (ow * s);
        }
        let (xr, yr) = (x * rot.cos() - y * rot.sin(), x * rot.sin() + y * rot.cos());
        *d = [
            cx + xr + rng.range(-1.0, 1.0) * scene.perspective * w as f64,
            cy + yr + rng.range(-1.0, 1.0) * scene.perspective * h as f64,
        ];
    }
    let hmg = Homography::from_points(&src, &dst).expect("non-degenerate table corners");
    let inv = hmg.inverse().expect("invertible homography");

    // Cloth colour: common cloths and a few harder ones.
    let cloth_hsv = match rng.below(10) {
        0..=2 => (
            rng.range(112.0, 140.0),
            rng.range(0.6, 0.85),
            rng.range(0.45, 0.62),
        ), // green
        3..=4 => (
            rng.range(200.0, 222.0),
            rng.range(0.6, 0.85),
            rng.range(0.5, 0.7),
        ), // blue
        5 => (
            rng.range(-8.0, 6.0),
            rng.range(0.7, 0.85),
            rng.range(0.45, 0.6),
        ), // red
        6 => (
            rng.range(270.0, 290.0),
            rng.range(0.5, 0.7),
            rng.range(0.4, 0.55),
        ), // purple
        7 => (
            rng.range(178.0, 192.0),
            rng.range(0.6, 0.8),
            rng.range(0.45, 0.6),
        ), // teal
        8 => (
            rng.range(340.0, 350.0),
            rng.range(0.65, 0.8),
            rng.range(0.33, 0.42),
        ), // wine
        _ => (
            rng.range(205.0, 215.0),
            rng.range(0.3, 0.4),
            rng.range(0.5, 0.6),
        ), // slate
    };
    let cloth = hsv_to_bgr(cloth_hsv.0, cloth_hsv.1, cloth_hsv.2);
    let cushion_col = cloth.map(|c| c * rng.range(0.78, 0.9));
    let wood = hsv_to_bgr(
        rng.range(18.0, 32.0),
        rng.range(0.5, 0.75),
        rng.range(0.25, 0.5),
    );
    let floor = hsv_to_bgr(
        rng.range(0.0, 360.0),
        rng.range(0.0, 0.3),
        rng.range(0.08, 0.3),
    );
    let grain_f = rng.range(60.0, 140.0);
    let mottle: Vec<(f64, f64, f64, f64)> = (0..4)
        .map(|_| {
            (
                rng.range(2.0, 9.0),
                rng.range(2.0, 9.0),
                rng.range(0.0, 6.3),
                rng.range(0.01, 0.03),
            )
        })
        .collect();

    // Lighting: lamp pools + linear gradient + vignette, times a gain.
    let lamps: Vec<(f64, f64, f64, f64)> = (0..1 + rng.below(3))
        .map(|_| {
            (
                rng.range(0.2, 0.8) * w as f64,
                rng.range(0.3, 0.7) * h as f64,
                rng.range(0.25, 0.5) * w as f64,
                rng.range(0.15, 0.5),
            )
        })
        .collect();
    let grad = (rng.range(-0.3, 0.3), rng.range(-0.3, 0.3));
    let vignette = rng.range(0.0, 0.35);
    let light = |x: f64, y: f64| -> f64 {
        let (nx, ny) = (x / w as f64 - 0.5, y / h as f64 - 0.5);
        let mut l = 0.75 + grad.0 * nx + grad.1 * ny - vignette * (nx * nx + ny * ny) * 2.0;
        for &(lx, ly, sg, a) in &lamps {
            let d2 = (x - lx).powi(2) + (y - ly).powi(2);
            l += a * (-d2 / (2.0 * sg * sg)).exp();
        }
        l.max(0.25) * scene.gain
    };

    // Pockets (table plane): corners pushed outwards, sides further out.
    let pr_c = ball_r * rng.range(1.7, 2.0);
    let pr_s = ball_r * rng.range(1.8, 2.1);
    let pockets = [
        (-0.25 * pr_c, -0.25 * pr_c, pr_c),
        (PLAY_L + 0.25 * pr_c, -0.25 * pr_c, pr_c),
        (PLAY_L + 0.25 * pr_c, PLAY_W + 0.25 * pr_c, pr_c),
        (-0.25 * pr_c, PLAY_W + 0.25 * pr_c, pr_c),
        (PLAY_L / 2.0, -0.6 * pr_s, pr_s),
        (PLAY_L / 2.0, PLAY_W + 0.6 * pr_s, pr_s),
    ];
    let diamonds: Vec<(f64, f64)> = {
        let mut d = Vec::new();
        let off = CUSHION + RAIL / 2.0;
        for i in 1..8 {
            if i == 4 {
                continue;
            }
            let u = PLAY_L * i as f64 / 8.0;
            d.push((u, -off));
            d.push((u, PLAY_W + off));
        }
        for i in 1..4 {
            let v = PLAY_W * i as f64 / 4.0;
            d.push((-off, v));
            d.push((PLAY_L + off, v));
        }
        d
    };
    let diamond_r = ball_r * 0.35;
    let head_spot = rng.chance(0.6);

    // Balls.
    let balls = place_balls(&mut rng, ball_r, &pockets, scene.rack);
    let light_dir = {
        let (lx, ly) = (rng.range(-0.5, 0.5), rng.range(-0.5, 0.5));
        let n = (lx * lx + ly * ly + 1.0f64).sqrt();
        [lx / n, ly / n, 1.0 / n]
    };
    let shadow_off = (-light_dir[0] * 0.35, -light_dir[1] * 0.35);
    let shadow_dark = rng.range(0.5, 0.8);
    let flat_style = rng.chance(0.3);

    // Ball positions in the image, for shadows.
    let img_balls: Vec<(f64, f64, f64)> = balls
        .iter()
        .map(|b| {
            let p = hmg.apply(b.u, b.v);
            (p[0], p[1], ball_r * hmg.scale_at(b.u, b.v))
        })
        .collect();

    // Background pass: per pixel, inverse-map to the table plane.
    for y in 0..h {
        for x in 0..w {
            let [u, v] = inv.apply(x as f64, y as f64);
            let mut col;
            let in_outer = u >= -outer && u <= PLAY_L + outer && v >= -outer && v <= PLAY_W + outer;
            if !in_outer {
                let t = ((x * 7 + y * 13) % 17) as f64 / 17.0 - 0.5;
                col = floor.map(|c| c * (1.0 + 0.1 * t));
            } else {
                let in_play = (0.0..=PLAY_L).contains(&u) && (0.0..=PLAY_W).contains(&v);
                let in_cushion = (-CUSHION..=PLAY_L + CUSHION).contains(&u)
                    && (-CUSHION..=PLAY_W + CUSHION).contains(&v);
                if in_play {
                    let mut m = 1.0;
                    for &(fu, fv, ph, a) in &mottle {
                        m += a * (fu * u + ph).sin() * (fv * v + ph * 0.7).cos();
                    }
                    col = cloth.map(|c| c * m);
                    if head_spot {
                        let d = ((u - PLAY_L * 0.25).powi(2) + (v - PLAY_W * 0.5).powi(2)).sqrt();
                        if d < ball_r * 0.22 {
                            col = [200.0, 205.0, 205.0];
                        }
                    }
                } else if in_cushion {
                    // A darker line along the nose where the cushion meets the bed.
                    let dn = (-u).max(-v).max(u - PLAY_L).max(v - PLAY_W);
                    let k = if dn < CUSHION * 0.15 { 0.8 } else { 1.0 };
                    col = cushion_col.map(|c| c * k);
                } else {
                    let g = 1.0 + 0.12 * ((u + v * 0.3) * grain_f).sin();
                    col = wood.map(|c| c * g);
                    for &(du, dv) in &diamonds {
                        if (u - du).powi(2) + (v - dv).powi(2) < diamond_r * diamond_r {
                            col = [215.0, 225.0, 230.0];
                        }
                    }
                }
                for &(pu, pv, pr) in &pockets {
                    let d2 = (u - pu).powi(2) + (v - pv).powi(2);
                    if d2 < pr * pr && !(in_play && pocket_excluded(u, v, pu, pv)) {
                        let k = (d2 / (pr * pr)).sqrt();
                        col = [12.0 + 18.0 * k, 12.0 + 18.0 * k, 14.0 + 18.0 * k];
                    }
                }
                // Soft shadows of the balls on the bed.
                if in_play {
                    for &(bx, by, br) in &img_balls {
                        let (sx, sy) = (bx + shadow_off.0 * br, by + shadow_off.1 * br);
                        let d = (((x as f64 - sx).powi(2) + (y as f64 - sy).powi(2)).sqrt()) / br;
                        if d < 1.4 {
                            let a = ((1.4 - d) / 0.5).clamp(0.0, 1.0);
                            let k = 1.0 - (1.0 - shadow_dark) * a;
                            col = col.map(|c| c * k);
                        }
                    }
                }
            }
            let l = light(x as f64, y as f64);
            let o = (y * w + x) * 3;
            for c in 0..3 {
                out[o + c] = col[c].mul_add(l, 0.0).clamp(0.0, 255.0) as u8;
            }
        }
    }

    // Balls on top.
    let mut truth_balls = Vec::with_capacity(balls.len());
    for (b, &(bx, by, br)) in balls.iter().zip(img_balls.iter()) {
        let rot = random_rotation(&mut rng);
        let band = rng.range(0.42, 0.58);
        let spec = rng.range(0.25, 0.7);
        let l = light(bx, by);
        draw_ball(
            out,
            w,
            h,
            (bx, by, br),
            b.number,
            &rot,
            band,
            light_dir,
            spec,
            flat_style,
            l,
        );
        truth_balls.push(TrueBall {
            x: bx as f32,
            y: by as f32,
            radius: br as f32,
            number: b.number,
            kind: BallKind::from_number(b.number),
        });
    }

    // Optional defocus, then sensor noise.
    if rng.chance(0.3) {
        box_blur3(out, w, h);
    }
    if scene.noise_sigma > 0.0 {
        let mut nrng = Rng::new(scene.seed ^ 0x5EED);
        for px in out.iter_mut() {
            let n = nrng.normal() * scene.noise_sigma;
            *px = (*px as f64 + n).round().clamp(0.0, 255.0) as u8;
        }
    }

    let corners = [[0.0, 0.0], [PLAY_L, 0.0], [PLAY_L, PLAY_W], [0.0, PLAY_W]].map(|[u, v]| {
        let p = hmg.apply(u, v);
        [p[0] as f32, p[1] as f32]
    });
    Truth {
        balls: truth_balls,
        corners,
    }
}

/// The pocket circle does not eat the bed far from its own corner (keeps the bed's edges
/// straight beyond the pocket mouth).
fn pocket_excluded(u: f64, v: f64, pu: f64, pv: f64) -> bool {
    (u - pu).abs() > 0.2 || (v - pv).abs() > 0.2
}

fn place_balls(
    rng: &mut Rng,
    r: f64,
    pockets: &[(f64, f64, f64); 6],
    rack: bool,
) -> Vec<PlacedBall> {
    let mut balls: Vec<PlacedBall> = Vec::new();
    let ok = |balls: &[PlacedBall], u: f64, v: f64| -> bool {
        if !(r..=PLAY_L - r).contains(&u) || !(r..=PLAY_W - r).contains(&v) {
            return false;
        }
        if pockets
            .iter()
            .any(|&(pu, pv, pr)| (u - pu).powi(2) + (v - pv).powi(2) < (pr + r * 1.05).powi(2))
        {
            return false;
        }
        balls
            .iter()
            .all(|b| (b.u - u).powi(2) + (b.v - v).powi(2) >= (2.0 * r).powi(2) * 0.9999)
    };
    let mut numbers: Vec<u32> = (0..16).collect();
    // Shuffle.
    for i in (1..numbers.len()).rev() {
        let j = rng.below(i + 1);
        numbers.swap(i, j);
    }
    // The draw comes first so that scenes without `rack` stay as they were.
    if rng.chance(0.12) || rack {
        // A rack of 10 or 15 balls, touching, plus a few strays.
        let rows = if rng.chance(0.5) { 5 } else { 4 };
        let (fu, fv) = (PLAY_L * rng.range(0.62, 0.8), PLAY_W * rng.range(0.4, 0.6));
        let gap = 1.0 + rng.range(0.0, 0.01);
        let mut k = 0;
        for row in 0..rows {
            for i in 0..=row {
                let u = fu + row as f64 * 2.0 * r * gap * 0.866_025_4;
                let v = fv + (i as f64 - row as f64 / 2.0) * 2.0 * r * gap;
                if ok(&balls, u, v) && k < numbers.len() {
                    balls.push(PlacedBall {
                        u,
                        v,
                        number: numbers[k],
                    });
                    k += 1;
                }
            }
        }
        numbers.drain(..k);
        let extra = rng.below(3).min(numbers.len());
        numbers.truncate(extra);
    } else {
        let n = 1 + rng.below(16);
        numbers.truncate(n);
    }
    for number in numbers {
        for _ in 0..100 {
            let mode = rng.f64();
            let (u, v) = if mode < 0.35 && !balls.is_empty() {
                let b = &balls[rng.below(balls.len())];
                let a = rng.range(0.0, std::f64::consts::TAU);
                let d = 2.0 * r * (1.0 + rng.range(0.0, 0.012));
                (b.u + d * a.cos(), b.v + d * a.sin())
            } else if mode < 0.55 {
                let e = r * (1.0 + rng.range(0.0, 0.02));
                match rng.below(4) {
                    0 => (rng.range(r, PLAY_L - r), e),
                    1 => (rng.range(r, PLAY_L - r), PLAY_W - e),
                    2 => (e, rng.range(r, PLAY_W - r)),
                    _ => (PLAY_L - e, rng.range(r, PLAY_W - r)),
                }
            } else {
                (rng.range(r, PLAY_L - r), rng.range(r, PLAY_W - r))
            };
            if ok(&balls, u, v) {
                balls.push(PlacedBall { u, v, number });
                break;
            }
        }
    }
    balls
}

fn random_rotation(rng: &mut Rng) -> [[f64; 3]; 3] {
    // Uniform random unit quaternion (Shoemake).
    let (u1, u2, u3) = (rng.f64(), rng.f64(), rng.f64());
    let t = std::f64::consts::TAU;
    let (a, b) = ((1.0 - u1).sqrt(), u1.sqrt());
    let (x, y, z, w) = (
        a * (t * u2).sin(),
        a * (t * u2).cos(),
        b * (t * u3).sin(),
        b * (t * u3).cos(),
    );
    [
        [
            1.0 - 2.0 * (y * y + z * z),
            2.0 * (x * y - z * w),
            2.0 * (x * z + y * w),
        ],
        [
            2.0 * (x * y + z * w),
            1.0 - 2.0 * (x * x + z * z),
            2.0 * (y * z - x * w),
        ],
        [
            2.0 * (x * z - y * w),
            2.0 * (y * z + x * w),
            1.0 - 2.0 * (x * x + y * y),
        ],
    ]
}

#[allow(clippy::too_many_arguments)]
fn draw_ball(
    out: &mut [u8],
    w: usize,
    h: usize,
    (bx, by, br): (f64, f64, f64),
    number: u32,
    rot: &[[f64; 3]; 3],
    band: f64,
    light: [f64; 3],
    spec: f64,
    flat: bool,
    lum: f64,
) {
    const WHITE: [f64; 3] = [232.0, 238.0, 240.0];
    const BLACK: [f64; 3] = [22.0, 22.0, 24.0];
    let base = match number {
        0 => WHITE,
        8 => BLACK,
        1..=7 => BALL_COLOURS[(number - 1) as usize],
        9..=15 => BALL_COLOURS[(number - 9) as usize],
        _ => WHITE,
    };
    let half = {
        let v = [light[0], light[1], light[2] + 1.0];
        let n = (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt();
        [v[0] / n, v[1] / n, v[2] / n]
    };
    let x0 = (bx - br - 1.0).floor().max(0.0) as usize;
    let x1 = ((bx + br + 1.0).ceil() as usize).min(w - 1);
    let y0 = (by - br - 1.0).floor().max(0.0) as usize;
    let y1 = ((by + br + 1.0).ceil() as usize).min(h - 1);
    for y in y0..=y1 {
        for x in x0..=x1 {
            let (dx, dy) = (x as f64 - bx, y as f64 - by);
            let d = (dx * dx + dy * dy).sqrt();
            let alpha = (br - d + 0.5).clamp(0.0, 1.0);
            if alpha <= 0.0 {
                continue;
            }
            let (mut nx, mut ny) = (dx / br, dy / br);
            let q0 = nx * nx + ny * ny;
            if q0 > 1.0 {
                // Anti-aliased rim pixels just outside the disc use the silhouette normal.
                nx /= q0.sqrt();
                ny /= q0.sqrt();
            }
            let q = q0.min(1.0);
            let n = [nx, ny, (1.0 - q).sqrt()];
            // Pattern in the ball's own frame.
            let m = [
                rot[0][0] * n[0] + rot[0][1] * n[1] + rot[0][2] * n[2],
                rot[1][0] * n[0] + rot[1][1] * n[1] + rot[1][2] * n[2],
                rot[2][0] * n[0] + rot[2][1] * n[1] + rot[2][2] * n[2],
            ];
            let mut c = match number {
                0 => WHITE,
                9..=15 if m[2].abs() > band => WHITE,
                _ => base,
            };
            if number != 0 && m[0] > 0.94 {
                c = if m[0] > 0.988 { BLACK } else { WHITE };
            }
            let shade = if flat {
                1.0 - 0.4 * q * q
            } else {
                let diff = (n[0] * light[0] + n[1] * light[1] + n[2] * light[2]).max(0.0);
                0.3 + 0.75 * diff
            };
            let mut col = c.map(|v| v * shade * lum);
            if !flat {
                let nh = (n[0] * half[0] + n[1] * half[1] + n[2] * half[2]).max(0.0);
                let s = spec * nh.powi(60) * 255.0 * lum.min(1.0);
                col = col.map(|v| v + s);
            }
            let o = (y * w + x) * 3;
            for k in 0..3 {
                let bg = out[o + k] as f64;
                out[o + k] = (bg + alpha * (col[k] - bg)).clamp(0.0, 255.0) as u8;
            }
        }
    }
}

fn box_blur3(img: &mut [u8], w: usize, h: usize) {
    let src = img.to_vec();
    for y in 1..h - 1 {
        for x in 1..w - 1 {
            for c in 0..3 {
                let mut s = 0u32;
                for dy in 0..3 {
                    for dx in 0..3 {
                        s += src[((y + dy - 1) * w + x + dx - 1) * 3 + c] as u32;
                    }
                }
                img[(y * w + x) * 3 + c] = ((s + 4) / 9) as u8;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn homography_maps_its_points() {
        let src = [[0.0, 0.0], [2.0, 0.0], [2.0, 1.0], [0.0, 1.0]];
        let dst = [[10.0, 12.0], [500.0, 8.0], [520.0, 260.0], [5.0, 250.0]];
        let h = Homography::from_points(&src, &dst).unwrap();
        let inv = h.inverse().unwrap();
        for (s, d) in src.iter().zip(dst.iter()) {
            let p = h.apply(s[0], s[1]);
            assert!((p[0] - d[0]).abs() < 1e-6 && (p[1] - d[1]).abs() < 1e-6);
            let q = inv.apply(d[0], d[1]);
            assert!((q[0] - s[0]).abs() < 1e-9 && (q[1] - s[1]).abs() < 1e-9);
        }
    }

    #[test]
    fn scenes_are_deterministic_and_balls_do_not_overlap() {
        let sc = AltScene::random(320, 180, 42);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        let ta = render_alt(&sc, &mut a);
        let tb = render_alt(&sc, &mut b);
        assert_eq!(a, b);
        assert_eq!(ta, tb);
        for (i, p) in ta.balls.iter().enumerate() {
            for q in &ta.balls[i + 1..] {
                let d = ((p.x - q.x).powi(2) + (p.y - q.y).powi(2)).sqrt();
                assert!(d >= (p.radius + q.radius) * 0.97, "{p:?} {q:?}");
            }
        }
    }
}
