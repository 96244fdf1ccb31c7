//! Rasterising the balls over the cached background: sprites, soft shadows, sphere shading,
//! stripes, and the per-buffer damage tracking that redraws only what moved.

use super::physics::{Ball, BALLS};
use super::table::{Camera, Lighting, BALL_RADIUS_M};
use super::BallKind;

/// White of the cue ball and of the stripe balls' caps (BGR).
pub const CUE_WHITE: [u8; 3] = [228, 238, 240];

/// Standard colours (BGR) of balls 1..=7 (and of the stripes 9..=15).
const COLORS: [[u8; 3]; 7] = [
    [0, 190, 244],  // 1 yellow
    [170, 60, 16],  // 2 blue
    [34, 30, 206],  // 3 red
    [132, 38, 92],  // 4 purple
    [10, 106, 248], // 5 orange
    [62, 118, 8],   // 6 green
    [34, 26, 124],  // 7 maroon
];
const EIGHT: [u8; 3] = [22, 20, 20];

/// The unshaded colour (BGR) of ball `number`: white for the cue ball, black for the eight,
/// the standard colour for solids and for the band of stripes. None above 15.
pub fn ball_color(number: u8) -> Option<[u8; 3]> {
    match number {
        0 => Some(CUE_WHITE),
        8 => Some(EIGHT),
        1..=7 => Some(COLORS[number as usize - 1]),
        9..=15 => Some(COLORS[number as usize - 9]),
        _ => None,
    }
}

/// A pixel rectangle, `x0..x1` by `y0..y1` (exclusive ends).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Rect {
    pub(crate) x0: i32,
    pub(crate) y0: i32,
    pub(crate) x1: i32,
    pub(crate) y1: i32,
}

impl Rect {
    fn is_empty(&self) -> bool {
        self.x0 >= self.x1 || self.y0 >= self.y1
    }
    fn intersect(&self, o: &Rect) -> Rect {
        Rect {
            x0: self.x0.max(o.x0),
            y0: self.y0.max(o.y0),
            x1: self.x1.min(o.x1),
            y1: self.y1.min(o.y1),
        }
    }
    fn union(&self, o: &Rect) -> Rect {
        Rect {
            x0: self.x0.min(o.x0),
            y0: self.y0.min(o.y0),
            x1: self.x1.max(o.x1),
            y1: self.y1.max(o.y1),
        }
    }
    fn area(&self) -> i64 {
        if self.is_empty() {
            0
        } else {
            (self.x1 - self.x0) as i64 * (self.y1 - self.y0) as i64
        }
    }
}

/// Everything needed to draw one ball; two equal sprites draw identical pixels.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub(crate) struct Sprite {
    pub(crate) cx: f32,
    pub(crate) cy: f32,
    pub(crate) r: f32,
    axis: [f32; 3],
    light: f32,
    pub(crate) number: u8,
    rect: Rect,
}

const SHADOW_DX: f32 = 0.22;
const SHADOW_DY: f32 = 0.30;

impl Sprite {
    pub(crate) fn new(
        ball: &Ball,
        cam: &Camera,
        light: &Lighting,
        width: u32,
        height: u32,
    ) -> Sprite {
        if ball.pocketed {
            // Off the table: an empty rectangle is never drawn (and the damage tracking
            // repaints where the ball was).
            return Sprite {
                number: ball.number,
                ..Sprite::default()
            };
        }
        let (u, v) = cam.to_image.apply(ball.p[0], ball.p[1]);
        let r = (BALL_RADIUS_M * cam.to_image.local_scale(ball.p[0], ball.p[1])) as f32;
        let (cx, cy) = (u as f32, v as f32);
        let shadow_reach = SHADOW_DX.max(SHADOW_DY) * r + shadow_radius(r) + shadow_soft(r);
        let rect = Rect {
            x0: (cx - r - 2.0).floor() as i32,
            y0: (cy - r - 2.0).floor() as i32,
            x1: (cx + shadow_reach + 2.0).ceil() as i32,
            y1: (cy + shadow_reach + 2.0).ceil() as i32,
        }
        .intersect(&Rect {
            x0: 0,
            y0: 0,
            x1: width as i32,
            y1: height as i32,
        });
        Sprite {
            cx,
            cy,
            r,
            axis: ball.axis.map(|a| a as f32),
            light: light.at(cx, cy),
            number: ball.number,
            rect,
        }
    }
}

