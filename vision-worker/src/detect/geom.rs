//! Small geometry helpers shared by the table and ball stages: pixel and colour vectors,
//! bilinear sampling, medians, lines, polygons and a robust circle fit.

/// The BGR pixel `x` of a packed row, as floats.
#[inline]
pub(crate) fn pixel(row: &[u8], x: usize) -> [f32; 3] {
    [
        row[3 * x] as f32,
        row[3 * x + 1] as f32,
        row[3 * x + 2] as f32,
    ]
}

/// The dot product of two colours.
#[inline]
pub(crate) fn dot3(a: [f32; 3], b: [f32; 3]) -> f32 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

/// Bilinear BGR sample of a packed image (`w` x `h`) at `(x, y)`, clamped to the image.
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

/// Median of `v` (reorders it), `None` when empty.
pub(crate) fn median(v: &mut [f32]) -> Option<f32> {
    if v.is_empty() {
        return None;
    }
    let mid = v.len() / 2;
    Some(*v.select_nth_unstable_by(mid, f32::total_cmp).1)
}

/// A 2-D point in pixels.
pub(crate) type P2 = [f32; 2];

/// A line `a*x + b*y = c` with `(a, b)` a unit normal.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Line {
    pub a: f32,
    pub b: f32,
    pub c: f32,
}

impl Line {
    /// The line through `p` and `q`, or `None` when they coincide.
    pub fn through(p: P2, q: P2) -> Option<Line> {
        let (dx, dy) = (q[0] - p[0], q[1] - p[1]);
        let n = (dx * dx + dy * dy).sqrt();
        if n < 1e-6 {
            return None;
        }
        let (a, b) = (-dy / n, dx / n);
        Some(Line {
            a,
            b,
            c: a * p[0] + b * p[1],
        })
    }

    /// Signed distance of `p` from the line.
    pub fn dist(&self, p: P2) -> f32 {
        self.a * p[0] + self.b * p[1] - self.c
    }

    /// Intersection with `o`, or `None` when (nearly) parallel.
    pub fn intersect(&self, o: &Line) -> Option<P2> {
        let det = self.a * o.b - self.b * o.a;
        if det.abs() < 1e-4 {
            return None;
        }
        Some([
            (self.c * o.b - self.b * o.c) / det,
            (self.a * o.c - self.c * o.a) / det,
        ])
    }
}

/// Signed area of a polygon (positive when clockwise in image coordinates, y down).
pub(crate) fn polygon_area(poly: &[P2]) -> f32 {
    let n = poly.len();
    let mut s = 0.0;
    for i in 0..n {
        let (p, q) = (poly[i], poly[(i + 1) % n]);
        s += p[0] * q[1] - q[0] * p[1];
    }
    s / 2.0
}

/// Signed distance of `p` to the boundary of the convex polygon `poly` (clockwise in image
/// coordinates): positive inside, negative outside.
pub(crate) fn convex_inside_dist(poly: &[P2], p: P2) -> f32 {
    let n = poly.len();
    let mut best = f32::INFINITY;
    for i in 0..n {
        let (a, b) = (poly[i], poly[(i + 1) % n]);
        let (dx, dy) = (b[0] - a[0], b[1] - a[1]);
        let len = (dx * dx + dy * dy).sqrt().max(1e-6);
        // For a clockwise polygon (y down), the interior is on the right of each edge.
        let d = ((p[0] - a[0]) * dy - (p[1] - a[1]) * dx) / len;
        best = best.min(-d);
    }
    best
}

/// Orders four corners clockwise (image coordinates) starting from the one nearest the
/// top-left of the frame.
pub(crate) fn order_corners(mut c: [P2; 4]) -> [P2; 4] {
    let cx = c.iter().map(|p| p[0]).sum::<f32>() / 4.0;
    let cy = c.iter().map(|p| p[1]).sum::<f32>() / 4.0;
    c.sort_by(|p, q| {
        let a = (p[1] - cy).atan2(p[0] - cx);
        let b = (q[1] - cy).atan2(q[0] - cx);
        a.total_cmp(&b)
    });
    // Increasing atan2 with y down is clockwise on screen.
    let start = (0..4)
        .min_by(|&i, &j| (c[i][0] + c[i][1]).total_cmp(&(c[j][0] + c[j][1])))
        .unwrap_or(0);
    [
        c[start],
        c[(start + 1) % 4],
        c[(start + 2) % 4],
        c[(start + 3) % 4],
    ]
}

/// Result of a circle fit.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CircleFit {
    pub x: f32,
    pub y: f32,
    pub r: f32,
    /// Points kept after outlier rejection.
    pub inliers: usize,
    /// RMS residual of the inliers.
    pub rms: f32,
}

