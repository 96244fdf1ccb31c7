//! The ball tracker: stable ids, numbers, velocities, motion and pocketings across frames.
//!
//! - **Association**: each track predicts where its ball is now at constant velocity. A first
//!   pass matches detections to predictions greedily, nearest first, inside a gate that grows
//!   with the track's speed. A second pass re-associates what is left (balls that changed
//!   course in a collision, or a break that moves a ball several radii per frame) inside a wide
//!   gate, with the number evidence as a tie-breaker.
//! - **Memory**: a track that is not seen (a hand or the cue over the ball) is kept for
//!   [`MEMORY_NS`] (1 s), so the ball keeps its id when it reappears; [`STILL_MEMORY_NS`]
//!   (6 s) when the ball was at rest (the detector may miss a ball in a cluster for a while).
//! - **Numbers**: each sighting adds [`identify::evidence`] to the track's votes (decaying, so
//!   the recent past counts most); every frame [`identify::assign`] gives each number to at
//!   most one track, or none when no track is sure enough (`null` rather than a guess); a
//!   track left without one gets the number its votes favour once the numbers other tracks
//!   hold firmly are set aside (elimination). An identified ball's id is its number; the others get ids from
//!   [`UNIDENTIFIED_ID_BASE`] up.
//! - **Motion**: a ball moves when it was displaced by more than the detector's jitter since
//!   it was last seen, or over its last [`WINDOW`] sightings twice in a row (a ball creeping
//!   to a stop); a ball at rest whose detection jumps a little keeps the jump as its jitter,
//!   and one touching another (a rack) moves only when displaced by a good part of a radius,
//!   its touching edge spoiling the fit. A still ball is
//!   reported at a smoothed position so it does not shimmer.
//! - **Pockets**: a moving ball that vanishes next to one of the six pockets and stays away for
//!   [`POCKET_CONFIRM_NS`] was pocketed: reported once (by its number, or an unidentified
//!   ball by its likeliest number no other ball holds), and its track ends.
//! - **New layouts**: when most balls jump at once on a still table (the balls laid out
//!   anew), every track starts afresh rather than hand its number to a ball landing near it.
//!
//! Knows nothing of pixels: it works on the detector's [`Ball`]s and capture times.

use billiards_detections::UNIDENTIFIED_ID_BASE;

use crate::detect::geom::pockets_of;
use crate::identify::{self, NUMBERS};
use crate::model::{Ball, BallKind};