fn shadow_radius(r: f32) -> f32 {
    1.0 * r
}

fn shadow_soft(r: f32) -> f32 {
    0.3 * r + 0.8
}

fn smoothstep(e0: f32, e1: f32, x: f32) -> f32 {
    let t = ((x - e0) / (e1 - e0)).clamp(0.0, 1.0);
    t * t * (3.0 - 2.0 * t)
}

/// A BGR8 frame being drawn.
pub(crate) struct Canvas<'a> {
    pub(crate) buf: &'a mut [u8],
    pub(crate) width: usize,
    pub(crate) height: usize,
}

/// Light direction (towards the light) and half vector, z into the table.
const LIGHT: [f32; 3] = [-0.379_05, -0.530_67, -0.758_10];
const HALF: [f32; 3] = [-0.202_14, -0.283_00, -0.937_58];

impl Canvas<'_> {
    fn full(&self) -> Rect {
        Rect {
            x0: 0,
            y0: 0,
            x1: self.width as i32,
            y1: self.height as i32,
        }
    }

    /// Redraws `rect` from scratch: background, then every shadow, then every ball that
    /// reaches into it. Each pixel depends only on the background and the sprites, so
    /// composing a rectangle twice, or overlapping rectangles, gives the same result.
    fn compose(&mut self, bg: &[u8], sprites: &[Sprite; BALLS], rect: Rect) {
        let rect = rect.intersect(&self.full());
        if rect.is_empty() {
            return;
        }
        for y in rect.y0..rect.y1 {
            let a = (y as usize * self.width + rect.x0 as usize) * 3;
            let b = (y as usize * self.width + rect.x1 as usize) * 3;
            self.buf[a..b].copy_from_slice(&bg[a..b]);
        }
        for s in sprites {
            let clip = s.rect.intersect(&rect);
            if !clip.is_empty() {
                self.shadow(s, clip);
            }
        }
        for s in sprites {
            let clip = s.rect.intersect(&rect);
            if !clip.is_empty() {
                self.ball(s, clip);
            }
        }
    }

    fn shadow(&mut self, s: &Sprite, clip: Rect) {
        let (sx, sy) = (s.cx + SHADOW_DX * s.r, s.cy + SHADOW_DY * s.r);
        let (rad, soft) = (shadow_radius(s.r), shadow_soft(s.r));
        let (inner, outer) = ((rad - soft).max(0.0), rad + soft);
        for y in clip.y0..clip.y1 {
            let dy = y as f32 - sy;
            let row = y as usize * self.width;
            for x in clip.x0..clip.x1 {
                let dx = x as f32 - sx;
                let d2 = dx * dx + dy * dy;
                if d2 >= outer * outer {
                    continue;
                }
                let a = 1.0 - smoothstep(inner, outer, d2.sqrt());
                let k = 1.0 - 0.45 * a;
                let i = (row + x as usize) * 3;
                for c in &mut self.buf[i..i + 3] {
                    *c = (*c as f32 * k) as u8;
                }
            }
        }
    }

    fn ball(&mut self, s: &Sprite, clip: Rect) {
        let kind = BallKind::of_number(s.number).unwrap_or(BallKind::Solid);
        let color = ball_color(s.number)
            .unwrap_or([128, 128, 128])
            .map(|c| c as f32);
        let white = CUE_WHITE.map(|c| c as f32);
        let reach = s.r + 0.5;
        for y in clip.y0..clip.y1 {
            let py = y as f32 - s.cy;
            if py.abs() >= reach {
                continue;
            }
            let row = y as usize * self.width;
            for x in clip.x0..clip.x1 {
                let px = x as f32 - s.cx;
                let d2 = px * px + py * py;
                if d2 >= reach * reach {
                    continue;
                }
                let d = d2.sqrt();
                let cov = (s.r - d + 0.5).clamp(0.0, 1.0);
                if cov <= 0.0 {
                    continue;
                }
                // Surface normal of the visible hemisphere (facing -z, the camera); edge
                // pixels use a normal just inside the rim.
                let (mut nx, mut ny) = (px / s.r, py / s.r);
                let q2 = nx * nx + ny * ny;
                if q2 > 0.97 {
                    let k = (0.97 / q2).sqrt();
                    nx *= k;
                    ny *= k;
                }
                let nz = -(1.0 - nx * nx - ny * ny).max(0.0).sqrt();
                let base = match kind {
                    BallKind::Stripe => {
                        let t = (nx * s.axis[0] + ny * s.axis[1] + nz * s.axis[2]).abs();
                        let band = 1.0 - smoothstep(0.46, 0.54, t);
                        [0, 1, 2].map(|c| white[c] + (color[c] - white[c]) * band)
                    }
                    _ => color,
                };
                let diffuse = (nx * LIGHT[0] + ny * LIGHT[1] + nz * LIGHT[2]).max(0.0);
                let mut spec = (nx * HALF[0] + ny * HALF[1] + nz * HALF[2]).max(0.0);
                for _ in 0..8 {
                    spec *= spec; // spec^256: a small, sharp highlight
                }
                let shade = s.light * (0.35 + 0.85 * diffuse);
                let i = (row + x as usize) * 3;
                for (px, b) in self.buf[i..i + 3].iter_mut().zip(base) {
                    let lit = (b * shade + 235.0 * spec).min(255.0);
                    let old = *px as f32;
                    *px = (old + (lit - old) * cov).round() as u8;
                }
            }
        }
    }

    /// Draws the whole frame.
    pub(crate) fn full_render(&mut self, bg: &[u8], sprites: &[Sprite; BALLS]) {
        let all = self.full();
        self.compose(bg, sprites, all);
    }

    /// Redraws only where a sprite differs from what `drawn` says the buffer shows.
    pub(crate) fn damage_render(
        &mut self,
        bg: &[u8],
        drawn: &[Sprite; BALLS],
        now: &[Sprite; BALLS],
    ) {
        for (old, new) in drawn.iter().zip(now.iter()) {
            if old == new {
                continue;
            }
            // One rectangle when the two overlap enough, else two small ones.
            let u = old.rect.union(&new.rect);
            if u.area() <= old.rect.area() + new.rect.area() {
                self.compose(bg, now, u);
            } else {
                self.compose(bg, now, old.rect);
                self.compose(bg, now, new.rect);
            }
        }
    }

    /// Adds sensor noise from `table`, starting at `offset`.
    pub(crate) fn add_noise(&mut self, table: &[i8], offset: usize) {
        if table.is_empty() {
            return;
        }
        let mut off = offset % table.len();
        let mut rest = &mut self.buf[..];
        while !rest.is_empty() {
            let n = rest.len().min(table.len() - off);
            let (head, tail) = rest.split_at_mut(n);
            for (d, z) in head.iter_mut().zip(&table[off..off + n]) {
                *d = (*d as i16 + *z as i16).clamp(0, 255) as u8;
            }
            rest = tail;
            off = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn light_vectors_are_unit() {
        for v in [LIGHT, HALF] {
            let n = (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt();
            assert!((n - 1.0).abs() < 1e-4);
        }
        // HALF is the normalised sum of LIGHT and the view direction (0, 0, -1).
        let h = [LIGHT[0], LIGHT[1], LIGHT[2] - 1.0];
        let n = (h[0] * h[0] + h[1] * h[1] + h[2] * h[2]).sqrt();
        for c in 0..3 {
            assert!((h[c] / n - HALF[c]).abs() < 1e-4);
        }
    }

    #[test]
    fn colours_cover_every_ball() {
        for n in 0..=15 {
            assert!(ball_color(n).is_some());
        }
        assert_eq!(ball_color(16), None);
        assert_eq!(ball_color(3), ball_color(11));
    }
}