/// Geometric least-squares circle fit (Gauss-Newton) of `pts` starting at `(x0, y0, r0)`, with
/// the radius pulled towards `r_prior` (weight `lambda`, in points) and bounded to
/// `[r_min, r_max]`; outliers beyond `max(floor, 2.5 * robust sigma)` are dropped and the fit
/// repeated. `weights` scale each point's influence.
#[allow(clippy::too_many_arguments)]
pub(crate) fn fit_circle(
    pts: &[P2],
    weights: &[f32],
    init: (f32, f32, f32),
    r_prior: f32,
    lambda: f32,
    r_min: f32,
    r_max: f32,
    floor: f32,
) -> Option<CircleFit> {
    if pts.len() < 5 {
        return None;
    }
    let mut keep = vec![true; pts.len()];
    let (mut x, mut y, mut r) = init;
    for round in 0..3 {
        for _ in 0..8 {
            // Normal equations of [dx, dy, dr] (3x3).
            let mut a = [[0.0f64; 3]; 3];
            let mut g = [0.0f64; 3];
            for (i, p) in pts.iter().enumerate() {
                if !keep[i] {
                    continue;
                }
                let (ux, uy) = ((p[0] - x) as f64, (p[1] - y) as f64);
                let d = (ux * ux + uy * uy).sqrt().max(1e-6);
                let res = d - r as f64;
                let j = [-ux / d, -uy / d, -1.0];
                let w = weights[i] as f64;
                for m in 0..3 {
                    g[m] += w * j[m] * res;
                    for n in 0..3 {
                        a[m][n] += w * j[m] * j[n];
                    }
                }
            }
            let l = lambda as f64;
            a[2][2] += l;
            g[2] += l * (r - r_prior) as f64;
            let step = solve3(a, g)?;
            x -= step[0] as f32;
            y -= step[1] as f32;
            r = (r - step[2] as f32).clamp(r_min, r_max);
            if step.iter().map(|s| s.abs()).fold(0.0, f64::max) < 1e-3 {
                break;
            }
        }
        let res: Vec<f32> = pts
            .iter()
            .map(|p| (((p[0] - x).powi(2) + (p[1] - y).powi(2)).sqrt() - r).abs())
            .collect();
        let mut kept: Vec<f32> = res
            .iter()
            .zip(keep.iter())
            .filter(|(_, &k)| k)
            .map(|(&r, _)| r)
            .collect();
        if kept.len() < 5 {
            return None;
        }
        kept.sort_by(f32::total_cmp);
        let med = kept[kept.len() / 2];
        let thr = (2.5 * 1.4826 * med).max(floor);
        if round == 2 {
            break;
        }
        let mut changed = false;
        for (i, &e) in res.iter().enumerate() {
            let k = e <= thr;
            if k != keep[i] {
                changed = true;
                keep[i] = k;
            }
        }
        if keep.iter().filter(|&&k| k).count() < 5 {
            return None;
        }
        if !changed {
            break;
        }
    }
    let mut n = 0;
    let mut ss = 0.0;
    for (i, p) in pts.iter().enumerate() {
        if keep[i] {
            let e = ((p[0] - x).powi(2) + (p[1] - y).powi(2)).sqrt() - r;
            ss += e * e;
            n += 1;
        }
    }
    Some(CircleFit {
        x,
        y,
        r,
        inliers: n,
        rms: (ss / n.max(1) as f32).sqrt(),
    })
}

/// Solves the symmetric 3x3 system `a * s = g` (Cramer's rule).
fn solve3(a: [[f64; 3]; 3], g: [f64; 3]) -> Option<[f64; 3]> {
    let det = |m: &[[f64; 3]; 3]| {
        m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
            - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
            + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0])
    };
    let d = det(&a);
    if d.abs() < 1e-12 {
        return None;
    }
    let mut out = [0.0; 3];
    for (k, o) in out.iter_mut().enumerate() {
        let mut m = a;
        for row in 0..3 {
            m[row][k] = g[row];
        }
        *o = det(&m) / d;
    }
    Some(out)
}

/// The six pockets of a table with these playing-surface corners: the four corners and the
/// middles of the two long sides. A table seen at an angle has the middle pockets nearer the
/// far corner than the middle of the side in the image: each is where the line through the
/// table's centre (the crossing of the diagonals) towards the vanishing point of the short
/// sides meets the long side.
pub(crate) fn pockets_of(c: &[[f32; 2]; 4]) -> [[f32; 2]; 6] {
    let len = |a: [f32; 2], b: [f32; 2]| ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2)).sqrt();
    let (m1, m2) = if len(c[0], c[1]) + len(c[2], c[3]) >= len(c[1], c[2]) + len(c[3], c[0]) {
        (
            side_middle(c, c[0], c[1], [c[0], c[3]], [c[1], c[2]]),
            side_middle(c, c[3], c[2], [c[0], c[3]], [c[1], c[2]]),
        )
    } else {
        (
            side_middle(c, c[1], c[2], [c[1], c[0]], [c[2], c[3]]),
            side_middle(c, c[0], c[3], [c[1], c[0]], [c[2], c[3]]),
        )
    };
    [c[0], c[1], c[2], c[3], m1, m2]
}

