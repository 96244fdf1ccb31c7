//! Scoring of the tracker over a sequence of frames with ground truth: number accuracy over
//! the detected balls, id switches per ball-minute, pocket-event recall and precision, and the
//! error of the shot start and end in frames. `vision-eval --sequence` feeds it.
//!
//! The truth's shots come from its exact motion flags through the same SPEC rule as the
//! detected ones ([`ShotDetector`]), so only the detection of motion is scored.

use std::collections::HashMap;

use billiards_detections::UNIDENTIFIED_ID_BASE;

use crate::scene::TrueBall;
use crate::shots::{FrameMotion, ShotDetector};
use crate::track::TrackedBall;

/// How far (frames) a detected pocket event may come after the true one (it is confirmed
/// after the ball has stayed away a moment) or before it.
const POCKET_LATE_FRAMES: u64 = 30;
const POCKET_EARLY_FRAMES: u64 = 5;
/// A detected shot belongs to a true one when their starts are this close (frames).
const SHOT_MATCH_FRAMES: u64 = 30;

/// One frame of truth, as far as the sequence scoring needs it.
#[derive(Debug, Clone, Copy)]
pub struct TruthFrame<'a> {
    /// Balls on the table (their numbers are their ids).
    pub balls: &'a [TrueBall],
    /// Numbers pocketed in this frame.
    pub pocketed: &'a [u8],
    /// Whether any ball rolls.
    pub moving: bool,
}

/// What the tracker said about the same frame.
#[derive(Debug, Clone, Copy)]
pub struct TrackedFrame<'a> {
    /// Tracked balls.
    pub balls: &'a [TrackedBall],
    /// Numbers reported pocketed in this frame.
    pub pocketed: &'a [u8],
    /// Whether any ball moved.
    pub motion: bool,
}

/// Shot boundaries, start and end frame.
pub type Bounds = (u64, u64);

/// A pocket event: the frame and the ball's number.
pub type PocketEvent = (u64, u8);

/// The sequence figures.
#[derive(Debug, Default)]
pub struct SequenceScore {
    /// Frames scored.
    pub frames: u64,
    /// Detected balls matched to a true ball.
    pub matched: u64,
    /// ... of which carried the right number.
    pub numbers_right: u64,
    /// ... of which carried a wrong number.
    pub numbers_wrong: u64,
    /// ... of which carried no number (`null`).
    pub numbers_null: u64,
    /// Times a true ball was matched to another id than the last time it was matched, except
    /// its identification (an unidentified id, 100 or more, replaced by its own number).
    pub id_switches: u64,
    /// Identifications: a ball's unidentified id replaced by its own number.
    pub identifications: u64,
    /// `numbers[truth][reported]` over the matched balls; column 16 is `null`.
    pub numbers: [[u64; 17]; 16],
    /// Each id switch: `(frame, true number, id before, id after)` (for `--verbose`).
    pub switch_log: Vec<(u64, u32, u64, u64)>,
    last_id: HashMap<u32, u64>,
    truth_pockets: Vec<PocketEvent>,
    det_pockets: Vec<PocketEvent>,
    truth_shots: ShotDetector,
    det_shots: ShotDetector,
    truth_bounds: Vec<Bounds>,
    det_bounds: Vec<Bounds>,
    fps: f64,
}

/// Pocket events matched between truth and detection.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PocketFigures {
    /// True pocketings.
    pub truth: usize,
    /// Reported pocketings.
    pub detected: usize,
    /// True pocketings reported (same number, in the window).
    pub found: usize,
}

/// Shots matched between truth and detection.
#[derive(Debug, Clone, PartialEq)]
pub struct ShotFigures {
    /// True shots.
    pub truth: usize,
    /// Detected shots.
    pub detected: usize,
    /// `(start error, end error)` in frames of each matched shot.
    pub errors: Vec<(u64, u64)>,
}

impl SequenceScore {
    /// A score for frames at `fps`.
    pub fn new(fps: f64) -> Self {
        SequenceScore {
            fps,
            ..SequenceScore::default()
        }
    }

    /// Forgets the identity of every ball (a new scene starts: ids may change freely) while
    /// keeping the totals. Shots and pockets under way are dropped.
    pub fn new_scene(&mut self) {
        self.last_id.clear();
        self.truth_shots.reset();
        self.det_shots.reset();
    }

    /// Forgets which id each ball had (the balls were laid out anew: a tracker cannot follow
    /// balls that jump across the table, and need not).
    pub fn forget_ids(&mut self) {
        self.last_id.clear();
    }

