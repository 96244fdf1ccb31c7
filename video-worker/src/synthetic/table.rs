//! Table geometry (metres), the camera (a homography from the table plane to the image) and
//! the cached background: floor, rails with sights, cushions, pockets and cloth, shaded by
//! the lighting field. The background is rendered once per scene.

use super::rng::mix;
use super::style::SceneStyle;

/// Playing-surface length of a 9-ft table, cushion nose to cushion nose, in metres.
pub const TABLE_LENGTH_M: f64 = 2.54;
/// Playing-surface width of a 9-ft table, in metres.
pub const TABLE_WIDTH_M: f64 = 1.27;
/// Radius of a standard pool ball (57.15 mm diameter), in metres.
pub const BALL_RADIUS_M: f64 = 0.028_575;
/// Width of the cushion band outside the playing surface.
pub(crate) const CUSHION_M: f64 = 0.05;
/// Width of the wooden rail outside the cushion.
pub(crate) const RAIL_M: f64 = 0.11;

/// Pockets: centre (x, y) and radius, in table metres.
pub(crate) const POCKETS: [(f64, f64, f64); 6] = [
    (-0.02, -0.02, 0.062),
    (TABLE_LENGTH_M + 0.02, -0.02, 0.062),
    (-0.02, TABLE_WIDTH_M + 0.02, 0.062),
    (TABLE_LENGTH_M + 0.02, TABLE_WIDTH_M + 0.02, 0.062),
    (TABLE_LENGTH_M / 2.0, -0.038, 0.056),
    (TABLE_LENGTH_M / 2.0, TABLE_WIDTH_M + 0.038, 0.056),
];

/// A plane-to-plane projective map.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Homography(pub [[f64; 3]; 3]);

impl Homography {
    pub(crate) fn apply(&self, x: f64, y: f64) -> (f64, f64) {
        let m = &self.0;
        let w = m[2][0] * x + m[2][1] * y + m[2][2];
        (
            (m[0][0] * x + m[0][1] * y + m[0][2]) / w,
            (m[1][0] * x + m[1][1] * y + m[1][2]) / w,
        )
    }

    pub(crate) fn mul(&self, o: &Homography) -> Homography {
        let mut r = [[0.0; 3]; 3];
        for (i, row) in r.iter_mut().enumerate() {
            for (j, v) in row.iter_mut().enumerate() {
                *v = (0..3).map(|k| self.0[i][k] * o.0[k][j]).sum();
            }
        }
        Homography(r)
    }

    pub(crate) fn inverse(&self) -> Option<Homography> {
        let m = &self.0;
        let c = |r0: usize, c0: usize, r1: usize, c1: usize| {
            m[r0][c0] * m[r1][c1] - m[r0][c1] * m[r1][c0]
        };
        let det = m[0][0] * c(1, 1, 2, 2) - m[0][1] * c(1, 0, 2, 2) + m[0][2] * c(1, 0, 2, 1);
        if !det.is_finite() || det.abs() < 1e-12 {
            return None;
        }
        let adj = [
            [c(1, 1, 2, 2), -c(0, 1, 2, 2), c(0, 1, 1, 2)],
            [-c(1, 0, 2, 2), c(0, 0, 2, 2), -c(0, 0, 1, 2)],
            [c(1, 0, 2, 1), -c(0, 0, 2, 1), c(0, 0, 1, 1)],
        ];
        let mut r = [[0.0; 3]; 3];
        for i in 0..3 {
            for j in 0..3 {
                r[i][j] = adj[i][j] / det;
            }
        }
        Some(Homography(r))
    }

    /// Square root of the Jacobian determinant at (x, y): how many image pixels one table
    /// metre spans there.
    pub(crate) fn local_scale(&self, x: f64, y: f64) -> f64 {
        let m = &self.0;
        let w = m[2][0] * x + m[2][1] * y + m[2][2];
        let (u, v) = self.apply(x, y);
        let ux = (m[0][0] - u * m[2][0]) / w;
        let uy = (m[0][1] - u * m[2][1]) / w;
        let vx = (m[1][0] - v * m[2][0]) / w;
        let vy = (m[1][1] - v * m[2][1]) / w;
        (ux * vy - uy * vx).abs().sqrt()
    }
}

/// The camera: where the table plane lands in the image.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Camera {
    /// Table metres -> image pixels (pixel centres at integer coordinates).
    pub(crate) to_image: Homography,
    /// Image pixels -> table metres.
    pub(crate) to_table: Homography,
}

