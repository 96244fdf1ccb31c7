//! The cue stick over the table: its tip and its direction.
//!
//! The stick is what is left of the ball stage's foreground once the balls are taken out: a
//! long, thin, straight piece (a hand's fingers are short, an arm is wide, glare is round).
//! Where it crosses a ball the ball's disc cuts it, so the pieces along one line are joined
//! across gaps of about a ball. The line is fitted to every stick pixel near it (principal
//! axis), which gives the angle to a fraction of a degree over a stick many balls long.
//!
//! The tip is the end that lies inside the table (the butt leaves it over the rail); when
//! both ends are on the cloth it is the thinner end. Pixels past the tip that are wider than
//! the stick or off its axis (balls the ball stage missed, a rack the tip touches) are cut off
//! the run ([`stick_end`]). Its position is then found on the image
//! itself, walking out along the axis until the pixels are cloth again: the thin tip and
//! light ferrule are partly lost by the foreground's clean-up, the pixels are not.

use opencv::core::{self, Mat, Point, Scalar, Vector};
use opencv::imgproc;
use opencv::prelude::*;

use super::balls::{ClothModel, Found};
use super::geom::{convex_inside_dist, pockets_of, sample, P2};
use super::table::{grow_convex, TableModel};

/// The cue is looked for this many ball radii inside the playing area.
const RIM: f32 = 0.5;
use super::DetectError;

/// A cue found in the working image.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct CueFound {
    /// The tip, working pixels.
    pub tip: P2,
    /// Unit direction from the butt to the tip.
    pub dir: P2,
    /// 0..1.
    pub confidence: f32,
}

/// Reusable buffers of cue detection.
#[derive(Default)]
pub(crate) struct CueBuffers {
    /// The table's search mask shrunk past its rim (see [`inner_mask`]), and the table it was
    /// made for.
    inner: Mat,
    inner_for: Option<(usize, usize, usize, usize, u32)>,
    mask: Vec<u8>,
    labels: Mat,
    stats: Mat,
    centroids: Mat,
    pts: Vec<P2>,
}

/// What the cue stage reads from the frame and the ball stage.
pub(crate) struct CueInput<'a> {
    /// Working image, BGR.
    pub img: &'a [u8],
    /// Its width.
    pub w: usize,
    /// Its height.
    pub h: usize,
    /// The table.
    pub table: &'a TableModel,
    /// The ball stage's cleaned foreground (table ROI sized, non-zero = not cloth).
    pub fg: &'a [u8],
    /// The balls found, working pixels.
    pub balls: &'a [Found],
    /// The common ball radius, working pixels.
    pub radius: f32,
    /// The local cloth colour.
    pub cloth: &'a ClothModel,
}

