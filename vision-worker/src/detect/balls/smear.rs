//! Step 6: balls smeared by their motion.
//!
//! A fast ball is drawn along its path during the exposure: its blob is an ellipse about one
//! ball wide and up to twice as long, and its outline is soft along the motion, so the circle
//! fits of step 4 find too few edges on it (or shrink onto its sharp middle). A blob with no
//! ball found in it, clear of the table's rim, whose shape is such an ellipse, is one ball: its
//! centre is the ellipse's centre (the smear is symmetric about the ball's mid-exposure
//! position) and its radius the common one (the short axis says it is a ball). The circle
//! then passes the same checks as every other ([`super::validate::rejection`]), so a hand, a
//! reflection or a pocket is not taken for one. Only blobs left without a ball are measured,
//! so a frame without fast balls pays one bounding-box test per blob.

use tracing::trace;

use super::foreground::{BlobBox, Blobs};
use super::validate::rejection;
use super::{Found, Work};
use crate::detect::DetectError;

/// The short semi-axis of a smear, in ball radii: the blur does not widen the ball across the
/// motion.
const MINOR: (f32, f32) = (0.75, 1.25);
/// The long semi-axis, in ball radii: from a still ball (whose outline was too faint for the
/// circle fits, a dark ball in a dim frame) to a ball plus the longest smear seen in one
/// exposure.
const MAJOR: (f32, f32) = (0.8, 2.1);
/// The blob's area over the area of its moment ellipse: a filled ellipse is 1.
const FILL: (f32, f32) = (0.85, 1.15);

/// The moment ellipse of a blob, in ROI pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Ellipse {
    cx: f32,
    cy: f32,
    /// Semi-axes, `major >= minor`, of the uniform ellipse with the blob's second moments.
    major: f32,
    minor: f32,
}

impl Ellipse {
    /// The ellipse of the points `(x, y, 1)` summed as `n, sx, sy, sxx, syy, sxy`.
    fn of_sums(n: f32, sx: f32, sy: f32, sxx: f32, syy: f32, sxy: f32) -> Option<Ellipse> {
        if n < 3.0 {
            return None;
        }
        let (cx, cy) = (sx / n, sy / n);
        let vxx = sxx / n - cx * cx;
        let vyy = syy / n - cy * cy;
        let vxy = sxy / n - cx * cy;
        let mid = 0.5 * (vxx + vyy);
        let d = (0.25 * (vxx - vyy).powi(2) + vxy * vxy).sqrt();
        let (l1, l2) = (mid + d, (mid - d).max(0.0));
        // A uniform ellipse of semi-axis a has a variance of a^2 / 4 along it.
        Some(Ellipse {
            cx,
            cy,
            major: 2.0 * l1.sqrt(),
            minor: 2.0 * l2.sqrt(),
        })
    }

    /// Whether a blob of `area` pixels with this ellipse is one ball of radius `r` smeared.
    fn is_smeared_ball(&self, area: f32, r: f32) -> bool {
        let fill = area / (std::f32::consts::PI * self.major * self.minor).max(1.0);
        (MINOR.0 * r..=MINOR.1 * r).contains(&self.minor)
            && (MAJOR.0 * r..=MAJOR.1 * r).contains(&self.major)
            && (FILL.0..=FILL.1).contains(&fill)
    }
}

/// Adds to `kept` the smeared balls among the blobs with no ball of `kept` in them.
pub(super) fn add_smeared(
    work: &Work<'_>,
    blobs: &Blobs<'_>,
    kept: &mut Vec<Found>,
    r_ball: f32,
) -> Result<(), DetectError> {
    let super::Roi { x0, y0, .. } = work.roi;
    let ball_area = std::f32::consts::PI * r_ball * r_ball;
    for l in 1..blobs.n {
        let b = blobs.bbox(l)?;
        // The area of a ball smeared by up to 1.1 radii each way, less its faint ends.
        if !(0.9 * ball_area..=3.0 * ball_area).contains(&b.area) {
            continue;
        }
        let long = b.w.max(b.h) as f32;
        if long < 1.6 * r_ball || long > 2.0 * (MAJOR.1 + 0.2) * r_ball {
            continue;
        }
        let inside = |f: &Found| {
            let (x, y) = (f.x - x0 as f32, f.y - y0 as f32);
            x >= b.x as f32 && y >= b.y as f32 && x < (b.x + b.w) as f32 && y < (b.y + b.h) as f32
        };
        if kept.iter().any(inside) {
            continue;
        }
        let Some(e) = moments(work, blobs, l, b) else {
            continue;
        };
        if !e.is_smeared_ball(b.area, r_ball) {
            trace!(
                x = e.cx + x0 as f32,
                y = e.cy + y0 as f32,
                major = e.major / r_ball,
                minor = e.minor / r_ball,
                area = b.area / ball_area,
                "not a smear"
            );
            continue;
        }
        let f = Found {
            x: e.cx + x0 as f32,
            y: e.cy + y0 as f32,
            r: r_ball,
            // No outline was fitted: a weak score, which also keeps it out of the radius
            // measurement and submits it to the reflection test.
            support: 0.5,
            rms: 0.0,
        };
        if let Some(why) = rejection(work, blobs, &f, r_ball, kept) {
            trace!(x = f.x, y = f.y, why, "smear rejected");
            continue;
        }
        trace!(
            x = f.x,
            y = f.y,
            major = e.major,
            minor = e.minor,
            "smeared ball"
        );
        kept.push(f);
    }
    Ok(())
}