fn rotation(axis: [f64; 3], angle: f64) -> [[f64; 3]; 3] {
    let (s, c) = angle.sin_cos();
    let [x, y, z] = axis;
    let t = 1.0 - c;
    [
        [t * x * x + c, t * x * y - s * z, t * x * z + s * y],
        [t * x * y + s * z, t * y * y + c, t * y * z - s * x],
        [t * x * z - s * y, t * y * z + s * x, t * z * z + c],
    ]
}

impl Camera {
    /// A pinhole camera looking down at the table, tilted and rolled as the style says, then
    /// scaled and centred so the outer rail fills `zoom` of the frame.
    pub(crate) fn new(width: u32, height: u32, style: &SceneStyle) -> Option<Camera> {
        let (w, h) = (width as f64, height as f64);
        let (cx, cy) = ((w - 1.0) / 2.0, (h - 1.0) / 2.0);
        let edge = CUSHION_M + RAIL_M;
        let outer_l = TABLE_LENGTH_M + 2.0 * edge;
        let outer_w = TABLE_WIDTH_M + 2.0 * edge;
        let zoom = style.zoom as f64;
        let s0 = zoom * (w / outer_l).min(h / outer_w);
        let top = Homography([
            [s0, 0.0, cx - s0 * TABLE_LENGTH_M / 2.0],
            [0.0, s0, cy - s0 * TABLE_WIDTH_M / 2.0],
            [0.0, 0.0, 1.0],
        ]);
        // A camera rotated about its centre sees the overhead image through K R K^-1.
        let f = w.max(h);
        let az = (style.tilt_azimuth_deg as f64).to_radians();
        let tilt = rotation(
            [az.cos(), az.sin(), 0.0],
            (style.tilt_deg as f64).to_radians(),
        );
        let roll = rotation([0.0, 0.0, 1.0], (style.roll_deg as f64).to_radians());
        let mut r = [[0.0; 3]; 3];
        for i in 0..3 {
            for j in 0..3 {
                r[i][j] = (0..3).map(|k| roll[i][k] * tilt[k][j]).sum();
            }
        }
        let k = Homography([[f, 0.0, cx], [0.0, f, cy], [0.0, 0.0, 1.0]]);
        let kinv = k.inverse()?;
        let g = k.mul(&Homography(r)).mul(&kinv).mul(&top);
        // Refit: the rotated view may have drifted or grown; bring the outer rail back into
        // the frame with the asked margin.
        let corners = [
            (-edge, -edge),
            (TABLE_LENGTH_M + edge, -edge),
            (TABLE_LENGTH_M + edge, TABLE_WIDTH_M + edge),
            (-edge, TABLE_WIDTH_M + edge),
        ];
        let (mut x0, mut y0, mut x1, mut y1) = (f64::MAX, f64::MAX, f64::MIN, f64::MIN);
        for (x, y) in corners {
            let (u, v) = g.apply(x, y);
            if !u.is_finite() || !v.is_finite() {
                return None;
            }
            x0 = x0.min(u);
            y0 = y0.min(v);
            x1 = x1.max(u);
            y1 = y1.max(v);
        }
        let a = zoom * ((w - 1.0) / (x1 - x0)).min((h - 1.0) / (y1 - y0));
        let fit = Homography([
            [a, 0.0, cx - a * (x0 + x1) / 2.0],
            [0.0, a, cy - a * (y0 + y1) / 2.0],
            [0.0, 0.0, 1.0],
        ]);
        let to_image = fit.mul(&g);
        let to_table = to_image.inverse()?;
        Some(Camera { to_image, to_table })
    }
}

/// The lighting field over the image: a directional gradient plus a vignette.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Lighting {
    strength: f32,
    dir: (f32, f32),
    half: (f32, f32),
}

impl Lighting {
    pub(crate) fn new(width: u32, height: u32, style: &SceneStyle) -> Self {
        let a = style.light_angle_deg.to_radians();
        Lighting {
            strength: style.lighting,
            dir: (a.cos(), a.sin()),
            half: (width as f32 / 2.0, height as f32 / 2.0),
        }
    }

    /// Brightness factor at image point (u, v); 1 = unlit by the gradient.
    pub(crate) fn at(&self, u: f32, v: f32) -> f32 {
        if self.strength == 0.0 {
            return 1.0;
        }
        let nx = (u - self.half.0) / self.half.0;
        let ny = (v - self.half.1) / self.half.1;
        // The light comes from `dir`: the side it comes from is brighter.
        let g = nx * self.dir.0 + ny * self.dir.1;
        let f = 1.0 + self.strength * (0.3 * g - 0.12 * (nx * nx + ny * ny));
        f.clamp(0.25, 1.6)
    }
}