/// Finds the cue, if one lies over the table.
pub(crate) fn find_cue(
    inp: &CueInput<'_>,
    bufs: &mut CueBuffers,
) -> Result<Option<CueFound>, DetectError> {
    let (x0, y0, rw, rh) = inp.table.roi;
    let r = inp.radius.max(2.0);
    if inp.fg.len() != rw * rh || rw < 8 || rh < 8 {
        return Ok(None);
    }
    // The foreground inside the cloth, without the balls (and a margin for their blur).
    inner_mask(inp.table, bufs)?;
    let inner = bufs.inner.data_bytes()?;
    bufs.mask.clear();
    bufs.mask.extend(
        inp.fg
            .iter()
            .zip(inner.iter())
            .map(|(&v, &i)| u8::from(v != 0 && i != 0)),
    );
    let cut = 1.25 * r;
    for b in inp.balls {
        let (lx, ly) = (b.x - x0 as f32, b.y - y0 as f32);
        let ya = (ly - cut).floor().max(0.0) as usize;
        let yb = ((ly + cut).ceil().max(0.0) as usize).min(rh - 1);
        let xa = (lx - cut).floor().max(0.0) as usize;
        let xb = ((lx + cut).ceil().max(0.0) as usize).min(rw - 1);
        for y in ya..=yb {
            for x in xa..=xb {
                if (x as f32 - lx).powi(2) + (y as f32 - ly).powi(2) <= cut * cut {
                    bufs.mask[y * rw + x] = 0;
                }
            }
        }
    }
    let n = {
        let m = Mat::new_rows_cols_with_data::<u8>(rh as i32, rw as i32, &bufs.mask)?;
        imgproc::connected_components_with_stats(
            &m,
            &mut bufs.labels,
            &mut bufs.stats,
            &mut bufs.centroids,
            8,
            core::CV_32S,
        )?
    };
    let labels = bufs.labels.data_typed::<i32>()?;
    let stat = |l: i32, k: i32| bufs.stats.at_2d::<i32>(l, k).copied().unwrap_or(0);
    // The most stick-like piece: long and thin.
    let mut best: Option<(f32, Axis)> = None;
    for l in 1..n {
        let (bw, bh) = (
            stat(l, imgproc::CC_STAT_WIDTH),
            stat(l, imgproc::CC_STAT_HEIGHT),
        );
        let area = stat(l, imgproc::CC_STAT_AREA) as f32;
        if ((bw * bw + bh * bh) as f32).sqrt() < 4.0 * r || area < 2.0 * r {
            continue;
        }
        let (bx, by) = (
            stat(l, imgproc::CC_STAT_LEFT) as usize,
            stat(l, imgproc::CC_STAT_TOP) as usize,
        );
        bufs.pts.clear();
        for y in by..by + bh as usize {
            for x in bx..bx + bw as usize {
                if labels[y * rw + x] == l {
                    bufs.pts.push([x as f32, y as f32]);
                }
            }
        }
        let Some(ax) = Axis::fit(&bufs.pts) else {
            continue;
        };
        // Half-width of a uniform bar is sqrt(3) standard deviations; a butt is about half
        // a ball radius, the tip a quarter.
        let half_width = 3f32.sqrt() * ax.spread;
        if half_width > 0.8 * r || ax.length < 6.0 * half_width {
            continue;
        }
        // A short piece is a cue only when it comes in over the cushion or from under a
        // ball (a tip close to the cushion, the rest of the stick hidden).
        if ax.length < 4.0 * r {
            let ends = [ax.t_min, ax.t_max].map(|t| {
                [
                    ax.c[0] + t * ax.e[0] + x0 as f32,
                    ax.c[1] + t * ax.e[1] + y0 as f32,
                ]
            });
            let rim = RIM * prior_radius(inp.table) + 0.5 * r;
            let cut_off = ends.iter().any(|&p| {
                convex_inside_dist(&inp.table.playing, p) < rim
                    || inp
                        .balls
                        .iter()
                        .any(|b| (b.x - p[0]).powi(2) + (b.y - p[1]).powi(2) <= (cut + 1.5).powi(2))
            });
            if ax.length < 2.0 * r || half_width > 0.6 * r || !cut_off {
                continue;
            }
            // A short piece at a pocket is its jaw (the cushion's cut end), not a tip.
            let jaw = 2.5 * prior_radius(inp.table);
            let pockets = pockets_of(&inp.table.playing);
            if ends.iter().any(|&p| {
                pockets
                    .iter()
                    .any(|q| (p[0] - q[0]).hypot(p[1] - q[1]) < jaw)
            }) {
                continue;
            }
        }
        // A line along a side is a cushion's nose or shadow seen a little inside a table
        // whose corners are a few pixels off, not a cue.
        if along_a_side(&ax, inp.table, (x0, y0), 1.5 * r) {
            continue;
        }
        let score = ax.length / (1.0 + half_width);
        if best.as_ref().is_none_or(|(s, _)| score > *s) {
            best = Some((score, ax));
        }
    }
    let Some((_, seed)) = best else {
        return Ok(None);
    };
    // Every stick pixel near the seed's line, wherever balls cut it; refit twice.
    let mut ax = seed;
    for band in [0.9 * r, 0.6 * r] {
        bufs.pts.clear();
        for y in 0..rh {
            for x in 0..rw {
                if bufs.mask[y * rw + x] == 0 {
                    continue;
                }
                let p = [x as f32, y as f32];
                if ax.perp(p).abs() <= band {
                    bufs.pts.push(p);
                }
            }
        }
        // Keep the run of pixels along the line that holds the seed, bridging gaps of a
        // ball, and longer gaps where balls lie under the line (they were cut out of the
        // mask).
        let under_balls = |a: f32, b: f32| {
            let mut t = a;
            while t <= b {
                let p = [
                    ax.c[0] + t * ax.e[0] + x0 as f32,
                    ax.c[1] + t * ax.e[1] + y0 as f32,
                ];
                let covered = inp
                    .balls
                    .iter()
                    .any(|q| (q.x - p[0]).powi(2) + (q.y - p[1]).powi(2) <= (cut + 1.0).powi(2));
                if !covered {
                    return false;
                }
                t += 1.0;
            }
            true
        };
        let (lo, hi) = connected_run(&bufs.pts, &ax, seed_span(&seed, &ax), 2.8 * r, under_balls);
        bufs.pts.retain(|p| (lo..=hi).contains(&ax.along(*p)));
        match Axis::fit(&bufs.pts) {
            Some(a) => ax = a,
            None => return Ok(None),
        }
    }
    let (t_lo, t_hi) = (ax.t_min, ax.t_max);
    let end = |t: f32| {
        [
            ax.c[0] + t * ax.e[0] + x0 as f32,
            ax.c[1] + t * ax.e[1] + y0 as f32,
        ]
    };
    let (p_lo, p_hi) = (end(t_lo), end(t_hi));
    // The butt leaves the playing area (cut at RIM inside it); the tip is further in.
    let playing = &inp.table.playing;
    let (d_lo, d_hi) = (
        convex_inside_dist(playing, p_lo),
        convex_inside_dist(playing, p_hi),
    );
    let edge = RIM * prior_radius(inp.table) + 0.8 * r;
    let tip_is_hi = match (d_lo < edge, d_hi < edge) {
        (true, false) => true,
        (false, true) => false,
        // Both ends on the cloth (or both at its edge): the tip is the thinner end.
        _ => {
            let reach = 3.0 * r;
            let w_lo = width_at_roi(&bufs.pts, &ax, t_lo, t_lo + reach);
            let w_hi = width_at_roi(&bufs.pts, &ax, t_hi - reach, t_hi);
            w_hi < w_lo
        }
    };
    let (dir, t_end) = if tip_is_hi {
        (ax.e, t_hi)
    } else {
        ([-ax.e[0], -ax.e[1]], t_lo)
    };
    let t_end = stick_end(&bufs.pts, &ax, t_end, if tip_is_hi { 1.0 } else { -1.0 }, r);
    let rough = end(t_end);
    let tip = walk_to_tip(inp, rough, dir, r);
    let length = t_hi - t_lo;
    let confidence = ((length / (10.0 * r)).min(1.0) * 0.8 + 0.2).clamp(0.0, 1.0);
    Ok(Some(CueFound {
        tip,
        dir,
        confidence,
    }))
}