/// Displacement below which a ball counts as still over one frame at 30 fps (frame pixels);
/// scaled to the actual time between sightings.
pub const STILL_PX: f32 = 0.75;
/// How long a hidden ball keeps its track and id (ns of capture time).
pub const MEMORY_NS: u64 = 1_000_000_000;
/// How long the track of a ball last seen at rest is kept (ns of capture time): the detector
/// may miss a ball in a cluster for seconds, and the ball is still there.
pub const STILL_MEMORY_NS: u64 = 6_000_000_000;
/// How long a ball must stay away from the spot next to a pocket to count as pocketed: a
/// ball rolling past a pocket along the cushion may be lost in the mouth's shadow for a few
/// frames (its track then takes it up again).
pub const POCKET_CONFIRM_NS: u64 = 300_000_000;
/// How near a pocket (in radii of the ball) a ball must have been last seen.
const POCKET_RADII: f32 = 3.5;
/// Summed votes an unidentified ball needs before it is reported pocketed by its likeliest
/// number.
const POCKET_MIN_EVIDENCE: f32 = 1.5;
/// Share of the votes that likeliest number needs.
const POCKET_MIN_SHARE: f32 = 0.2;
/// Decay of a track's number votes per sighting: about the last 30 sightings count.
const VOTE_DECAY: f32 = 0.97;
/// Share of the votes the best number needs before it is given.
const MIN_SHARE: f32 = 0.4;
/// Summed votes (about sightings) before a number is given at all.
const MIN_EVIDENCE: f32 = 2.5;
/// A number is held (set aside when the others' numbers are found by elimination) by a track
/// with at least this share of its votes for it ...
const ELIMINATE_HELD: f32 = 0.5;
/// ... and this much evidence (about 20 sightings: a ball misread in a rack, its number
/// not yet settled, does not hand its look-alike the wrong number).
const ELIMINATE_HELD_EVIDENCE: f32 = 15.0;
/// Share of a track's votes outside the held numbers its best free number needs.
const ELIMINATE_SHARE: f32 = 0.6;
/// ... and share of all its votes.
const ELIMINATE_MIN_RAW: f32 = 0.1;
/// A number is contested (not given by elimination) while another track has this share of
/// its votes for it.
const ELIMINATE_CONTEST: f32 = 0.2;
/// Frames in a row a number must be offered by elimination before it is given (a number
/// given and taken back at once would count as two id switches).
const ELIMINATE_FRAMES: u32 = 20;
/// Extra pull of the number a track already has, so numbers do not flicker between
/// look-alikes.
const KEEP_BONUS: f32 = 0.4;
/// A hidden ball's position is extrapolated for at most this long (it most likely stopped or
/// is under a hand).
const MAX_EXTRAPOLATE_S: f32 = 0.1;
/// A confidently identified track never takes, in the first pass, a ball whose evidence for
/// its number is under this: for the cue ball, any ball the detector reads as a solid, the
/// eight or a stripe (their cue evidence is 0.01-0.05). In a break the cue ball bounces back
/// while the ball it hit shoots out where the cue ball was predicted.
const PLAINLY_NOT: f32 = 0.06;
/// Gate of the second (re-association) pass, in radii on top of the travel at the track's
/// speed.
const REASSOCIATE_RADII: f32 = 12.0;
/// Association cost of a detection that does not look like the track's number, in radii.
const IDENTITY_RADII: f32 = 6.0;
/// A still ball's displacement must exceed this many times its jitter to count as motion.
const JITTER_FACTOR: f32 = 3.0;
/// ... but never more than this many radii per frame.
const MAX_STILL_RADII: f32 = 0.15;
/// Sightings of a new track whose displacements do not count as motion.
const SETTLE_SIGHTINGS: u32 = 3;
/// After the tracker starts (or is reset) nothing counts as motion for this long: the
/// detector settles its radius estimate on the first frames, which shifts the centres a little.
const WARMUP_NS: u64 = 700_000_000;
/// Still sightings in a row after which a ball is at rest: a small jump of its detection is
/// jitter, not a stroke.
const PEAK_STILL_SIGHTINGS: u32 = 10;
/// Per sighting, the largest jump at rest is forgotten at this rate (about a minute at 30 fps).
const PEAK_DECAY: f32 = 0.9995;
/// A displacement must exceed the largest jump at rest by this factor to be motion.
const PEAK_FACTOR: f32 = 1.5;
/// Sightings over which a creeping ball's displacement is measured.
const WINDOW: usize = 4;
/// The displacement over [`WINDOW`] sightings that is motion, in still allowances per frame
/// (the jitter does not add up over the window, the creep does).
const WINDOW_FACTOR: f32 = 1.0;
/// A new layout is only recognised with at least this many balls before and after.
const RELAID_MIN_BALLS: usize = 6;
/// A new layout is not recognised while a ball rolls faster than this (radii per frame).
const RELAID_MAX_SPEED_RADII: f32 = 0.5;
/// A ball within this many radii of where a still ball was is that ball (not laid out anew).
const RELAID_RADII: f32 = 1.0;
/// Balls whose centres are closer than this many radii touch (or nearly).
const CONTACT_RADII: f32 = 2.3;
/// A ball at rest touching another is moving only when displaced by more than this many
/// radii since it was last seen.
const CONTACT_REST_RADII: f32 = 0.35;
/// A ball whose detections stay this close (radii) to where it lay is at rest, however they
/// jitter.
const ANCHOR_RADII: f32 = 0.5;
/// Frame period the still threshold is given for.
const FRAME_S: f32 = 1.0 / 30.0;

/// A ball with its track.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrackedBall {
    /// The ball, at its smoothed position and with the voted kind (the number's kind once it
    /// is identified).
    pub ball: Ball,
    /// Stable id: the number when identified, else [`UNIDENTIFIED_ID_BASE`] or more.
    pub id: u64,
    /// Velocity, pixels per second (0 for a new track).
    pub vx: f32,
    /// Velocity, pixels per second.
    pub vy: f32,
    /// Pool number, when identified.
    pub number: Option<u8>,
    /// How sure the number is, 0..1 (0 without a number).
    pub number_confidence: f32,
    /// Whether the ball moved since it was last seen.
    pub moving: bool,
}

