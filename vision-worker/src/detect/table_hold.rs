//! Holding the table between frames: found once on a clear view, then kept while it fits.
//!
//! A cue, a hand or a player leaning over the table covers part of it; re-detecting the table
//! then would move it. So the held table is only checked, every frame, against its four
//! edges: just inside each side the pixels should have the cloth's colour, just outside
//! (on the rail) they should not, as they did when the table was accepted. An occluder covers
//! a few of the probes of one side, a moved camera fails whole sides. Only
//! [`MISFIT_FRAMES`] misfitting frames in a row trigger a new detection, so one bad frame
//! changes nothing.

use super::geom::{sample, P2};
use super::table::TableModel;

/// Consecutive misfitting frames before the table is detected again.
pub(crate) const MISFIT_FRAMES: u32 = 5;
/// Probes along each side.
const PROBES: usize = 24;
/// A side misfits when its score falls below this share of the score it had when accepted.
const KEEP_SHARE: f32 = 0.7;
/// Sides whose accepted score is below this say nothing (e.g. a rail of the cloth's colour).
const MIN_BASELINE: f32 = 0.3;

/// How well a table fits a frame: per side, the share of probes that look as expected.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Fit(pub [f32; 4]);

/// The hold's verdict on one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The held table fits (or misfits for too few frames to matter).
    Keep,
    /// It has not fitted for [`MISFIT_FRAMES`] frames: detect the table again.
    Redetect,
}

/// The state of the held table's fit.
#[derive(Debug, Clone, Default)]
pub(crate) struct TableHold {
    baseline: Option<Fit>,
    misfits: u32,
}

impl TableHold {
    /// Starts holding a table that fitted `fit` when it was found.
    pub fn accept(&mut self, fit: Fit) {
        self.baseline = Some(fit);
        self.misfits = 0;
    }

    /// Forgets the held table.
    pub fn clear(&mut self) {
        self.baseline = None;
        self.misfits = 0;
    }

    /// Consecutive misfitting frames so far.
    pub fn misfits(&self) -> u32 {
        self.misfits
    }

    /// Judges one frame's fit of the held table.
    pub fn judge(&mut self, fit: Fit) -> Verdict {
        let Some(base) = self.baseline else {
            return Verdict::Redetect;
        };
        let misfit = base
            .0
            .iter()
            .zip(fit.0.iter())
            .any(|(&b, &f)| b >= MIN_BASELINE && f < KEEP_SHARE * b);
        if !misfit {
            self.misfits = 0;
            return Verdict::Keep;
        }
        self.misfits += 1;
        if self.misfits >= MISFIT_FRAMES {
            self.misfits = 0;
            Verdict::Redetect
        } else {
            Verdict::Keep
        }
    }
}

/// Measures how well `table` fits the working image `img` (`w` x `h`, BGR).
pub(crate) fn measure(img: &[u8], w: usize, h: usize, table: &TableModel) -> Fit {
    let q = &table.playing;
    let c = [
        q.iter().map(|p| p[0]).sum::<f32>() / 4.0,
        q.iter().map(|p| p[1]).sum::<f32>() / 4.0,
    ];
    let side_len = |i: usize| {
        let (a, b) = (q[i], q[(i + 1) % 4]);
        ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2)).sqrt()
    };
    let short = (0..4).map(side_len).fold(f32::INFINITY, f32::min);
    // Inside: on the bed, clear of the cushion's nose line. Outside: beyond the cushion, on
    // the rail.
    let (d_in, d_out) = (0.04 * short, 0.11 * short);
    let tol2 = (1.5 * table.cloth.tol).powi(2);
    let cloth_like = |p: P2| {
        if p[0] < 0.0 || p[1] < 0.0 || p[0] > (w - 1) as f32 || p[1] > (h - 1) as f32 {
            return false;
        }
        let [b, g, r] = sample(img, w, h, p[0], p[1]);
        let s = b + g + r;
        s >= 0.2 * table.cloth.intensity
            && s <= 3.5 * table.cloth.intensity
            && table.cloth.chroma_dist2(b, g, r) < tol2
    };
    let mut out = [0.0f32; 4];
    for (i, o) in out.iter_mut().enumerate() {
        let (a, b) = (q[i], q[(i + 1) % 4]);
        let len = side_len(i).max(1.0);
        let (ux, uy) = ((b[0] - a[0]) / len, (b[1] - a[1]) / len);
        // The inward normal points to the centre.
        let (mut nx, mut ny) = (-uy, ux);
        if (c[0] - a[0]) * nx + (c[1] - a[1]) * ny < 0.0 {
            nx = -nx;
            ny = -ny;
        }
        let (mut good, mut n) = (0u32, 0u32);
        for j in 0..PROBES {
            // Away from the pockets at the ends and in the middle of the long sides.
            let t = 0.12 + 0.76 * (j as f32 + 0.5) / PROBES as f32;
            if (0.45..0.55).contains(&t) {
                continue;
            }
            let p = [a[0] + t * (b[0] - a[0]), a[1] + t * (b[1] - a[1])];
            let inside = cloth_like([p[0] + d_in * nx, p[1] + d_in * ny]);
            let outside = !cloth_like([p[0] - d_out * nx, p[1] - d_out * ny]);
            good += u32::from(inside) + u32::from(outside);
            n += 2;
        }
        *o = good as f32 / n.max(1) as f32;
    }
    Fit(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_bad_frame_changes_nothing() {
        let mut h = TableHold::default();
        h.accept(Fit([0.9, 0.95, 0.9, 0.9]));
        assert_eq!(h.judge(Fit([0.1, 0.9, 0.9, 0.9])), Verdict::Keep);
        assert_eq!(h.misfits(), 1);
        assert_eq!(h.judge(Fit([0.85, 0.9, 0.9, 0.9])), Verdict::Keep);
        assert_eq!(h.misfits(), 0, "a fitting frame resets the count");
    }

    #[test]
    fn a_table_that_stops_fitting_is_detected_again() {
        let mut h = TableHold::default();
        h.accept(Fit([0.9, 0.95, 0.9, 0.9]));
        for _ in 1..MISFIT_FRAMES {
            assert_eq!(h.judge(Fit([0.9, 0.2, 0.9, 0.9])), Verdict::Keep);
        }
        assert_eq!(h.judge(Fit([0.9, 0.2, 0.9, 0.9])), Verdict::Redetect);
    }

    #[test]
    fn an_occluder_over_part_of_a_side_is_not_a_misfit() {
        let mut h = TableHold::default();
        h.accept(Fit([0.9, 0.95, 0.9, 0.9]));
        for _ in 0..100 {
            assert_eq!(h.judge(Fit([0.75, 0.95, 0.8, 0.9])), Verdict::Keep);
        }
    }

    #[test]
    fn sides_without_a_clear_edge_are_ignored() {
        let mut h = TableHold::default();
        h.accept(Fit([0.9, 0.2, 0.9, 0.9]));
        for _ in 0..100 {
            assert_eq!(h.judge(Fit([0.9, 0.0, 0.9, 0.9])), Verdict::Keep);
        }
        let mut none = TableHold::default();
        assert_eq!(none.judge(Fit([1.0; 4])), Verdict::Redetect);
    }
}