/// The playing area shrunk by [`RIM`] ball radii, ROI-sized: the cushions' noses, the
/// cushions and the rails' edges are long thin lines of foreground that must not pass for a
/// cue. Cached per table.
fn inner_mask(table: &TableModel, bufs: &mut CueBuffers) -> Result<(), DetectError> {
    let (x0, y0, rw, rh) = table.roi;
    let key = (x0, y0, rw, rh, table.long_side.to_bits());
    if bufs.inner_for == Some(key) {
        return Ok(());
    }
    let inner = grow_convex(&table.playing, -RIM * prior_radius(table));
    let pts: Vector<Point> = inner
        .iter()
        .map(|p| {
            Point::new(
                ((p[0] - x0 as f32) * 16.0).round() as i32,
                ((p[1] - y0 as f32) * 16.0).round() as i32,
            )
        })
        .collect();
    bufs.inner =
        Mat::new_rows_cols_with_default(rh as i32, rw as i32, core::CV_8UC1, Scalar::all(0.0))?;
    imgproc::fill_convex_poly(&mut bufs.inner, &pts, Scalar::all(1.0), imgproc::LINE_8, 4)?;
    bufs.inner_for = Some(key);
    Ok(())
}

/// The ball stage's prior radius: an 80th of the table's long side.
fn prior_radius(table: &TableModel) -> f32 {
    table.long_side / 80.0
}

/// Whether the piece `ax` (ROI coordinates, origin `off`) runs within 5 degrees of a side of
/// the playing area and within `near` of it.
fn along_a_side(ax: &Axis, table: &TableModel, off: (usize, usize), near: f32) -> bool {
    let q = &table.playing;
    let mid = [ax.c[0] + off.0 as f32, ax.c[1] + off.1 as f32];
    (0..4).any(|i| {
        let (a, b) = (q[i], q[(i + 1) % 4]);
        let (dx, dy) = (b[0] - a[0], b[1] - a[1]);
        let len = (dx * dx + dy * dy).sqrt().max(1e-6);
        let parallel = ((ax.e[0] * dx + ax.e[1] * dy) / len).abs() > 5f32.to_radians().cos();
        let dist = ((mid[0] - a[0]) * dy - (mid[1] - a[1]) * dx).abs() / len;
        parallel && dist < near
    })
}

