//! Scoring detections against ground truth: recall, precision, centre error, kind accuracy
//! and the kind confusion matrix. Shared by `vision-eval` and the tests.

use crate::model::{Ball, BallKind};
use crate::scene::TrueBall;

/// Accumulated accuracy over many frames.
#[derive(Debug, Clone, Default)]
pub struct Score {
    /// Frames scored.
    pub frames: u64,
    /// Frames where a table was found.
    pub tables_found: u64,
    /// True balls.
    pub truths: u64,
    /// Detected balls.
    pub detections: u64,
    /// Detections matched to a true ball.
    pub matched: u64,
    /// Sum of centre errors of matched detections (pixels).
    pub centre_err_sum: f64,
    /// Largest centre error of a matched detection.
    pub centre_err_max: f64,
    /// Sum of absolute radius errors of matched detections (pixels).
    pub radius_err_sum: f64,
    /// Matched detections whose kind is right.
    pub kind_right: u64,
    /// `confusion[truth][detected]`, indices as in [`BallKind::ALL`].
    pub confusion: [[u64; 5]; 5],
    /// Sum over frames of the mean corner error (pixels), when a table was found.
    pub corner_err_sum: f64,
}

fn kind_index(k: BallKind) -> usize {
    BallKind::ALL.iter().position(|&x| x == k).unwrap_or(4)
}

/// One frame's matching: `(truth index, detection index)` pairs.
pub fn match_balls(truth: &[TrueBall], det: &[Ball]) -> Vec<(usize, usize)> {
    // Greedy by distance: every pair within the true radius, closest first.
    let mut pairs: Vec<(f32, usize, usize)> = Vec::new();
    for (i, t) in truth.iter().enumerate() {
        for (j, d) in det.iter().enumerate() {
            let e = ((t.x - d.x).powi(2) + (t.y - d.y).powi(2)).sqrt();
            if e <= t.radius {
                pairs.push((e, i, j));
            }
        }
    }
    pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (mut ut, mut ud) = (vec![false; truth.len()], vec![false; det.len()]);
    let mut out = Vec::new();
    for (_, i, j) in pairs {
        if !ut[i] && !ud[j] {
            ut[i] = true;
            ud[j] = true;
            out.push((i, j));
        }
    }
    out
}

impl Score {
    /// Adds one frame.
    pub fn add(
        &mut self,
        truth: &[TrueBall],
        corners: Option<&[[f32; 2]; 4]>,
        det: &[Ball],
        det_corners: Option<&[[f32; 2]; 4]>,
    ) {
        self.frames += 1;
        self.truths += truth.len() as u64;
        self.detections += det.len() as u64;
        for (i, j) in match_balls(truth, det) {
            let (t, d) = (&truth[i], &det[j]);
            let e = (((t.x - d.x).powi(2) + (t.y - d.y).powi(2)) as f64).sqrt();
            self.matched += 1;
            self.centre_err_sum += e;
            self.centre_err_max = self.centre_err_max.max(e);
            self.radius_err_sum += (t.radius - d.radius).abs() as f64;
            if t.kind == d.kind {
                self.kind_right += 1;
            }
            self.confusion[kind_index(t.kind)][kind_index(d.kind)] += 1;
        }
        if let Some(dc) = det_corners {
            self.tables_found += 1;
            if let Some(tc) = corners {
                // Corners may be listed from another start; take the best rotation.
                let best = (0..4)
                    .map(|rot| {
                        (0..4)
                            .map(|i| {
                                let (a, b) = (tc[i], dc[(i + rot) % 4]);
                                (((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2)) as f64).sqrt()
                            })
                            .sum::<f64>()
                            / 4.0
                    })
                    .fold(f64::INFINITY, f64::min);
                self.corner_err_sum += best;
            }
        }
    }

    /// Merges another score into this one.
    pub fn merge(&mut self, o: &Score) {
        self.frames += o.frames;
        self.tables_found += o.tables_found;
        self.truths += o.truths;
        self.detections += o.detections;
        self.matched += o.matched;
        self.centre_err_sum += o.centre_err_sum;
        self.centre_err_max = self.centre_err_max.max(o.centre_err_max);
        self.radius_err_sum += o.radius_err_sum;
        self.kind_right += o.kind_right;
        for i in 0..5 {
            for j in 0..5 {
                self.confusion[i][j] += o.confusion[i][j];
            }
        }
        self.corner_err_sum += o.corner_err_sum;
    }

    /// Matched / true balls.
    pub fn recall(&self) -> f64 {
        self.matched as f64 / self.truths.max(1) as f64
    }
    /// Matched / detected balls.
    pub fn precision(&self) -> f64 {
        if self.detections == 0 {
            return 1.0;
        }
        self.matched as f64 / self.detections as f64
    }
    /// Mean centre error of matched balls, pixels.
    pub fn mean_centre_error(&self) -> f64 {
        self.centre_err_sum / self.matched.max(1) as f64
    }
    /// Mean radius error of matched balls, pixels.
    pub fn mean_radius_error(&self) -> f64 {
        self.radius_err_sum / self.matched.max(1) as f64
    }
    /// Matched balls of the right kind / matched balls.
    pub fn kind_accuracy(&self) -> f64 {
        self.kind_right as f64 / self.matched.max(1) as f64
    }
    /// Mean corner error over frames with a table, pixels.
    pub fn mean_corner_error(&self) -> f64 {
        self.corner_err_sum / self.tables_found.max(1) as f64
    }

    /// The confusion matrix as text (rows: truth, columns: detected).
    pub fn confusion_table(&self) -> String {
        let mut s = String::from("truth \\ detected   cue  eight  solid stripe unknown\n");
        for (i, k) in BallKind::ALL.iter().enumerate().take(4) {
            s.push_str(&format!("{:<16}", k.as_str()));
            for j in 0..5 {
                s.push_str(&format!("{:>7}", self.confusion[i][j]));
            }
            s.push('\n');
        }
        s
    }
}
