//! Shots, from the tracker's per-frame motion: a shot starts when a ball starts moving on a
//! still table and ends when every ball has been still for [`SHOT_END_STILL_NS`] (0.5 s), as
//! the SPEC says. It records the balls that moved, the balls pocketed and the cue ball's first
//! hit.
//!
//! One frame of motion is not a shot: the detector's jitter or a ball nudged by a hand for a
//! frame would start one. A start needs motion on two processed frames in a row, and is dated
//! to the first of them.
//!
//! Knows nothing of pixels or tracks: it is fed numbers and times.

use billiards_detections::{ShotJson, SHOT_REPEAT_S};

/// Stillness that ends a shot (ns of capture time).
pub const SHOT_END_STILL_NS: u64 = 500_000_000;

/// What the tracker says about one processed frame.
#[derive(Debug, Clone, Copy)]
pub struct FrameMotion<'a> {
    /// The frame's number in the frame segment.
    pub frame_number: u64,
    /// Its capture time (CLOCK_MONOTONIC ns).
    pub t_ns: u64,
    /// Its capture time on the wall clock (Unix seconds).
    pub unix_s: f64,
    /// Whether any ball moved (identified or not).
    pub any_moving: bool,
    /// Numbers of the identified balls that moved.
    pub moving: &'a [u8],
    /// Numbers of the balls that went into a pocket in this frame.
    pub pocketed: &'a [u8],
}

#[derive(Debug, Clone)]
struct Start {
    frame: u64,
    t_ns: u64,
    unix_s: f64,
    moving: Vec<u8>,
}

#[derive(Debug, Clone)]
struct Running {
    start: Start,
    balls_moved: Vec<u8>,
    pocketed: Vec<u8>,
    cue_first: bool,
    first_hit: Option<u8>,
    last_motion_ns: u64,
}

/// Follows the table from frame to frame and reports each finished shot once.
#[derive(Debug, Default)]
pub struct ShotDetector {
    candidate: Option<Start>,
    running: Option<Running>,
    next_id: u64,
    last: Option<(ShotJson, u64)>,
}

impl ShotDetector {
    /// A detector that has seen nothing (the first shot gets id 1).
    pub fn new() -> Self {
        ShotDetector::default()
    }

    /// Whether a shot is under way.
    pub fn in_shot(&self) -> bool {
        self.running.is_some()
    }

    /// Forgets a shot under way (e.g. after a gap in the frames); finished shots keep their
    /// ids.
    pub fn reset(&mut self) {
        self.candidate = None;
        self.running = None;
    }

    /// Takes one processed frame; returns the shot that ended with it, if one did.
    pub fn update(&mut self, f: &FrameMotion<'_>) -> Option<ShotJson> {
        let Some(run) = &mut self.running else {
            if !f.any_moving {
                self.candidate = None;
                return None;
            }
            let Some(start) = self.candidate.take() else {
                self.candidate = Some(Start {
                    frame: f.frame_number,
                    t_ns: f.t_ns,
                    unix_s: f.unix_s,
                    moving: f.moving.to_vec(),
                });
                return None;
            };
            let cue_first = start.moving.contains(&0);
            let mut run = Running {
                balls_moved: Vec::new(),
                pocketed: Vec::new(),
                cue_first,
                // The cue ball may reach a neighbour within the first frame.
                first_hit: if cue_first {
                    start.moving.iter().copied().find(|&n| n != 0)
                } else {
                    None
                },
                last_motion_ns: f.t_ns,
                start,
            };
            for &n in &run.start.moving.clone() {
                add(&mut run.balls_moved, n);
            }
            observe(&mut run, f);
            self.running = Some(run);
            return None;
        };
        observe(run, f);
        if f.any_moving || f.t_ns.saturating_sub(run.last_motion_ns) < SHOT_END_STILL_NS {
            return None;
        }
        let run = self.running.take()?;
        self.next_id += 1;
        let mut balls_moved = run.balls_moved;
        balls_moved.sort_unstable();
        let shot = ShotJson {
            id: self.next_id,
            start_frame: run.start.frame,
            end_frame: f.frame_number,
            start_unix_s: (run.start.unix_s * 1000.0).round() / 1000.0,
            duration_s: (f.t_ns.saturating_sub(run.start.t_ns) as f64 * 1e-6).round() / 1000.0,
            balls_moved,
            pocketed: run.pocketed,
            cue_ball_first_hit: run.first_hit,
        };
        self.last = Some((shot.clone(), f.t_ns));
        Some(shot)
    }