#[derive(Debug, Clone)]
struct Track {
    serial: u64,
    x: f32,
    y: f32,
    /// Smoothed velocity (reported).
    vx: f32,
    vy: f32,
    /// Last measured velocity (predicts: no lag when a ball is struck).
    pvx: f32,
    pvy: f32,
    r: f32,
    /// Capture time of the last sighting.
    t_ns: u64,
    kind_votes: [f32; 5],
    votes: [f32; NUMBERS],
    number: Option<u8>,
    confidence: f32,
    moving: bool,
    seen: bool,
    /// Typical displacement of this ball between sightings while it is still (the
    /// detector's jitter on it, which noise raises), frame pixels.
    jitter: f32,
    /// Sightings so far: a track's first few displacements are not motion (a ball that just
    /// came into view, or the detector settling on the first frames).
    sightings: u32,
    /// The last [`WINDOW`] raw sightings `(x, y, t_ns)`, oldest first once full: a ball
    /// creeping by less than the jitter per frame still moves a good deal over a few frames,
    /// while the jitter does not add up.
    window: [(f32, f32, u64); WINDOW],
    /// Sightings in `window` (up to [`WINDOW`]); the next one goes to `window_next`.
    window_len: usize,
    window_next: usize,
    /// Typical displacement over the window while still, frame pixels.
    window_jitter: f32,
    /// The largest jump of this ball's detection while it was at rest (decaying).
    peak_jitter: f32,
    /// Sightings in a row it was still.
    still_run: u32,
    /// Whether the last sighting's displacement over the window was over its allowance: a
    /// creep lasts, a single wide step of a noisy detection does not.
    window_over: bool,
    /// Where the ball has lain since `anchor_run` sightings ago, within [`ANCHOR_RADII`]: a
    /// ball at rest whatever its detection's jitter.
    anchor: (f32, f32),
    anchor_run: u32,
    /// The largest jump of this ball's detection while at rest by its anchor (decaying).
    flip_peak: f32,
    /// The number elimination offered this track on the last sightings, and for how many
    /// frames in a row: it is given once the offer has stood for [`ELIMINATE_FRAMES`].
    offer: Option<u8>,
    offer_run: u32,
}

impl Track {
    /// Records a raw sighting and returns how far the ball moved since the oldest sighting in
    /// the window, if that one is recent enough to tell creeping from a ball seen again.
    fn window_displacement(&mut self, x: f32, y: f32, t_ns: u64) -> Option<f32> {
        let oldest = if self.window_len == WINDOW {
            Some(self.window[self.window_next])
        } else {
            None
        };
        self.window[self.window_next] = (x, y, t_ns);
        self.window_next = (self.window_next + 1) % WINDOW;
        self.window_len = (self.window_len + 1).min(WINDOW);
        let (ox, oy, ot) = oldest?;
        let span = t_ns.saturating_sub(ot) as f32 * 1e-9;
        (span <= (WINDOW as f32 + 1.5) * FRAME_S)
            .then(|| ((x - ox).powi(2) + (y - oy).powi(2)).sqrt())
    }

    fn predict(&self, t_ns: u64) -> (f32, f32) {
        let dt = self.dt(t_ns);
        (self.x + self.pvx * dt, self.y + self.pvy * dt)
    }

    fn dt(&self, t_ns: u64) -> f32 {
        (t_ns.saturating_sub(self.t_ns) as f32 * 1e-9).min(MAX_EXTRAPOLATE_S)
    }

    fn speed(&self) -> f32 {
        (self.pvx * self.pvx + self.pvy * self.pvy).sqrt()
    }

    fn kind(&self) -> BallKind {
        if let Some(n) = self.number {
            return BallKind::from_number(n as u32);
        }
        let (i, _) = self
            .kind_votes
            .iter()
            .enumerate()
            .fold(
                (4, 0.0f32),
                |best, (i, &v)| if v > best.1 { (i, v) } else { best },
            );
        BallKind::ALL[i]
    }

    /// Whether a ball with evidence `e` is plainly another ball than this confidently
    /// identified one (a ball struck in a break lands next to the spot its neighbour just
    /// left).
    fn plainly_not(&self, e: &[f32; NUMBERS]) -> bool {
        match self.number {
            Some(n) if self.confidence > 0.5 => e[n as usize] < PLAINLY_NOT,
            _ => false,
        }
    }

    /// Association cost, in radii, of a ball with evidence `e` for this track's number: a
    /// ball that does not look like it costs as much as several radii of distance (after a
    /// collision the cue ball's prediction lands on the ball it hit).
    fn identity_cost(&self, e: &[f32; NUMBERS]) -> f32 {
        match self.number {
            Some(n) => IDENTITY_RADII * (1.0 - (e[n as usize] * 4.0).min(1.0)),
            None => 0.0,
        }
    }