    /// Scores frame number `frame` (frames are consecutive, at the score's fps).
    pub fn add(&mut self, frame: u64, truth: &TruthFrame<'_>, det: &TrackedFrame<'_>) {
        self.frames += 1;
        for &n in truth.pocketed {
            self.truth_pockets.push((frame, n));
            // A pocketed ball that comes back (a new rack, the cue ball spotted again, which
            // may be in this very frame) may take any id.
            self.last_id.remove(&(n as u32));
        }
        let t_ns = (frame as f64 * 1e9 / self.fps) as u64;
        // Balls: nearest detection within the true radius, one-to-one.
        let mut pairs: Vec<(f32, usize, usize)> = Vec::new();
        for (i, t) in truth.balls.iter().enumerate() {
            for (j, d) in det.balls.iter().enumerate() {
                let e = ((t.x - d.ball.x).powi(2) + (t.y - d.ball.y).powi(2)).sqrt();
                if e <= t.radius {
                    pairs.push((e, i, j));
                }
            }
        }
        pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
        let (mut ut, mut ud) = (vec![false; truth.balls.len()], vec![false; det.balls.len()]);
        for (_, i, j) in pairs {
            if ut[i] || ud[j] {
                continue;
            }
            ut[i] = true;
            ud[j] = true;
            let (t, d) = (&truth.balls[i], &det.balls[j]);
            self.matched += 1;
            if (t.number as usize) < 16 {
                let col = d.number.map_or(16, |n| (n as usize).min(16));
                self.numbers[t.number as usize][col] += 1;
            }
            match d.number {
                Some(n) if n as u32 == t.number => self.numbers_right += 1,
                Some(_) => self.numbers_wrong += 1,
                None => self.numbers_null += 1,
            }
            if let Some(prev) = self.last_id.insert(t.number, d.id) {
                if prev >= UNIDENTIFIED_ID_BASE && d.id == t.number as u64 {
                    self.identifications += 1;
                } else if prev != d.id {
                    self.id_switches += 1;
                    self.switch_log.push((frame, t.number, prev, d.id));
                }
            }
        }
        for &n in det.pocketed {
            self.det_pockets.push((frame, n));
        }
        let unix_s = t_ns as f64 * 1e-9;
        if let Some(s) = self.truth_shots.update(&FrameMotion {
            frame_number: frame,
            t_ns,
            unix_s,
            any_moving: truth.moving,
            moving: &[],
            pocketed: &[],
        }) {
            self.truth_bounds.push((s.start_frame, s.end_frame));
        }
        if let Some(s) = self.det_shots.update(&FrameMotion {
            frame_number: frame,
            t_ns,
            unix_s,
            any_moving: det.motion,
            moving: &[],
            pocketed: &[],
        }) {
            self.det_bounds.push((s.start_frame, s.end_frame));
        }
    }

    /// `(frame, number)` of the true pocket events and of the reported ones.
    pub fn pocket_events(&self) -> (&[PocketEvent], &[PocketEvent]) {
        (&self.truth_pockets, &self.det_pockets)
    }

    /// `(start, end)` frames of the true shots and of the detected ones.
    pub fn bounds(&self) -> (&[Bounds], &[Bounds]) {
        (&self.truth_bounds, &self.det_bounds)
    }

    /// Number accuracy over the detected balls matched to a true one (`null` counts as wrong).
    pub fn number_accuracy(&self) -> f64 {
        self.numbers_right as f64 / self.matched.max(1) as f64
    }

    /// Share of the matched balls without a number.
    pub fn null_rate(&self) -> f64 {
        self.numbers_null as f64 / self.matched.max(1) as f64
    }

    /// Accuracy over the matched balls that carry a number.
    pub fn given_accuracy(&self) -> f64 {
        self.numbers_right as f64 / (self.numbers_right + self.numbers_wrong).max(1) as f64
    }

    /// Ball-minutes of matched balls.
    pub fn ball_minutes(&self) -> f64 {
        self.matched as f64 / self.fps / 60.0
    }

    /// Id switches per ball-minute.
    pub fn switches_per_ball_minute(&self) -> f64 {
        self.id_switches as f64 / self.ball_minutes().max(1e-9)
    }

    /// Pocket events: each true one is found by at most one reported one with its number in
    /// the window.
    pub fn pockets(&self) -> PocketFigures {
        let mut used = vec![false; self.det_pockets.len()];
        let mut found = 0;
        for &(f, n) in &self.truth_pockets {
            let hit = self
                .det_pockets
                .iter()
                .enumerate()
                .position(|(j, &(g, m))| {
                    !used[j]
                        && m == n
                        && g + POCKET_EARLY_FRAMES >= f
                        && g <= f + POCKET_LATE_FRAMES
                });
            if let Some(j) = hit {
                used[j] = true;
                found += 1;
            }
        }
        PocketFigures {
            truth: self.truth_pockets.len(),
            detected: self.det_pockets.len(),
            found,
        }
    }