    /// The newest finished shot while it is to be repeated on the detections records (for
    /// [`SHOT_REPEAT_S`] after it ended).
    pub fn recent(&self, t_ns: u64) -> Option<&ShotJson> {
        let (shot, end) = self.last.as_ref()?;
        (t_ns.saturating_sub(*end) as f64 * 1e-9 <= SHOT_REPEAT_S).then_some(shot)
    }
}

fn add(set: &mut Vec<u8>, n: u8) {
    if !set.contains(&n) {
        set.push(n);
    }
}

fn observe(run: &mut Running, f: &FrameMotion<'_>) {
    if f.any_moving {
        run.last_motion_ns = f.t_ns;
    }
    for &n in f.moving.iter().chain(f.pocketed) {
        add(&mut run.balls_moved, n);
    }
    for &n in f.pocketed {
        add(&mut run.pocketed, n);
    }
    if run.cue_first && run.first_hit.is_none() {
        run.first_hit = f.moving.iter().chain(f.pocketed).copied().find(|&n| n != 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FRAME_NS: u64 = 33_333_333;

    struct Feed {
        d: ShotDetector,
        frame: u64,
        shots: Vec<ShotJson>,
    }

    impl Feed {
        fn new() -> Feed {
            Feed {
                d: ShotDetector::new(),
                frame: 0,
                shots: Vec::new(),
            }
        }
        fn frame(&mut self, moving: &[u8], pocketed: &[u8]) {
            self.frame += 1;
            let f = FrameMotion {
                frame_number: self.frame,
                t_ns: self.frame * FRAME_NS,
                unix_s: 1000.0 + self.frame as f64 / 30.0,
                any_moving: !moving.is_empty(),
                moving,
                pocketed,
            };
            self.shots.extend(self.d.update(&f));
        }
    }

    #[test]
    fn a_shot_starts_with_motion_and_ends_after_half_a_second_of_stillness() {
        let mut f = Feed::new();
        for _ in 0..10 {
            f.frame(&[], &[]);
        }
        f.frame(&[0], &[]); // frame 11: the cue ball is struck
        f.frame(&[0], &[]);
        assert!(f.d.in_shot());
        f.frame(&[0, 3], &[]); // hits the 3
        for _ in 0..20 {
            f.frame(&[3], &[]);
        }
        f.frame(&[], &[3]); // frame 34: the 3 drops
        let last_motion = f.frame;
        while f.shots.is_empty() {
            f.frame(&[], &[]);
            assert!(f.frame < 200, "the shot never ended");
        }
        let s = &f.shots[0];
        assert_eq!(s.id, 1);
        assert_eq!(s.start_frame, 11);
        // Still for 0.5 s: 15 frames after the last moving one (33.3 ms each).
        assert_eq!(s.end_frame, last_motion - 1 + 16);
        assert_eq!(s.balls_moved, vec![0, 3]);
        assert_eq!(s.pocketed, vec![3]);
        assert_eq!(s.cue_ball_first_hit, Some(3));
        assert!((s.start_unix_s - (1000.0 + 11.0 / 30.0)).abs() < 0.01);
        assert!((s.duration_s - (s.end_frame - 11) as f64 / 30.0).abs() < 0.01);
        // Repeated on the records for a second after the end, then not.
        let end_ns = s.end_frame * FRAME_NS;
        assert_eq!(f.d.recent(end_ns + 900_000_000).map(|s| s.id), Some(1));
        assert!(f.d.recent(end_ns + 1_100_000_000).is_none());
    }

    #[test]
    fn one_frame_of_jitter_is_not_a_shot_and_shots_are_reported_once() {
        let mut f = Feed::new();
        f.frame(&[], &[]);
        f.frame(&[5], &[]);
        f.frame(&[], &[]);
        assert!(!f.d.in_shot());
        for _ in 0..40 {
            f.frame(&[], &[]);
        }
        assert!(f.shots.is_empty());
        // A ball moved by hand (the cue ball did not move first): no first hit.
        f.frame(&[5], &[]);
        f.frame(&[5], &[]);
        for _ in 0..40 {
            f.frame(&[], &[]);
        }
        // A second shot.
        f.frame(&[0], &[]);
        f.frame(&[0], &[]);
        for _ in 0..40 {
            f.frame(&[], &[]);
        }
        assert_eq!(f.shots.len(), 2);
        assert_eq!(f.shots[0].cue_ball_first_hit, None);
        assert_eq!(f.shots[0].balls_moved, vec![5]);
        assert_eq!(f.shots[1].id, 2);
        assert_eq!(
            f.shots[1].cue_ball_first_hit, None,
            "the cue ball hit nothing"
        );
    }
}