/// Mean distance from the axis of the points (ROI coordinates) whose position along it lies
/// in `lo..=hi`.
fn width_at_roi(pts: &[P2], ax: &Axis, lo: f32, hi: f32) -> f32 {
    let (mut s, mut n) = (0.0f32, 0u32);
    for &p in pts {
        if (lo..=hi).contains(&ax.along(p)) {
            s += ax.perp(p).abs();
            n += 1;
        }
    }
    s / n.max(1) as f32
}

/// The seed piece's extent along `ax`.
fn seed_span(seed: &Axis, ax: &Axis) -> (f32, f32) {
    let a = ax.along([
        seed.c[0] + seed.t_min * seed.e[0],
        seed.c[1] + seed.t_min * seed.e[1],
    ]);
    let b = ax.along([
        seed.c[0] + seed.t_max * seed.e[0],
        seed.c[1] + seed.t_max * seed.e[1],
    ]);
    (a.min(b), a.max(b))
}

/// The extent along `ax` of the run of `pts` that contains `span`, allowing gaps up to `gap`
/// and longer ones that `bridge(from, to)` accepts.
fn connected_run(
    pts: &[P2],
    ax: &Axis,
    span: (f32, f32),
    gap: f32,
    bridge: impl Fn(f32, f32) -> bool,
) -> (f32, f32) {
    let mut ts: Vec<f32> = pts.iter().map(|&p| ax.along(p)).collect();
    ts.sort_by(f32::total_cmp);
    let (mut lo, mut hi) = span;
    // Grow upwards from the span's end, then downwards from its start.
    for &t in &ts {
        if t <= hi {
            continue;
        }
        if t - hi > gap && !bridge(hi, t) {
            break;
        }
        hi = t;
    }
    for &t in ts.iter().rev() {
        if t >= lo {
            continue;
        }
        if lo - t > gap && !bridge(t, lo) {
            break;
        }
        lo = t;
    }
    (lo, hi)
}

/// Where the stick ends toward its tip. `pts` are the stick pixels along `ax` (ROI
/// coordinates), reaching `t_end` on the tip side, which lies towards `sign` (+1 or -1) along
/// the axis. The run of pixels can go on past the tip into balls the ball stage missed (a tip
/// against a rack): those are wider than the stick, which only narrows towards its tip, or off
/// its axis. Walking towards the tip in steps of half a radius, the stick ends where a radius
/// of such pixels begins.
fn stick_end(pts: &[P2], ax: &Axis, t_end: f32, sign: f32, r: f32) -> f32 {
    const BINS: usize = 32;
    let bin = 0.5 * r;
    let s_end = sign * t_end;
    let s0 = s_end - BINS as f32 * bin;
    // Per bin: pixels, sum of the signed distance from the axis.
    let mut count = [0u32; BINS];
    let mut side = [0.0f32; BINS];
    for &p in pts {
        let s = sign * ax.along(p);
        if s < s0 {
            continue;
        }
        let k = (((s - s0) / bin) as usize).min(BINS - 1);
        count[k] += 1;
        side[k] += ax.perp(p);
    }
    // The stick's width: the median over the window, which the stick fills for the most
    // part (the near end of the window may be clipped at the rim or cut by a ball, so the
    // width is not taken from there alone).
    let mut dens: Vec<u32> = count.iter().copied().filter(|&c| c > 0).collect();
    if dens.len() < 4 {
        return t_end;
    }
    dens.sort_unstable();
    let stick = dens[dens.len() / 2] as f32;
    let (mut last_good, mut bad) = (None::<usize>, 0u32);
    let mut recent = [0u32; 6];
    for k in 0..BINS {
        // Empty bins and slivers are where a ball was cut out of the stick.
        if (count[k] as f32) < 0.5 * stick {
            continue;
        }
        // The stick narrows towards its tip: a bin may be as wide as the stick just behind
        // it, or as the median where that is wider.
        let behind = recent.iter().copied().max().unwrap_or(0) as f32;
        let off_axis = (side[k] / count[k] as f32).abs() > 0.3 * r;
        let wide = count[k] as f32 > 1.35 * stick.max(behind) + 1.0;
        if off_axis || wide {
            bad += 1;
            if bad >= 2 && last_good.is_some() {
                break;
            }
            continue;
        }
        bad = 0;
        recent.rotate_left(1);
        recent[5] = count[k];
        last_good = Some(k);
    }
    match last_good {
        Some(k) => sign * (s0 + (k + 1) as f32 * bin).min(s_end),
        None => t_end,
    }
}