    /// Shots: each true shot is matched to the unused detected one with the nearest start.
    pub fn shots(&self) -> ShotFigures {
        let mut used = vec![false; self.det_bounds.len()];
        let mut errors = Vec::new();
        for &(s, e) in &self.truth_bounds {
            let best = self
                .det_bounds
                .iter()
                .enumerate()
                .filter(|(j, &(ds, _))| !used[*j] && ds.abs_diff(s) <= SHOT_MATCH_FRAMES)
                .min_by_key(|(_, &(ds, _))| ds.abs_diff(s));
            if let Some((j, &(ds, de))) = best {
                used[j] = true;
                errors.push((ds.abs_diff(s), de.abs_diff(e)));
            }
        }
        ShotFigures {
            truth: self.truth_bounds.len(),
            detected: self.det_bounds.len(),
            errors,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Ball, BallKind};

    fn truth(x: f32, number: u32) -> TrueBall {
        TrueBall {
            x,
            y: 50.0,
            radius: 10.0,
            number,
            kind: BallKind::from_number(number),
        }
    }

    fn tracked(x: f32, id: u64, number: Option<u8>) -> TrackedBall {
        TrackedBall {
            ball: Ball {
                x,
                y: 50.0,
                radius: 10.0,
                kind: BallKind::Solid,
                score: 1.0,
                fit_rms: 0.0,
                features: Default::default(),
            },
            id,
            vx: 0.0,
            vy: 0.0,
            number,
            number_confidence: 1.0,
            moving: false,
        }
    }

    #[test]
    fn numbers_switches_pockets_and_shots_are_counted() {
        let mut s = SequenceScore::new(30.0);
        let tb = [truth(100.0, 3), truth(200.0, 5)];
        for f in 0..100u64 {
            // The 5 is unidentified for 10 frames (a switch when it gets its number), the 3
            // always right; the table moves in frames 20-49 (truth) and 21-50 (detected).
            let d = [
                tracked(101.0, 3, Some(3)),
                if f < 10 {
                    tracked(200.0, 100, None)
                } else {
                    tracked(200.0, 5, Some(5))
                },
            ];
            let tp: &[u8] = if f == 40 { &[7] } else { &[] };
            let dp: &[u8] = if f == 45 { &[7] } else { &[] };
            s.add(
                f,
                &TruthFrame {
                    balls: &tb,
                    pocketed: tp,
                    moving: (20..50).contains(&f),
                },
                &TrackedFrame {
                    balls: &d,
                    pocketed: dp,
                    motion: (21..51).contains(&f),
                },
            );
        }
        assert_eq!(s.matched, 200);
        assert_eq!(s.numbers_null, 10);
        assert!((s.number_accuracy() - 0.95).abs() < 1e-9);
        assert_eq!(s.given_accuracy(), 1.0);
        assert_eq!(s.id_switches, 0, "identifying the 5 is not a switch");
        assert_eq!(s.identifications, 1);
        assert_eq!(
            s.pockets(),
            PocketFigures {
                truth: 1,
                detected: 1,
                found: 1
            }
        );
        let shots = s.shots();
        assert_eq!((shots.truth, shots.detected), (1, 1));
        assert_eq!(shots.errors, vec![(1, 1)]);
    }

    #[test]
    fn a_cue_ball_spotted_again_in_the_frame_it_fell_may_take_a_new_id() {
        let mut s = SequenceScore::new(30.0);
        let tb = [truth(100.0, 0)];
        let frame = |s: &mut SequenceScore, f: u64, id: u64, pocketed: &[u8]| {
            s.add(
                f,
                &TruthFrame {
                    balls: &tb,
                    pocketed,
                    moving: false,
                },
                &TrackedFrame {
                    balls: &[tracked(100.0, id, None)],
                    pocketed: &[],
                    motion: false,
                },
            );
        };
        frame(&mut s, 0, 0, &[]);
        // Pocketed and spotted again in the same frame: a new track.
        frame(&mut s, 1, 105, &[0]);
        frame(&mut s, 2, 105, &[]);
        assert_eq!(s.id_switches, 0);
        // Without a pocketing, the same change is a switch.
        frame(&mut s, 3, 106, &[]);
        assert_eq!(s.id_switches, 1);
    }
}