/// Table regions, so edges between them can be antialiased.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Region {
    Floor,
    Rail,
    Sight,
    Rim,
    Cushion,
    Nose,
    Cloth,
    Pocket,
}

/// Colour (BGR, 0..255 floats) of the table at (x, y) metres, before lighting.
fn table_color(x: f64, y: f64, style: &SceneStyle) -> (Region, [f32; 3]) {
    let cloth = style.cloth.map(|c| c as f32);
    for &(px, py, pr) in &POCKETS {
        let d2 = (x - px) * (x - px) + (y - py) * (y - py);
        if d2 < pr * pr {
            let t = (d2.sqrt() / pr) as f32;
            let k = 0.55 + 0.45 * t * t;
            return (Region::Pocket, [12.0 * k, 12.0 * k, 14.0 * k]);
        }
    }
    let (l, w) = (TABLE_LENGTH_M, TABLE_WIDTH_M);
    if (0.0..=l).contains(&x) && (0.0..=w).contains(&y) {
        return (Region::Cloth, cloth);
    }
    for &(px, py, pr) in &POCKETS {
        let d2 = (x - px) * (x - px) + (y - py) * (y - py);
        let rim = pr + 0.014;
        if d2 < rim * rim {
            return (Region::Rim, [30.0, 34.0, 40.0]);
        }
    }
    let outside = (-x).max(x - l).max(-y).max(y - w);
    if outside <= CUSHION_M {
        if outside < 0.004 {
            return (Region::Nose, cloth.map(|c| c * 0.55));
        }
        let k = 0.86 - 0.14 * (outside / CUSHION_M) as f32;
        return (Region::Cushion, cloth.map(|c| c * k));
    }
    if outside <= CUSHION_M + RAIL_M {
        let mid = CUSHION_M + RAIL_M * 0.5;
        let sight_r = 0.0085;
        let near = |a: f64, b: f64| (a - b).abs() < sight_r;
        let mut sight = false;
        if near(y, -mid) || near(y, w + mid) {
            let k = (x / (l / 8.0)).round();
            if (1.0..=7.0).contains(&k) && k != 4.0 {
                let (sx, sy) = (k * l / 8.0, if y < 0.0 { -mid } else { w + mid });
                sight = (x - sx).powi(2) + (y - sy).powi(2) < sight_r * sight_r;
            }
        } else if near(x, -mid) || near(x, l + mid) {
            let k = (y / (w / 4.0)).round();
            if (1.0..=3.0).contains(&k) {
                let (sx, sy) = (if x < 0.0 { -mid } else { l + mid }, k * w / 4.0);
                sight = (x - sx).powi(2) + (y - sy).powi(2) < sight_r * sight_r;
            }
        }
        if sight {
            return (Region::Sight, [222.0, 230.0, 234.0]);
        }
        // Wood grain runs along each rail.
        let (along, across) = if (-x).max(x - l) > (-y).max(y - w) {
            (y, x)
        } else {
            (x, y)
        };
        let grain =
            (along * 23.0 + (across * 140.0).sin() * 1.3 + (along * 3.1).sin()).sin() as f32;
        let depth = ((outside - CUSHION_M) / RAIL_M) as f32;
        // A lighter inner edge and a darker outer bevel give the rail some relief.
        let relief = if depth < 0.08 {
            1.18
        } else if depth > 0.9 {
            0.72
        } else {
            1.0
        };
        let k = (0.92 + 0.08 * grain) * relief;
        return (Region::Rail, style.rail.map(|c| c as f32 * k));
    }
    (Region::Floor, [34.0, 36.0, 40.0])
}