    /// For an unidentified track, its most likely number among those no ball in view holds,
    /// when its votes lean to it at all.
    fn likely_number(&self, held: &[u8]) -> Option<u8> {
        let total: f32 = self.votes.iter().sum();
        if total < POCKET_MIN_EVIDENCE {
            return None;
        }
        let (n, v) = self
            .votes
            .iter()
            .enumerate()
            .filter(|&(n, _)| !held.contains(&(n as u8)))
            .max_by(|a, b| a.1.total_cmp(b.1))?;
        (*v >= POCKET_MIN_SHARE * total).then_some(n as u8)
    }

    fn id(&self) -> u64 {
        match self.number {
            Some(n) => n as u64,
            None => UNIDENTIFIED_ID_BASE + self.serial,
        }
    }
}

/// Tracks balls across frames; one per stream of frames.
#[derive(Debug, Default)]
pub struct Tracker {
    tracks: Vec<Track>,
    next_serial: u64,
    pockets: Vec<[f32; 2]>,
    pocketed: Vec<u8>,
    motion: bool,
    /// Capture time of the first update since the start or the last reset.
    started_ns: Option<u64>,
}

impl Tracker {
    /// An empty tracker.
    pub fn new() -> Self {
        Tracker::default()
    }

    /// Forgets every track (e.g. after a gap in the frames).
    pub fn reset(&mut self) {
        self.tracks.clear();
        self.pocketed.clear();
        self.motion = false;
        self.started_ns = None;
    }

    /// Number of live tracks (seen or remembered).
    pub fn len(&self) -> usize {
        self.tracks.len()
    }

    /// Whether there are no tracks.
    pub fn is_empty(&self) -> bool {
        self.tracks.is_empty()
    }

    /// Tells the tracker where the playing surface is (four corners clockwise from the
    /// top-left, frame pixels), so it knows the six pockets; `None` keeps the last one.
    pub fn set_table(&mut self, corners: Option<[[f32; 2]; 4]>) {
        if let Some(c) = corners {
            self.pockets = pockets_of(&c).to_vec();
        }
    }

    /// Numbers of the balls found pocketed by the last [`Tracker::update`].
    pub fn pocketed(&self) -> &[u8] {
        &self.pocketed
    }

    /// Whether any ball moved in the last [`Tracker::update`].
    pub fn motion(&self) -> bool {
        self.motion
    }