/// From the rough tip (working pixels), walks along `dir` while the stick's pixels differ from
/// the cloth, and returns the last such point: the end of the tip.
fn walk_to_tip(inp: &CueInput<'_>, rough: P2, dir: P2, r: f32) -> P2 {
    let normal = [-dir[1], dir[0]];
    let noise = inp.cloth.noise.max(1.0);
    // As the ball stage judges a pixel: the cloth's colour direction at about its brightness
    // (the stick's shadow is cloth), not its exact value.
    let not_cloth = |p: P2| {
        let c = inp.cloth.at(p[0], p[1]);
        let cc = (c[0] * c[0] + c[1] * c[1] + c[2] * c[2]).max(1.0);
        let s_hi = 1.0 + (5.0 * noise / cc.sqrt()).max(0.25);
        let sin2_max = (2.5 * noise / cc.sqrt()).max(0.08).powi(2);
        [-1.0f32, 0.0, 1.0].iter().any(|&o| {
            let q = [p[0] + o * normal[0], p[1] + o * normal[1]];
            if q[0] < 0.0 || q[1] < 0.0 || q[0] > (inp.w - 1) as f32 || q[1] > (inp.h - 1) as f32 {
                return false;
            }
            let v = sample(inp.img, inp.w, inp.h, q[0], q[1]);
            let pc = v[0] * c[0] + v[1] * c[1] + v[2] * c[2];
            let pp = (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).max(1.0);
            let s = pc / cc;
            let sin2 = 1.0 - pc * pc / (pp * cc);
            !(0.42..=s_hi).contains(&s) || sin2 > sin2_max
        })
    };
    let step = 0.5f32;
    let mut last = rough;
    let mut cloth_run = 0u32;
    // Start a little behind the rough end (the mask may reach past a blurred tip) and go at
    // most a ball radius beyond it.
    let mut t = -0.5 * r;
    while t <= 1.0 * r {
        let p = [rough[0] + t * dir[0], rough[1] + t * dir[1]];
        if not_cloth(p) {
            last = p;
            cloth_run = 0;
        } else {
            cloth_run += 1;
            if cloth_run >= 3 && t > 0.0 {
                break;
            }
        }
        t += step;
    }
    // The last stick sample is half a step inside the stick's end.
    [last[0] + 0.25 * dir[0], last[1] + 0.25 * dir[1]]
}

/// The principal axis of a set of points.
#[derive(Debug, Clone, Copy)]
struct Axis {
    /// Centroid.
    c: P2,
    /// Unit direction of the largest spread.
    e: P2,
    /// Standard deviation across the axis.
    spread: f32,
    /// Extent along the axis, from the centroid.
    t_min: f32,
    t_max: f32,
    length: f32,
}

impl Axis {
    fn fit(pts: &[P2]) -> Option<Axis> {
        if pts.len() < 8 {
            return None;
        }
        let n = pts.len() as f32;
        let cx = pts.iter().map(|p| p[0]).sum::<f32>() / n;
        let cy = pts.iter().map(|p| p[1]).sum::<f32>() / n;
        let (mut sxx, mut sxy, mut syy) = (0.0f32, 0.0f32, 0.0f32);
        for p in pts {
            let (dx, dy) = (p[0] - cx, p[1] - cy);
            sxx += dx * dx;
            sxy += dx * dy;
            syy += dy * dy;
        }
        let theta = 0.5 * (2.0 * sxy).atan2(sxx - syy);
        let e = [theta.cos(), theta.sin()];
        let mut ax = Axis {
            c: [cx, cy],
            e,
            spread: 0.0,
            t_min: f32::INFINITY,
            t_max: f32::NEG_INFINITY,
            length: 0.0,
        };
        let mut perp2 = 0.0f32;
        for &p in pts {
            let t = ax.along(p);
            ax.t_min = ax.t_min.min(t);
            ax.t_max = ax.t_max.max(t);
            perp2 += ax.perp(p).powi(2);
        }
        ax.spread = (perp2 / n).sqrt();
        ax.length = ax.t_max - ax.t_min;
        Some(ax)
    }

    /// Position of `p` along the axis, from the centroid.
    fn along(&self, p: P2) -> f32 {
        (p[0] - self.c[0]) * self.e[0] + (p[1] - self.c[1]) * self.e[1]
    }