/// Renders the background (everything but the balls) as BGR8, `width * height * 3` bytes.
/// Pixels on an edge between regions are supersampled 4x4; the rest get one sample.
pub(crate) fn render_background(
    width: u32,
    height: u32,
    cam: &Camera,
    light: &Lighting,
    style: &SceneStyle,
    seed: u64,
) -> Vec<u8> {
    let (w, h) = (width as usize, height as usize);
    let mut bg = vec![0u8; w * h * 3];
    let mut regions = vec![Region::Floor; w * h];
    let inv = &cam.to_table;
    let texture = |i: usize, j: usize| -> f32 {
        let hsh = mix(seed ^ ((j as u64) << 32 | i as u64).wrapping_mul(0x2545_F491_4F6C_DD1D));
        ((hsh & 0xff) as f32 / 255.0 - 0.5) * 5.0
    };
    let write = |bg: &mut [u8], idx: usize, c: [f32; 3], k: f32, t: f32| {
        for ch in 0..3 {
            bg[idx * 3 + ch] = (c[ch] * k + t).round().clamp(0.0, 255.0) as u8;
        }
    };
    for j in 0..h {
        for i in 0..w {
            let (x, y) = inv.apply(i as f64, j as f64);
            let (region, c) = table_color(x, y, style);
            regions[j * w + i] = region;
            let k = light.at(i as f32, j as f32);
            write(&mut bg, j * w + i, c, k, texture(i, j));
        }
    }
    for j in 0..h {
        for i in 0..w {
            let r = regions[j * w + i];
            let edge = (i > 0 && regions[j * w + i - 1] != r)
                || (i + 1 < w && regions[j * w + i + 1] != r)
                || (j > 0 && regions[(j - 1) * w + i] != r)
                || (j + 1 < h && regions[(j + 1) * w + i] != r);
            if !edge {
                continue;
            }
            let mut acc = [0.0f32; 3];
            const N: usize = 4;
            for sy in 0..N {
                for sx in 0..N {
                    let u = i as f64 + (sx as f64 + 0.5) / N as f64 - 0.5;
                    let v = j as f64 + (sy as f64 + 0.5) / N as f64 - 0.5;
                    let (x, y) = inv.apply(u, v);
                    let (_, c) = table_color(x, y, style);
                    for ch in 0..3 {
                        acc[ch] += c[ch];
                    }
                }
            }
            let c = acc.map(|a| a / (N * N) as f32);
            let k = light.at(i as f32, j as f32);
            write(&mut bg, j * w + i, c, k, texture(i, j));
        }
    }
    bg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn homography_inverse_round_trips() {
        let style = SceneStyle {
            tilt_deg: 10.0,
            tilt_azimuth_deg: 30.0,
            roll_deg: 3.0,
            ..SceneStyle::default()
        };
        let cam = Camera::new(640, 360, &style).unwrap();
        for (x, y) in [(0.0, 0.0), (1.0, 0.5), (2.54, 1.27)] {
            let (u, v) = cam.to_image.apply(x, y);
            let (x2, y2) = cam.to_table.apply(u, v);
            assert!((x - x2).abs() < 1e-9 && (y - y2).abs() < 1e-9);
        }
    }

    #[test]
    fn overhead_camera_fits_the_table_in_the_frame() {
        let cam = Camera::new(1280, 720, &SceneStyle::default()).unwrap();
        let edge = CUSHION_M + RAIL_M;
        for (x, y) in [
            (-edge, -edge),
            (TABLE_LENGTH_M + edge, TABLE_WIDTH_M + edge),
        ] {
            let (u, v) = cam.to_image.apply(x, y);
            assert!(
                (0.0..1280.0).contains(&u) && (0.0..720.0).contains(&v),
                "{u},{v}"
            );
        }
        // Straight overhead: the scale is the same everywhere.
        let a = cam.to_image.local_scale(0.1, 0.1);
        let b = cam.to_image.local_scale(2.4, 1.2);
        assert!((a - b).abs() < 1e-9);
    }

    #[test]
    fn tilted_camera_scales_unevenly() {
        let style = SceneStyle {
            tilt_deg: 12.0,
            ..SceneStyle::default()
        };
        let cam = Camera::new(1280, 720, &style).unwrap();
        // Tilted about the image's x axis: the near long rail looks bigger than the far one.
        let a = cam.to_image.local_scale(1.27, 0.0);
        let b = cam.to_image.local_scale(1.27, 1.27);
        assert!((a - b).abs() / a > 0.03, "{a} vs {b}");
    }

    #[test]
    fn regions_are_where_expected() {
        let s = SceneStyle::default();
        assert_eq!(table_color(1.0, 0.6, &s).0, Region::Cloth);
        assert_eq!(table_color(0.0, 0.0, &s).0, Region::Pocket);
        assert_eq!(table_color(1.0, -0.03, &s).0, Region::Cushion);
        assert_eq!(table_color(1.0, -0.1, &s).0, Region::Rail);
        assert_eq!(table_color(1.0, -0.5, &s).0, Region::Floor);
        let mid = CUSHION_M + RAIL_M * 0.5;
        assert_eq!(table_color(TABLE_LENGTH_M / 8.0, -mid, &s).0, Region::Sight);
    }
}
