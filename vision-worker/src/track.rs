//! A small ball tracker: stable ids, velocities and jitter smoothing across frames.
//!
//! Each frame's balls are matched to the tracks of the previous frames greedily, nearest
//! predicted position first, within a gate that grows with the track's speed. A matched ball
//! keeps its track's id; its velocity is a smoothed finite difference over the capture times.
//! A ball that barely moved (less than [`STILL_PX`]) is reported at a smoothed position, so a
//! resting ball does not shimmer with the sensor noise; a moving ball is reported where it
//! was seen (no lag). The kind is a vote over the track's recent frames, which steadies a
//! stripe whose caps turn out of view for a frame. A track unseen for [`MAX_MISSES`] frames
//! is dropped.

use crate::model::{Ball, BallKind};

/// Displacement below which a ball counts as still (frame pixels).
pub const STILL_PX: f32 = 0.75;
/// Frames a track survives without a detection.
pub const MAX_MISSES: u32 = 5;

/// A ball with its track.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrackedBall {
    /// The ball, at its smoothed position and with the voted kind.
    pub ball: Ball,
    /// Track id, stable while the ball stays in view.
    pub id: u64,
    /// Velocity, pixels per second (0 for a new track).
    pub vx: f32,
    /// Velocity, pixels per second.
    pub vy: f32,
}

#[derive(Debug, Clone)]
struct Track {
    id: u64,
    x: f32,
    y: f32,
    vx: f32,
    vy: f32,
    t_ns: u64,
    misses: u32,
    votes: [f32; 5],
}

impl Track {
    fn predict(&self, t_ns: u64) -> (f32, f32) {
        let dt = t_ns.saturating_sub(self.t_ns) as f32 * 1e-9;
        (self.x + self.vx * dt, self.y + self.vy * dt)
    }

    fn kind(&self) -> BallKind {
        let (i, _) =
            self.votes.iter().enumerate().fold(
                (4, 0.0f32),
                |best, (i, &v)| if v > best.1 { (i, v) } else { best },
            );
        BallKind::ALL[i]
    }
}

/// Tracks balls across frames; one per stream of frames.
#[derive(Debug, Default)]
pub struct Tracker {
    tracks: Vec<Track>,
    next_id: u64,
}

impl Tracker {
    /// An empty tracker.
    pub fn new() -> Self {
        Tracker::default()
    }

    /// Forgets every track (e.g. after a gap in the frames).
    pub fn reset(&mut self) {
        self.tracks.clear();
    }

    /// Number of live tracks.
    pub fn len(&self) -> usize {
        self.tracks.len()
    }

    /// Whether there are no tracks.
    pub fn is_empty(&self) -> bool {
        self.tracks.is_empty()
    }