/// The middle of the side `a`-`b` in perspective: where the line from the centre of the
/// quadrilateral `c` towards the crossing of the two short sides `s1`, `s2` (a point at
/// infinity when they are parallel) meets it. The plain midpoint when that is degenerate.
fn side_middle(
    c: &[[f32; 2]; 4],
    a: [f32; 2],
    b: [f32; 2],
    s1: [[f32; 2]; 2],
    s2: [[f32; 2]; 2],
) -> [f32; 2] {
    // Homogeneous coordinates: the line through two points and the crossing of two lines are
    // both cross products.
    fn cross(u: [f64; 3], v: [f64; 3]) -> [f64; 3] {
        [
            u[1] * v[2] - u[2] * v[1],
            u[2] * v[0] - u[0] * v[2],
            u[0] * v[1] - u[1] * v[0],
        ]
    }
    let h = |p: [f32; 2]| [p[0] as f64, p[1] as f64, 1.0];
    let plain = [0.5 * (a[0] + b[0]), 0.5 * (a[1] + b[1])];
    let centre = cross(cross(h(c[0]), h(c[2])), cross(h(c[1]), h(c[3])));
    let vanishing = cross(cross(h(s1[0]), h(s1[1])), cross(h(s2[0]), h(s2[1])));
    let m = cross(cross(centre, vanishing), cross(h(a), h(b)));
    if m[2].abs() < 1e-12 {
        return plain;
    }
    let p = [(m[0] / m[2]) as f32, (m[1] / m[2]) as f32];
    // A degenerate quadrilateral could put the point anywhere on the side's line: keep it
    // between the corners.
    let half = 0.5 * ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2)).sqrt();
    let off = ((p[0] - plain[0]).powi(2) + (p[1] - plain[1]).powi(2)).sqrt();
    if p[0].is_finite() && p[1].is_finite() && off < half {
        p
    } else {
        plain
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn middle_pockets_are_on_the_long_sides() {
        let wide = [[0.0, 0.0], [400.0, 0.0], [400.0, 200.0], [0.0, 200.0]];
        let p = pockets_of(&wide);
        assert_eq!(p[..4], wide[..]);
        assert_eq!(p[4..], [[200.0, 0.0], [200.0, 200.0]]);
        let tall = [[0.0, 0.0], [200.0, 0.0], [200.0, 400.0], [0.0, 400.0]];
        assert_eq!(pockets_of(&tall)[4..], [[200.0, 200.0], [0.0, 200.0]]);
    }

    #[test]
    fn sample_interpolates_and_clamps() {
        // 2x2 BGR image: blue channel 0, 100 / 200, 40.
        let img = [0, 1, 2, 100, 1, 2, 200, 1, 2, 40, 1, 2];
        assert_eq!(sample(&img, 2, 2, 0.0, 0.0), [0.0, 1.0, 2.0]);
        let mid = sample(&img, 2, 2, 0.5, 0.5);
        assert!((mid[0] - 85.0).abs() < 1e-4, "{mid:?}");
        // Outside the image: the nearest border value, no panic.
        assert_eq!(sample(&img, 2, 2, -5.0, -5.0), [0.0, 1.0, 2.0]);
        let far = sample(&img, 2, 2, 9.0, 9.0);
        // Clamped a thousandth of a pixel inside, so the row below is never read.
        assert!((far[0] - 40.0).abs() < 0.5, "{far:?}");
    }

    #[test]
    fn median_takes_the_upper_middle() {
        assert_eq!(median(&mut []), None);
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), Some(3.0));
    }

    #[test]
    fn lines_intersect() {
        let l1 = Line::through([0.0, 0.0], [10.0, 0.0]).unwrap();
        let l2 = Line::through([5.0, -3.0], [5.0, 8.0]).unwrap();
        let p = l1.intersect(&l2).unwrap();
        assert!((p[0] - 5.0).abs() < 1e-4 && p[1].abs() < 1e-4);
        assert!(l1.intersect(&l1).is_none());
    }

    #[test]
    fn corners_are_ordered_clockwise_from_top_left() {
        let c = order_corners([[100.0, 90.0], [0.0, 0.0], [0.0, 80.0], [110.0, 5.0]]);
        assert_eq!(c, [[0.0, 0.0], [110.0, 5.0], [100.0, 90.0], [0.0, 80.0]]);
        assert!(polygon_area(&c) > 0.0);
        assert!(convex_inside_dist(&c, [50.0, 40.0]) > 30.0);
        assert!(convex_inside_dist(&c, [-5.0, 40.0]) < 0.0);
    }

    #[test]
    fn circle_fit_rejects_outliers() {
        let mut pts: Vec<P2> = (0..32)
            .map(|i| {
                let a = i as f32 / 32.0 * std::f32::consts::TAU;
                [20.0 + 6.0 * a.cos(), 30.0 + 6.0 * a.sin()]
            })
            .collect();
        pts[3] = [20.0, 30.0];
        pts[9] = [40.0, 10.0];
        let w = vec![1.0; pts.len()];
        let f = fit_circle(&pts, &w, (21.0, 29.0, 5.0), 6.0, 0.1, 3.0, 9.0, 0.5).unwrap();
        assert!(
            (f.x - 20.0).abs() < 0.01 && (f.y - 30.0).abs() < 0.01,
            "{f:?}"
        );
        assert!((f.r - 6.0).abs() < 0.01);
        assert_eq!(f.inliers, 30);
    }
}