    /// Matches `balls`, seen at `t_ns` (CLOCK_MONOTONIC), to the tracks and returns them with
    /// ids, numbers, velocities and motion, in the order of `balls`.
    pub fn update(&mut self, balls: &[Ball], t_ns: u64) -> Vec<TrackedBall> {
        self.pocketed.clear();
        let white = identify::white_reference(balls.iter().map(|b| b.features));
        let evidence: Vec<[f32; NUMBERS]> = balls
            .iter()
            .map(|b| identify::evidence(b.kind, &b.features, white))
            .collect();
        if self.relaid(balls) {
            // The balls were laid out anew (a rack): no track can follow a ball that jumped
            // across the table, and an old track that happens to sit where another ball now
            // lies would hand it a wrong number. Start afresh, and let the jump not count as
            // motion.
            self.tracks.clear();
            self.started_ns = Some(t_ns);
        }
        let warm = t_ns.saturating_sub(*self.started_ns.get_or_insert(t_ns)) >= WARMUP_NS;
        let track_of = self.associate(balls, &evidence, t_ns);
        let contact = in_contact(balls);
        let mut used = vec![false; self.tracks.len()];
        let mut index_of = vec![usize::MAX; balls.len()];
        for (bi, b) in balls.iter().enumerate() {
            let kind_i = BallKind::ALL.iter().position(|&k| k == b.kind).unwrap_or(4);
            let e = evidence[bi];
            let ti = track_of[bi];
            if ti == usize::MAX {
                let mut kind_votes = [0.0; 5];
                kind_votes[kind_i] = 1.0;
                self.tracks.push(Track {
                    serial: self.next_serial,
                    x: b.x,
                    y: b.y,
                    vx: 0.0,
                    vy: 0.0,
                    pvx: 0.0,
                    pvy: 0.0,
                    r: b.radius,
                    t_ns,
                    kind_votes,
                    votes: e,
                    number: None,
                    confidence: 0.0,
                    moving: false,
                    seen: true,
                    sightings: 1,
                    jitter: STILL_PX / JITTER_FACTOR,
                    window: [(b.x, b.y, t_ns); WINDOW],
                    window_len: 1,
                    window_next: 1 % WINDOW,
                    window_jitter: STILL_PX / JITTER_FACTOR,
                    peak_jitter: 0.0,
                    still_run: 0,
                    window_over: false,
                    anchor: (b.x, b.y),
                    anchor_run: 0,
                    flip_peak: 0.0,
                    offer: None,
                    offer_run: 0,
                });
                self.next_serial += 1;
                used.push(true);
                index_of[bi] = self.tracks.len() - 1;
                continue;
            }
            used[ti] = true;
            index_of[bi] = ti;
            let t = &mut self.tracks[ti];
            let dt = t_ns.saturating_sub(t.t_ns) as f32 * 1e-9;
            let (dx, dy) = (b.x - t.x, b.y - t.y);
            let disp = (dx * dx + dy * dy).sqrt();
            // The jitter allowance is per frame (a ball unseen for a while may have crept),
            // and grows with this ball's own jitter on noisy frames, up to a limit so that a
            // slowly rolling ball still counts as moving.
            // (`min` then `max`: on small balls the cap may be below STILL_PX, which wins.)
            // A ball long at rest whose detection jumps a little (some detectors flip between
            // two fits of a ball) keeps that jump as its jitter from then on: a ball at rest
            // is not struck by less than the cap.
            let cap = MAX_STILL_RADII * t.r;
            t.peak_jitter *= PEAK_DECAY;
            if t.still_run >= PEAK_STILL_SIGHTINGS && disp <= cap && dt <= 2.5 * FRAME_S {
                t.peak_jitter = t.peak_jitter.max(disp);
            }
            // A ball at rest touching another (a rack, a cluster) is fitted from a spoiled
            // edge: its detection jumps by more than the cap, and it is not moving until
            // displaced by more than such a jump.
            if (b.x - t.anchor.0).powi(2) + (b.y - t.anchor.1).powi(2)
                <= (ANCHOR_RADII * t.r).powi(2)
            {
                t.anchor_run = t.anchor_run.saturating_add(1);
            } else {
                t.anchor = (b.x, b.y);
                t.anchor_run = 0;
            }
            // A lone ball at rest whose detection flips between two fits further apart than
            // the cap (on a noisy table, near a cushion) learns that flip the first time, up
            // to the same limit.
            let at_rest = t.anchor_run >= PEAK_STILL_SIGHTINGS;
            t.flip_peak *= PEAK_DECAY;
            let rest_floor = if at_rest && contact[bi] {
                CONTACT_REST_RADII * t.r
            } else if at_rest {
                (PEAK_FACTOR * t.flip_peak).min(CONTACT_REST_RADII * t.r)
            } else {
                0.0
            };
            if at_rest && disp <= CONTACT_REST_RADII * t.r && dt <= 2.5 * FRAME_S {
                t.flip_peak = t.flip_peak.max(disp);
            }
            let allowance = (JITTER_FACTOR * t.jitter)
                .max(PEAK_FACTOR * t.peak_jitter)
                .min(cap)
                .max(STILL_PX)
                .max(rest_floor);
            let still_now = disp < allowance * (dt / FRAME_S).max(1.0);
            if still_now && dt <= 2.5 * FRAME_S {
                t.jitter = 0.95 * t.jitter + 0.05 * disp;
            }
            // Still over the frame and over the window: a ball slowing to a stop creeps by
            // less than the jitter per frame for its last few frames.
            // Its allowance follows this ball's own displacement over the window while still
            // (the detector may drift slowly on a ball, e.g. one half hidden).
            let window_allowance = (JITTER_FACTOR * t.window_jitter)
                .min(MAX_STILL_RADII * t.r)
                .max(WINDOW_FACTOR * allowance);
            let wd = t.window_displacement(b.x, b.y, t_ns);
            // A creep is over the allowance on two sightings in a row (the first of them is a
            // ball still rolling): the detection of a ball at rest wobbling to one side and
            // back, its noise adding up over the window by chance, is over it only once.
            let over = wd.is_some_and(|w| w >= window_allowance);
            let creeping = over && t.window_over;
            t.window_over = over;
            let still = still_now && !creeping;
            t.still_run = if still {
                t.still_run.saturating_add(1)
            } else {
                0
            };
            if let (true, Some(w)) = (still_now, wd) {
                t.window_jitter = 0.95 * t.window_jitter + 0.05 * w;
            }
            if dt > 0.0 {
                let (ivx, ivy) = if still {
                    (0.0, 0.0)
                } else {
                    (dx / dt, dy / dt)
                };
                t.vx = 0.5 * t.vx + 0.5 * ivx;
                t.vy = 0.5 * t.vy + 0.5 * ivy;
                t.pvx = ivx;
                t.pvy = ivy;
            }
            if still {
                t.x += 0.3 * dx;
                t.y += 0.3 * dy;
            } else {
                t.x = b.x;
                t.y = b.y;
            }
            if still {
                // Smoothed velocities die out quickly once the ball stops.
                if t.vx.abs() < 1.0 && t.vy.abs() < 1.0 {
                    t.vx = 0.0;
                    t.vy = 0.0;
                }
            }
            t.sightings = t.sightings.saturating_add(1);
            t.moving = !still && dt > 0.0 && t.sightings > SETTLE_SIGHTINGS && warm;
            t.r = 0.8 * t.r + 0.2 * b.radius;
            t.t_ns = t_ns;
            t.seen = true;
            for v in t.kind_votes.iter_mut() {
                *v *= 0.8;
            }
            t.kind_votes[kind_i] += 1.0;
            for (v, ev) in t.votes.iter_mut().zip(e) {
                *v = *v * VOTE_DECAY + ev;
            }
        }
        for (t, &u) in self.tracks.iter_mut().zip(&used) {
            if !u {
                t.seen = false;
            }
        }
        // Tracks are about to be dropped (indices shift): remember each ball's by serial.
        let serial_of: Vec<u64> = index_of.iter().map(|&i| self.tracks[i].serial).collect();
        self.find_pocketed(t_ns);
        // A ball at rest that the detector misses for a while (in a cluster) is most likely
        // still there: its track is kept longer than that of a ball last seen rolling.
        self.tracks.retain(|t| {
            let memory = if t.moving { MEMORY_NS } else { STILL_MEMORY_NS };
            t.seen || t_ns.saturating_sub(t.t_ns) <= memory
        });
        self.identify();
        self.motion = self.tracks.iter().any(|t| t.seen && t.moving);
        let mut out = Vec::with_capacity(balls.len());
        for (b, serial) in balls.iter().zip(serial_of) {
            // Seen tracks are never dropped in this update, so every ball's is there.
            let Some(t) = self.tracks.iter().find(|t| t.serial == serial) else {
                continue;
            };
            let mut ball = *b;
            ball.x = t.x;
            ball.y = t.y;
            ball.kind = t.kind();
            out.push(TrackedBall {
                ball,
                id: t.id(),
                vx: t.vx,
                vy: t.vy,
                number: t.number,
                number_confidence: t.confidence,
                moving: t.moving,
            });
        }
        out
    }