    /// Matches `balls`, seen at `t_ns` (CLOCK_MONOTONIC), to the tracks and returns them with
    /// ids and velocities, in the order of `balls`.
    pub fn update(&mut self, balls: &[Ball], t_ns: u64) -> Vec<TrackedBall> {
        // Candidate pairs within each track's gate, nearest first.
        let mut pairs: Vec<(f32, usize, usize)> = Vec::new();
        for (ti, t) in self.tracks.iter().enumerate() {
            let (px, py) = t.predict(t_ns);
            let dt = t_ns.saturating_sub(t.t_ns) as f32 * 1e-9;
            for (bi, b) in balls.iter().enumerate() {
                let speed = (t.vx * t.vx + t.vy * t.vy).sqrt();
                let gate = 1.5 * b.radius + 0.5 * speed * dt;
                let d = ((b.x - px).powi(2) + (b.y - py).powi(2)).sqrt();
                if d <= gate {
                    pairs.push((d, ti, bi));
                }
            }
        }
        pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut track_of = vec![usize::MAX; balls.len()];
        let mut used = vec![false; self.tracks.len()];
        for (_, ti, bi) in pairs {
            if !used[ti] && track_of[bi] == usize::MAX {
                used[ti] = true;
                track_of[bi] = ti;
            }
        }
        let mut out = Vec::with_capacity(balls.len());
        for (bi, b) in balls.iter().enumerate() {
            let kind_i = BallKind::ALL.iter().position(|&k| k == b.kind).unwrap_or(4);
            let ti = track_of[bi];
            if ti == usize::MAX {
                let id = self.next_id;
                self.next_id += 1;
                let mut votes = [0.0; 5];
                votes[kind_i] = 1.0;
                self.tracks.push(Track {
                    id,
                    x: b.x,
                    y: b.y,
                    vx: 0.0,
                    vy: 0.0,
                    t_ns,
                    misses: 0,
                    votes,
                });
                out.push(TrackedBall {
                    ball: *b,
                    id,
                    vx: 0.0,
                    vy: 0.0,
                });
                continue;
            }
            let t = &mut self.tracks[ti];
            let dt = t_ns.saturating_sub(t.t_ns) as f32 * 1e-9;
            let (dx, dy) = (b.x - t.x, b.y - t.y);
            let still = (dx * dx + dy * dy).sqrt() < STILL_PX;
            if dt > 0.0 {
                // Velocity: smoothed finite difference; a still ball has none.
                let (ivx, ivy) = if still {
                    (0.0, 0.0)
                } else {
                    (dx / dt, dy / dt)
                };
                t.vx = 0.5 * t.vx + 0.5 * ivx;
                t.vy = 0.5 * t.vy + 0.5 * ivy;
            }
            if still {
                t.x += 0.3 * dx;
                t.y += 0.3 * dy;
            } else {
                t.x = b.x;
                t.y = b.y;
            }
            t.t_ns = t_ns;
            t.misses = 0;
            for v in t.votes.iter_mut() {
                *v *= 0.8;
            }
            t.votes[kind_i] += 1.0;
            let mut ball = *b;
            ball.x = t.x;
            ball.y = t.y;
            ball.kind = t.kind();
            out.push(TrackedBall {
                ball,
                id: t.id,
                vx: t.vx,
                vy: t.vy,
            });
        }
        for (ti, t) in self.tracks.iter_mut().enumerate() {
            if ti < used.len() && !used[ti] {
                t.misses += 1;
            }
        }
        self.tracks.retain(|t| t.misses <= MAX_MISSES);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ball(x: f32, y: f32, kind: BallKind) -> Ball {
        Ball {
            x,
            y,
            radius: 10.0,
            kind,
            score: 1.0,
            fit_rms: 0.0,
            features: Default::default(),
        }
    }

    #[test]
    fn ids_follow_moving_balls_and_velocities_are_measured() {
        let mut t = Tracker::new();
        let dt = 33_333_333u64;
        let first = t.update(
            &[
                ball(100.0, 100.0, BallKind::Cue),
                ball(300.0, 100.0, BallKind::Solid),
            ],
            0,
        );
        let (a, b) = (first[0].id, first[1].id);
        assert_ne!(a, b);
        let mut last = Vec::new();
        for i in 1..10u64 {
            // The cue ball rolls right at 150 px/s; listed second to check the matching.
            let x = 100.0 + 5.0 * i as f32;
            last = t.update(
                &[
                    ball(300.0, 100.0, BallKind::Solid),
                    ball(x, 100.0, BallKind::Cue),
                ],
                i * dt,
            );
            assert_eq!(last[0].id, b);
            assert_eq!(last[1].id, a);
        }
        assert!((last[1].vx - 150.0).abs() < 5.0, "{:?}", last[1]);
        assert!(last[1].vy.abs() < 1.0);
        assert_eq!(last[0].vx, 0.0);
    }

    #[test]
    fn still_balls_are_smoothed_and_kinds_voted() {
        let mut t = Tracker::new();
        let mut xs = Vec::new();
        for i in 0..20u64 {
            let jitter = if i % 2 == 0 { 0.3 } else { -0.3 };
            let kind = if i == 10 {
                BallKind::Solid
            } else {
                BallKind::Stripe
            };
            let out = t.update(&[ball(200.0 + jitter, 50.0, kind)], i * 33_000_000);
            xs.push(out[0].ball.x);
            assert_eq!(out[0].ball.kind, BallKind::Stripe, "frame {i}");
        }
        let spread = xs[10..]
            .iter()
            .fold(0.0f32, |m, &x| m.max((x - 200.0).abs()));
        assert!(spread < 0.2, "{xs:?}");
    }

    #[test]
    fn lost_tracks_expire() {
        let mut t = Tracker::new();
        t.update(&[ball(10.0, 10.0, BallKind::Cue)], 0);
        for i in 1..=MAX_MISSES as u64 + 1 {
            t.update(&[], i);
        }
        assert!(t.is_empty());
    }
}