/// The moment ellipse of blob `l` (box `b`), or `None` when it touches the table's rim (a
/// pocket's bite or a ball against a cushion is cut, not smeared).
fn moments(work: &Work<'_>, blobs: &Blobs<'_>, l: i32, b: BlobBox) -> Option<Ellipse> {
    let super::Roi { rw, rh, .. } = work.roi;
    let mask = &work.table.mask;
    let (mut n, mut sx, mut sy, mut sxx, mut syy, mut sxy) = (0.0f32, 0.0, 0.0, 0.0, 0.0, 0.0);
    for y in b.y..b.y + b.h {
        for x in b.x..b.x + b.w {
            if blobs.labels[y * rw + x] != l {
                continue;
            }
            if x == 0 || y == 0 || x + 1 >= rw || y + 1 >= rh {
                return None;
            }
            let rim = [
                y * rw + x - 1,
                y * rw + x + 1,
                (y - 1) * rw + x,
                (y + 1) * rw + x,
            ];
            if rim.iter().any(|&i| mask[i] == 0) {
                return None;
            }
            // Relative to the box, so the sums stay small in f32.
            let (fx, fy) = ((x - b.x) as f32, (y - b.y) as f32);
            n += 1.0;
            sx += fx;
            sy += fy;
            sxx += fx * fx;
            syy += fy * fy;
            sxy += fx * fy;
        }
    }
    let e = Ellipse::of_sums(n, sx, sy, sxx, syy, sxy)?;
    Some(Ellipse {
        cx: e.cx + b.x as f32,
        cy: e.cy + b.y as f32,
        ..e
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The moment ellipse of the pixels of a `w` x `h` grid for which `set` is true.
    fn ellipse_of(w: usize, h: usize, set: impl Fn(f32, f32) -> bool) -> (Ellipse, f32) {
        let (mut n, mut sx, mut sy, mut sxx, mut syy, mut sxy) = (0.0f32, 0.0, 0.0, 0.0, 0.0, 0.0);
        for y in 0..h {
            for x in 0..w {
                let (fx, fy) = (x as f32, y as f32);
                if set(fx, fy) {
                    n += 1.0;
                    sx += fx;
                    sy += fy;
                    sxx += fx * fx;
                    syy += fy * fy;
                    sxy += fx * fy;
                }
            }
        }
        (Ellipse::of_sums(n, sx, sy, sxx, syy, sxy).unwrap(), n)
    }

    #[test]
    fn a_smeared_disc_is_one_ball_at_its_middle() {
        // A disc of radius 7 swept 8 px along a 30 degree line, centred at (30, 25): a
        // stadium.
        let (c, s) = (30f32.to_radians().cos(), 30f32.to_radians().sin());
        let (e, area) = ellipse_of(60, 50, |x, y| {
            let (dx, dy) = (x - 30.0, y - 25.0);
            let along = (dx * c + dy * s).clamp(-4.0, 4.0);
            (dx - along * c).powi(2) + (dy - along * s).powi(2) <= 49.0
        });
        assert!(
            (e.cx - 30.0).abs() < 0.2 && (e.cy - 25.0).abs() < 0.2,
            "{e:?}"
        );
        assert!(e.major > e.minor, "{e:?}");
        assert!(e.is_smeared_ball(area, 7.0), "{e:?}, area {area}");
    }

    #[test]
    fn a_still_ball_is_one_and_sticks_pairs_and_small_spots_are_not() {
        // A still ball whose outline the circle fits missed.
        let (e, area) = ellipse_of(40, 40, |x, y| {
            (x - 20.0).powi(2) + (y - 20.0).powi(2) <= 49.0
        });
        assert!(e.is_smeared_ball(area, 7.0), "round {e:?}");
        // A spot half a ball wide.
        let (e, area) = ellipse_of(40, 40, |x, y| {
            (x - 20.0).powi(2) + (y - 20.0).powi(2) <= 12.0
        });
        assert!(!e.is_smeared_ball(area, 7.0), "spot {e:?}");
        // A stick end, 8 px wide and 60 long: far too long and thin.
        let (e, area) = ellipse_of(80, 20, |x, y| {
            (10.0..70.0).contains(&x) && (6.0..14.0).contains(&y)
        });
        assert!(!e.is_smeared_ball(area, 7.0), "stick {e:?}");
        // Two still balls touching: the waist makes it less than a filled ellipse.
        let (e, area) = ellipse_of(50, 30, |x, y| {
            (x - 17.0).powi(2) + (y - 15.0).powi(2) <= 49.0
                || (x - 31.0).powi(2) + (y - 15.0).powi(2) <= 49.0
        });
        assert!(!e.is_smeared_ball(area, 7.0), "pair {e:?}, area {area}");
    }
}