    /// Whether the balls were laid out anew since the last frame: no ball rolled fast, and
    /// most of the balls seen last frame are not where they were while most of this frame's
    /// balls lie where no ball was (a hand that hides balls, or a single ball struck, leaves
    /// one of the two true).
    fn relaid(&self, balls: &[Ball]) -> bool {
        // A ball rolling fast (the cue ball about to open a rack) means a game under way; a
        // creep or the jitter of a noisy frame does not.
        if self
            .tracks
            .iter()
            .any(|t| t.seen && t.moving && t.speed() * FRAME_S > RELAID_MAX_SPEED_RADII * t.r)
        {
            return false;
        }
        let last: Vec<&Track> = self.tracks.iter().filter(|t| t.seen).collect();
        if last.len() < RELAID_MIN_BALLS || balls.len() < RELAID_MIN_BALLS {
            return false;
        }
        let near = |b: &Ball, t: &Track| {
            (b.x - t.x).powi(2) + (b.y - t.y).powi(2) <= (RELAID_RADII * t.r).powi(2)
        };
        let lost = last
            .iter()
            .filter(|t| !balls.iter().any(|b| near(b, t)))
            .count();
        let new = balls
            .iter()
            .filter(|b| !last.iter().any(|t| near(b, t)))
            .count();
        2 * lost > last.len() && 2 * new > balls.len()
    }