    /// Signed distance of `p` from the axis.
    fn perp(&self, p: P2) -> f32 {
        -(p[0] - self.c[0]) * self.e[1] + (p[1] - self.c[1]) * self.e[0]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bar(from: P2, to: P2, half: f32) -> Vec<P2> {
        let mut pts = Vec::new();
        for y in 0..200 {
            for x in 0..200 {
                let p = [x as f32, y as f32];
                let (dx, dy) = (to[0] - from[0], to[1] - from[1]);
                let len = (dx * dx + dy * dy).sqrt();
                let t = ((p[0] - from[0]) * dx + (p[1] - from[1]) * dy) / len;
                let d = (-(p[0] - from[0]) * dy + (p[1] - from[1]) * dx) / len;
                if (0.0..=len).contains(&t) && d.abs() <= half {
                    pts.push(p);
                }
            }
        }
        pts
    }

    #[test]
    fn the_axis_of_a_bar_is_its_direction() {
        let pts = bar([20.0, 30.0], [180.0, 110.0], 2.0);
        let ax = Axis::fit(&pts).unwrap();
        let angle = ax.e[1].atan2(ax.e[0]).to_degrees();
        let want = (80.0f32).atan2(160.0).to_degrees();
        let diff = (angle - want).rem_euclid(180.0);
        assert!(diff.min(180.0 - diff) < 0.5, "{angle} vs {want}");
        assert!((ax.length - 178.9).abs() < 3.0, "{}", ax.length);
        assert!((3f32.sqrt() * ax.spread - 2.0).abs() < 0.7, "{}", ax.spread);
    }

    /// An axis along +x through `c`, for the walks along a stick.
    fn x_axis(c: P2) -> Axis {
        Axis {
            c,
            e: [1.0, 0.0],
            spread: 0.0,
            t_min: 0.0,
            t_max: 0.0,
            length: 0.0,
        }
    }

    #[test]
    fn the_stick_ends_where_a_missed_ball_begins() {
        let ax = x_axis([0.0, 50.0]);
        let r = 6.0;
        // A stick tapering from 3 to 1.5 px half-width along x = 0..120, cut by a ball at
        // x = 60..72 (a gap with slivers), then a missed ball's pixels (the band's full
        // width) at x = 122..134 in front of its tip.
        let mut pts: Vec<P2> = Vec::new();
        for x in 0..=120 {
            if (60..72).contains(&x) && x != 60 && x != 71 {
                continue;
            }
            let half = 3.0 - 1.5 * x as f32 / 120.0;
            for y in -3i32..=3 {
                if (y as f32).abs() <= half {
                    pts.push([x as f32, 50.0 + y as f32]);
                }
            }
        }
        let with_ball: Vec<P2> = pts
            .iter()
            .copied()
            .chain((122..=134).flat_map(|x| (-3i32..=3).map(move |y| [x as f32, 50.0 + y as f32])))
            .collect();
        let end = stick_end(&with_ball, &ax, 134.0, 1.0, r);
        assert!((end - 121.0).abs() <= 2.0, "{end}");
        // Without the ball the whole stick is kept, across the gap.
        let end = stick_end(&pts, &ax, 120.0, 1.0, r);
        assert!((end - 120.0).abs() <= 1.0, "{end}");
        // The same, walking the other way along the axis.
        let flipped: Vec<P2> = with_ball.iter().map(|p| [-p[0], p[1]]).collect();
        let end = stick_end(&flipped, &ax, -134.0, -1.0, r);
        assert!((end + 121.0).abs() <= 2.0, "{end}");
    }

    #[test]
    fn runs_bridge_small_gaps_only() {
        let ax = x_axis([0.0, 0.0]);
        let mut pts: Vec<P2> = (0..50).map(|x| [x as f32, 0.0]).collect();
        pts.extend((58..80).map(|x| [x as f32, 0.0])); // gap of 8: bridged
        pts.extend((120..130).map(|x| [x as f32, 0.0])); // gap of 40: not
        let (lo, hi) = connected_run(&pts, &ax, (10.0, 20.0), 10.0, |_, _| false);
        assert_eq!((lo, hi), (0.0, 79.0));
        // A long gap with a ball under it is bridged.
        let (lo, hi) = connected_run(&pts, &ax, (10.0, 20.0), 10.0, |a, b| {
            a >= 79.0 && b <= 120.0
        });
        assert_eq!((lo, hi), (0.0, 129.0));
    }
}