    /// For each ball, the index of its track, or `usize::MAX` for a new one.
    fn associate(&self, balls: &[Ball], evidence: &[[f32; NUMBERS]], t_ns: u64) -> Vec<usize> {
        let mut track_of = vec![usize::MAX; balls.len()];
        let mut used = vec![false; self.tracks.len()];
        // Pass 1: near the prediction, cheapest first (distance plus identity).
        let mut pairs: Vec<(f32, usize, usize)> = Vec::new();
        for (ti, t) in self.tracks.iter().enumerate() {
            let (px, py) = t.predict(t_ns);
            let travel = t.speed() * t.dt(t_ns);
            for (bi, b) in balls.iter().enumerate() {
                let gate = 1.5 * b.radius + 0.5 * travel;
                let d = ((b.x - px).powi(2) + (b.y - py).powi(2)).sqrt();
                if d <= gate && !t.plainly_not(&evidence[bi]) {
                    let cost = d / b.radius.max(1.0) + t.identity_cost(&evidence[bi]);
                    pairs.push((cost, ti, bi));
                }
            }
        }
        pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
        for (_, ti, bi) in pairs {
            if !used[ti] && track_of[bi] == usize::MAX {
                used[ti] = true;
                track_of[bi] = ti;
            }
        }
        // Pass 2: what is left, within a wide gate; a number that the ball plainly is not
        // costs as much as several radii.
        let mut pairs: Vec<(f32, usize, usize)> = Vec::new();
        for (ti, t) in self.tracks.iter().enumerate() {
            if used[ti] {
                continue;
            }
            let (px, py) = t.predict(t_ns);
            let travel = t.speed() * t.dt(t_ns);
            for (bi, b) in balls.iter().enumerate() {
                if track_of[bi] != usize::MAX {
                    continue;
                }
                let r = b.radius.max(1.0);
                let d = ((b.x - px).powi(2) + (b.y - py).powi(2)).sqrt();
                if d > REASSOCIATE_RADII * r + 1.5 * travel {
                    continue;
                }
                pairs.push((d / r + t.identity_cost(&evidence[bi]), ti, bi));
            }
        }
        pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
        for (_, ti, bi) in pairs {
            if !used[ti] && track_of[bi] == usize::MAX {
                used[ti] = true;
                track_of[bi] = ti;
            }
        }
        track_of
    }

    /// Ends the tracks of balls that went into a pocket, reporting their numbers.
    fn find_pocketed(&mut self, t_ns: u64) {
        if self.pockets.is_empty() {
            return;
        }
        let pockets = &self.pockets;
        // Numbers of the balls in view: an unidentified ball that falls is reported by its
        // most likely number among the others. (A hidden track keeps its number reserved,
        // and is often this very ball, lost in a collision and found again as a new track.)
        let held: Vec<u8> = self
            .tracks
            .iter()
            .filter(|t| t.seen)
            .filter_map(|t| t.number)
            .collect();
        let mut gone = Vec::new();
        self.tracks.retain(|t| {
            if t.seen || !t.moving || t_ns.saturating_sub(t.t_ns) < POCKET_CONFIRM_NS {
                return true;
            }
            // Where it was last seen, or a frame further on its way.
            let ahead = (t.x + t.pvx * FRAME_S, t.y + t.pvy * FRAME_S);
            let near = pockets.iter().any(|p| {
                let d0 = ((t.x - p[0]).powi(2) + (t.y - p[1]).powi(2)).sqrt();
                let d1 = ((ahead.0 - p[0]).powi(2) + (ahead.1 - p[1]).powi(2)).sqrt();
                d0.min(d1) <= POCKET_RADII * t.r
            });
            if near {
                if let Some(n) = t.number.or_else(|| t.likely_number(&held)) {
                    gone.push(n);
                }
                return false;
            }
            true
        });
        // The hidden track of a ball reported by its likeliest number was its lost track.
        self.tracks
            .retain(|t| t.seen || t.number.is_none_or(|n| !gone.contains(&n)));
        self.pocketed = gone;
    }

    /// Gives the numbers for this frame: one-to-one over every live track (hidden ones keep
    /// their number reserved).
    fn identify(&mut self) {
        let mut cost = Vec::with_capacity(self.tracks.len());
        let mut null_cost = Vec::with_capacity(self.tracks.len());
        for t in &self.tracks {
            let total: f32 = t.votes.iter().sum();
            let mut row = [0.0f32; NUMBERS];
            for (c, v) in row.iter_mut().zip(t.votes) {
                *c = -(v / total.max(1e-6) + 1e-4).ln();
            }
            if let Some(n) = t.number {
                row[n as usize] -= KEEP_BONUS;
            }
            cost.push(row);
            // Too little evidence yet: "no number" always wins.
            null_cost.push(if total < MIN_EVIDENCE {
                -100.0
            } else {
                -MIN_SHARE.ln()
            });
        }
        let mut numbers = identify::assign(&cost, &null_cost);
        self.eliminate(&mut numbers);
        for (t, n) in self.tracks.iter_mut().zip(numbers) {
            let total: f32 = t.votes.iter().sum();
            t.number = n;
            t.confidence = match n {
                Some(n) => {
                    let share = t.votes[n as usize] / total.max(1e-6);
                    let maturity = (total / (4.0 * MIN_EVIDENCE)).min(1.0);
                    (share * maturity).clamp(0.0, 1.0)
                }
                None => 0.0,
            };
        }
    }
}

impl Tracker {
    /// Numbers by elimination: a track left without a number whose votes, once the numbers
    /// other tracks hold with confidence are set aside, go mostly to one free number gets it.
    /// A stripe whose colour reads halfway between red and maroon is the 15 when the 11 is
    /// plainly elsewhere; a ball whose pattern reads wrong in some spot (its yellow stripe
    /// taken for the solid 1, which lies across the table) is still the 9.
    fn eliminate(&mut self, numbers: &mut [Option<u8>]) {
        let mut held = [false; NUMBERS];
        for (t, n) in self.tracks.iter().zip(numbers.iter()) {
            if let Some(n) = n {
                let total: f32 = t.votes.iter().sum();
                if t.votes[*n as usize] >= ELIMINATE_HELD * total
                    && total >= ELIMINATE_HELD_EVIDENCE
                {
                    held[*n as usize] = true;
                }
            }
        }
        let taken: Vec<u8> = numbers.iter().flatten().copied().collect();
        let mut offers: Vec<(f32, usize, u8)> = Vec::new();
        for (i, t) in self.tracks.iter().enumerate() {
            let total: f32 = t.votes.iter().sum();
            if numbers[i].is_some() || total < MIN_EVIDENCE {
                continue;
            }
            let free: f32 = (0..NUMBERS).filter(|&j| !held[j]).map(|j| t.votes[j]).sum();
            let best = (0..NUMBERS)
                .filter(|&j| !taken.contains(&(j as u8)))
                .max_by(|&a, &b| t.votes[a].total_cmp(&t.votes[b]));
            // Another ball that may well be this number (a look-alike still unsure
            // itself) leaves it undecided.
            let contested = |j: usize| {
                self.tracks.iter().enumerate().any(|(k, o)| {
                    let ot: f32 = o.votes.iter().sum();
                    k != i && o.votes[j] >= ELIMINATE_CONTEST * ot && ot > 0.0
                })
            };
            if let Some(j) = best {
                let v = t.votes[j];
                if v >= ELIMINATE_SHARE * free && v >= ELIMINATE_MIN_RAW * total && !contested(j) {
                    offers.push((v / free.max(1e-6), i, j as u8));
                }
            }
        }
        offers.sort_by(|a, b| b.0.total_cmp(&a.0));
        let mut given = [false; NUMBERS];
        let mut offered = vec![None; self.tracks.len()];
        for (_, i, j) in offers {
            if !given[j as usize] {
                given[j as usize] = true;
                offered[i] = Some(j);
            }
        }
        for (i, (t, o)) in self.tracks.iter_mut().zip(offered).enumerate() {
            match o {
                Some(j) => {
                    t.offer_run = if t.offer == Some(j) {
                        t.offer_run.saturating_add(1)
                    } else {
                        1
                    };
                    t.offer = Some(j);
                    // Already given last frame (kept), or offered long enough.
                    if t.number == Some(j) || t.offer_run >= ELIMINATE_FRAMES {
                        numbers[i] = Some(j);
                    }
                }
                None => {
                    t.offer = None;
                    t.offer_run = 0;
                }
            }
        }
    }
}

/// For each ball, whether another ball touches it (or nearly).
fn in_contact(balls: &[Ball]) -> Vec<bool> {
    balls
        .iter()
        .enumerate()
        .map(|(i, a)| {
            balls.iter().enumerate().any(|(j, b)| {
                let lim = CONTACT_RADII * 0.5 * (a.radius + b.radius);
                i != j && (a.x - b.x).powi(2) + (a.y - b.y).powi(2) < lim * lim
            })
        })
        .collect()
}

#[cfg(test)]
mod tests;
