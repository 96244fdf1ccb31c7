//! Ball motion: rolling with friction, elastic collisions, cushion bounces, rolling rotation
//! (so stripes turn), the layouts and a simple player that keeps the table busy. In play mode
//! (`SceneStyle::play`) balls also fall into the six pockets, and the player waits 0.6-3 s
//! of still table between shots.
//!
//! Table coordinates are metres, x along the length, y across, z into the table (so the
//! camera looks along +z). All of it is deterministic: fixed substeps, fixed iteration order.

use super::rng::Rng;
use super::style::{Layout, SceneStyle};
use super::table::{BALL_RADIUS_M, TABLE_LENGTH_M, TABLE_WIDTH_M};

/// Number of balls on the table: the cue ball and 1..=15.
pub(crate) const BALLS: usize = 16;
/// Physics substep.
pub(crate) const SUBSTEP_S: f64 = 0.001;
/// Rolling resistance, m/s².
const ROLL_DECEL: f64 = 0.3;
/// Speed-proportional loss, 1/s.
const DRAG: f64 = 0.25;
/// Ball-ball restitution.
const BALL_E: f64 = 0.93;
/// Ball-cushion restitution.
const CUSHION_E: f64 = 0.72;
/// Below this speed a ball stops.
const REST_SPEED: f64 = 0.004;
/// Gap left between touching balls when laid out, so they do not start overlapped.
const TOUCH_GAP: f64 = 0.0002;
/// Shots per layout; then the balls are laid out again.
const SHOTS_PER_LAYOUT: u32 = 12;
/// Play mode: a ball whose centre comes this near a corner pocket's point (the corner of the
/// playing surface) falls in, in ball radii (touching both cushions is 1.41).
const CORNER_CAPTURE_RADII: f64 = 2.1;
/// Play mode: the same for the side pockets (the middle of a long cushion; touching it is 1).
const SIDE_CAPTURE_RADII: f64 = 1.8;
/// Play mode: the still table between shots, seconds (at least a little over the 0.5 s that
/// ends a shot, so shots never run together).
const PLAY_PAUSE_S: (f64, f64) = (0.6, 3.0);

/// One ball.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Ball {
    /// 0 = cue, 8 = eight, 1..=7 solids, 9..=15 stripes.
    pub(crate) number: u8,
    pub(crate) p: [f64; 2],
    pub(crate) v: [f64; 2],
    /// Unit axis of the stripe band (meaningless for other balls, but kept rolling too).
    pub(crate) axis: [f64; 3],
    /// In a pocket (play mode): off the table, not drawn, not moving.
    pub(crate) pocketed: bool,
}

/// Balls plus the player.
#[derive(Debug, Clone)]
pub(crate) struct Table {
    pub(crate) balls: [Ball; BALLS],
    rng: Rng,
    layout: Layout,
    clusters: bool,
    cushion_contacts: bool,
    motion: bool,
    moving: bool,
    rest_time: f64,
    shots: u32,
    accum: f64,
    /// Play mode: pockets and random pauses.
    play: bool,
    /// Still time before the next shot.
    pause: f64,
    /// Numbers of the balls pocketed since [`Table::take_pocketed`] was last called.
    pocketed: Vec<u8>,
    /// Layouts so far (the first is 1).
    pub(crate) layouts: u64,
}

impl Table {
    pub(crate) fn new(seed: u64, style: &SceneStyle) -> Table {
        let mut rng = Rng::new(seed, 0xBA11);
        let mut balls = [Ball {
            number: 0,
            p: [0.0; 2],
            v: [0.0; 2],
            axis: [0.0, 0.0, 1.0],
            pocketed: false,
        }; BALLS];
        for (n, b) in balls.iter_mut().enumerate() {
            b.number = n as u8;
            b.axis = rng.unit_vector();
        }
        let mut t = Table {
            balls,
            rng,
            layout: style.layout,
            clusters: style.clusters,
            cushion_contacts: style.cushion_contacts,
            motion: style.motion,
            moving: false,
            rest_time: 0.0,
            shots: 0,
            accum: 0.0,
            play: style.play,
            pause: 0.6,
            pocketed: Vec::new(),
            layouts: 0,
        };
        t.lay_out();
        t
    }

    /// True while any ball moves.
    pub(crate) fn moving(&self) -> bool {
        self.moving
    }

    /// Numbers of the balls that fell into a pocket since the last call, in order.
    pub(crate) fn take_pocketed(&mut self, out: &mut Vec<u8>) {
        out.clear();
        out.append(&mut self.pocketed);
    }

    /// Advances by `dt` seconds in fixed substeps (the remainder carries to the next call).
    pub(crate) fn step(&mut self, dt: f64) {
        self.accum += dt;
        while self.accum >= SUBSTEP_S {
            self.accum -= SUBSTEP_S;
            self.substep(SUBSTEP_S);
        }
    }

    fn substep(&mut self, h: f64) {
        if self.moving {
            self.integrate(h);
            if self.play {
                self.fall_into_pockets();
            }
            self.collide();
            self.cushions();
            self.friction(h);
            self.moving = self.balls.iter().any(|b| b.v != [0.0, 0.0]);
        }
        self.play(h);
    }

    fn integrate(&mut self, h: f64) {
        for b in &mut self.balls {
            if b.v == [0.0, 0.0] {
                continue;
            }
            b.p[0] += b.v[0] * h;
            b.p[1] += b.v[1] * h;
            // Rolling without slipping: angular velocity (vy, -vx, 0) / R with z into the
            // table, so the top of the ball (towards the camera) moves forward.
            let (wx, wy) = (b.v[1] / BALL_RADIUS_M, -b.v[0] / BALL_RADIUS_M);
            let w = (wx * wx + wy * wy).sqrt();
            if w > 0.0 {
                b.axis = rotate(b.axis, [wx / w, wy / w, 0.0], w * h);
            }
        }
    }

    /// Balls that reached a pocket leave the table.
    fn fall_into_pockets(&mut self) {
        let (l, w, r) = (TABLE_LENGTH_M, TABLE_WIDTH_M, BALL_RADIUS_M);
        let corner = CORNER_CAPTURE_RADII * r;
        let side = SIDE_CAPTURE_RADII * r;
        let pockets = [
            ([0.0, 0.0], corner),
            ([l, 0.0], corner),
            ([l, w], corner),
            ([0.0, w], corner),
            ([l / 2.0, 0.0], side),
            ([l / 2.0, w], side),
        ];
        for b in &mut self.balls {
            if b.pocketed || b.v == [0.0, 0.0] {
                continue;
            }
            if let Some((p, _)) = pockets.iter().find(|(p, cap)| dist2(b.p, *p) < cap * cap) {
                b.pocketed = true;
                b.v = [0.0, 0.0];
                b.p = *p;
                self.pocketed.push(b.number);
            }
        }
    }

    fn collide(&mut self) {
        let min = 2.0 * BALL_RADIUS_M;
        for i in 0..BALLS {
            for j in (i + 1)..BALLS {
                let (a, b) = (self.balls[i], self.balls[j]);
                if a.pocketed || b.pocketed {
                    continue;
                }
                let d = [b.p[0] - a.p[0], b.p[1] - a.p[1]];
                let d2 = d[0] * d[0] + d[1] * d[1];
                if d2 >= min * min {
                    continue;
                }
                let dist = d2.sqrt();
                let n = if dist > 1e-12 {
                    [d[0] / dist, d[1] / dist]
                } else {
                    [1.0, 0.0]
                };
                let rel = (a.v[0] - b.v[0]) * n[0] + (a.v[1] - b.v[1]) * n[1];
                let (mut va, mut vb) = (a.v, b.v);
                if rel > 0.0 {
                    let j_imp = (1.0 + BALL_E) / 2.0 * rel;
                    va = [va[0] - j_imp * n[0], va[1] - j_imp * n[1]];
                    vb = [vb[0] + j_imp * n[0], vb[1] + j_imp * n[1]];
                }
                let push = (min - dist) / 2.0;
                self.balls[i].p = [a.p[0] - push * n[0], a.p[1] - push * n[1]];
                self.balls[j].p = [b.p[0] + push * n[0], b.p[1] + push * n[1]];
                self.balls[i].v = va;
                self.balls[j].v = vb;
            }
        }
    }

    fn cushions(&mut self) {
        let r = BALL_RADIUS_M;
        let hi = [TABLE_LENGTH_M - r, TABLE_WIDTH_M - r];
        for b in self.balls.iter_mut().filter(|b| !b.pocketed) {
            for (k, &hi) in hi.iter().enumerate() {
                if b.p[k] < r {
                    b.p[k] = r;
                    if b.v[k] < 0.0 {
                        b.v[k] = -b.v[k] * CUSHION_E;
                    }
                } else if b.p[k] > hi {
                    b.p[k] = hi;
                    if b.v[k] > 0.0 {
                        b.v[k] = -b.v[k] * CUSHION_E;
                    }
                }
            }
        }
    }

    fn friction(&mut self, h: f64) {
        for b in &mut self.balls {
            let speed = (b.v[0] * b.v[0] + b.v[1] * b.v[1]).sqrt();
            if speed == 0.0 {
                continue;
            }
            let loss = ROLL_DECEL * h + DRAG * speed * h;
            if speed - loss < REST_SPEED {
                b.v = [0.0, 0.0];
            } else {
                let k = (speed - loss) / speed;
                b.v = [b.v[0] * k, b.v[1] * k];
            }
        }
    }

    /// Shoots the cue ball after the table has been still for a moment; lays the balls out
    /// again every few shots so clusters and racks keep appearing.
    fn play(&mut self, h: f64) {
        if !self.motion || self.moving {
            return;
        }
        if self.play && self.rest_time == 0.0 && self.balls[0].pocketed {
            // Ball in hand: the cue ball comes back behind the head string.
            self.respot_cue();
        }
        self.rest_time += h;
        let pause = if self.play {
            self.pause
        } else if self.shots == 0 {
            0.6
        } else {
            1.0
        };
        if self.rest_time < pause {
            return;
        }
        self.rest_time = 0.0;
        let left = self.balls[1..].iter().filter(|b| !b.pocketed).count();
        if self.shots >= SHOTS_PER_LAYOUT || left < 2 {
            self.lay_out();
            return;
        }
        if self.play {
            self.pause = self.rng.range(PLAY_PAUSE_S.0, PLAY_PAUSE_S.1);
        }
        let cue = self.balls[0].p;
        let (target, speed) = if self.layout == Layout::Rack && self.shots == 0 {
            let spot = [TABLE_LENGTH_M * 0.75, TABLE_WIDTH_M / 2.0];
            let apex = (1..BALLS)
                .min_by(|&a, &b| {
                    dist2(self.balls[a].p, spot).total_cmp(&dist2(self.balls[b].p, spot))
                })
                .unwrap_or(1);
            (self.balls[apex].p, self.rng.range(5.5, 7.0))
        } else {
            let on_table: Vec<usize> = (1..BALLS).filter(|&n| !self.balls[n].pocketed).collect();
            let t = on_table[self.rng.below(on_table.len())];
            (self.balls[t].p, self.rng.range(1.2, 3.2))
        };
        let mut dir = [target[0] - cue[0], target[1] - cue[1]];
        let len = (dir[0] * dir[0] + dir[1] * dir[1]).sqrt();
        dir = if len > 1e-9 {
            [dir[0] / len, dir[1] / len]
        } else {
            [1.0, 0.0]
        };
        let a: f64 = self.rng.range(-0.05, 0.05);
        let (s, c) = a.sin_cos();
        let dir = [dir[0] * c - dir[1] * s, dir[0] * s + dir[1] * c];
        self.balls[0].v = [dir[0] * speed, dir[1] * speed];
        self.moving = true;
        self.shots += 1;
    }

    /// Puts every ball at rest in a fresh layout of the style's kind.
    fn lay_out(&mut self) {
        let positions = match self.layout {
            Layout::Rack => rack(&mut self.rng),
            Layout::Scattered => scattered(&mut self.rng, self.clusters, self.cushion_contacts),
        };
        for (b, p) in self.balls.iter_mut().zip(positions) {
            b.p = p;
            b.v = [0.0, 0.0];
            b.pocketed = false;
        }
        self.moving = false;
        self.rest_time = 0.0;
        self.shots = 0;
        self.layouts += 1;
    }
}

impl Table {
    /// Puts the pocketed cue ball back at the first free spot near the head spot.
    fn respot_cue(&mut self) {
        let others: Vec<[f64; 2]> = self.balls[1..]
            .iter()
            .filter(|b| !b.pocketed)
            .map(|b| b.p)
            .collect();
        let head = [TABLE_LENGTH_M * 0.25, TABLE_WIDTH_M / 2.0];
        let step = 2.0 * BALL_RADIUS_M + 0.01;
        let mut spot = head;
        'search: for ring in 0..20 {
            for k in 0..(8 * ring.max(1)) {
                let a = k as f64 * std::f64::consts::TAU / (8 * ring.max(1)) as f64;
                let p = [
                    head[0] + ring as f64 * step * a.cos(),
                    head[1] + ring as f64 * step * a.sin(),
                ];
                if fits(p, &others, 0.01) {
                    spot = p;
                    break 'search;
                }
            }
        }
        let cue = &mut self.balls[0];
        cue.p = spot;
        cue.v = [0.0, 0.0];
        cue.pocketed = false;
    }
}

fn dist2(a: [f64; 2], b: [f64; 2]) -> f64 {
    (a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2)
}

/// Rodrigues rotation of `v` about unit `axis` by `angle`.
fn rotate(v: [f64; 3], axis: [f64; 3], angle: f64) -> [f64; 3] {
    let (s, c) = angle.sin_cos();
    let [kx, ky, kz] = axis;
    let dot = kx * v[0] + ky * v[1] + kz * v[2];
    let cross = [
        ky * v[2] - kz * v[1],
        kz * v[0] - kx * v[2],
        kx * v[1] - ky * v[0],
    ];
    let r = [
        v[0] * c + cross[0] * s + kx * dot * (1.0 - c),
        v[1] * c + cross[1] * s + ky * dot * (1.0 - c),
        v[2] * c + cross[2] * s + kz * dot * (1.0 - c),
    ];
    let n = (r[0] * r[0] + r[1] * r[1] + r[2] * r[2]).sqrt();
    [r[0] / n, r[1] / n, r[2] / n]
}

/// Positions for balls 0..16 (index = number): an 8-ball rack at the foot spot and the cue
/// ball behind the head string.
fn rack(rng: &mut Rng) -> [[f64; 2]; BALLS] {
    let spacing = 2.0 * BALL_RADIUS_M + TOUCH_GAP;
    let row_dx = spacing * 3f64.sqrt() / 2.0;
    let apex = [TABLE_LENGTH_M * 0.75, TABLE_WIDTH_M / 2.0];
    let mut spots = [[0.0; 2]; 15];
    let mut k = 0;
    for row in 0..5 {
        for i in 0..=row {
            spots[k] = [
                apex[0] + row as f64 * row_dx,
                apex[1] + (i as f64 - row as f64 / 2.0) * spacing,
            ];
            k += 1;
        }
    }
    // 8-ball rules: the eight in the middle of the third row, a solid and a stripe in the
    // back corners, the rest at random.
    let mut solids: Vec<u8> = (1..=7).collect();
    let mut stripes: Vec<u8> = (9..=15).collect();
    rng.shuffle(&mut solids);
    rng.shuffle(&mut stripes);
    let (corner_solid, corner_stripe) = (solids.pop().unwrap_or(1), stripes.pop().unwrap_or(9));
    let mut rest: Vec<u8> = solids.into_iter().chain(stripes).collect();
    rng.shuffle(&mut rest);
    let mut order = [0u8; 15];
    let mut rest_iter = rest.into_iter();
    let swap = rng.chance(0.5);
    for (idx, slot) in order.iter_mut().enumerate() {
        *slot = match idx {
            4 => 8,
            10 => {
                if swap {
                    corner_stripe
                } else {
                    corner_solid
                }
            }
            14 => {
                if swap {
                    corner_solid
                } else {
                    corner_stripe
                }
            }
            _ => rest_iter.next().unwrap_or(1),
        };
    }
    let mut out = [[0.0; 2]; BALLS];
    for (spot, &n) in spots.iter().zip(order.iter()) {
        out[n as usize] = *spot;
    }
    out[0] = [
        TABLE_LENGTH_M * 0.25,
        TABLE_WIDTH_M / 2.0 + rng.range(-0.25, 0.25),
    ];
    out
}

fn in_bounds(p: [f64; 2]) -> bool {
    let r = BALL_RADIUS_M;
    p[0] >= r && p[0] <= TABLE_LENGTH_M - r && p[1] >= r && p[1] <= TABLE_WIDTH_M - r
}

fn fits(p: [f64; 2], placed: &[[f64; 2]], gap: f64) -> bool {
    let min = 2.0 * BALL_RADIUS_M + gap;
    in_bounds(p) && placed.iter().all(|q| dist2(p, *q) >= min * min - 1e-12)
}

/// Positions for balls 0..16: clusters of touching balls, balls against the cushions, and the
/// rest spread at random; the balls are then assigned to positions at random.
fn scattered(rng: &mut Rng, clusters: bool, cushion_contacts: bool) -> [[f64; 2]; BALLS] {
    let r = BALL_RADIUS_M;
    let (l, w) = (TABLE_LENGTH_M, TABLE_WIDTH_M);
    let mut placed: Vec<[f64; 2]> = Vec::with_capacity(BALLS);
    if clusters {
        let n_clusters = 1 + rng.below(3);
        for _ in 0..n_clusters {
            let size = 2 + rng.below(3);
            let start = placed.len();
            for _ in 0..50 {
                let p = [rng.range(0.2, l - 0.2), rng.range(0.2, w - 0.2)];
                if fits(p, &placed, 0.05) {
                    placed.push(p);
                    break;
                }
            }
            if placed.len() == start {
                continue;
            }
            for _ in 1..size {
                for _ in 0..30 {
                    if placed.len() >= BALLS {
                        break;
                    }
                    let q = placed[start + rng.below(placed.len() - start)];
                    let a = rng.range(0.0, std::f64::consts::TAU);
                    let d = 2.0 * r + TOUCH_GAP;
                    let p = [q[0] + d * a.cos(), q[1] + d * a.sin()];
                    if fits(p, &placed, 0.0) {
                        placed.push(p);
                        break;
                    }
                }
            }
        }
    }
    if cushion_contacts {
        let n = 2 + rng.below(3);
        for _ in 0..n {
            for _ in 0..50 {
                if placed.len() >= BALLS {
                    break;
                }
                let wall = rng.below(4);
                let edge = r + TOUCH_GAP / 2.0;
                let p = match wall {
                    0 => [rng.range(0.15, l - 0.15), edge],
                    1 => [rng.range(0.15, l - 0.15), w - edge],
                    2 => [edge, rng.range(0.15, w - 0.15)],
                    _ => [l - edge, rng.range(0.15, w - 0.15)],
                };
                let clear_of_side_pocket = wall >= 2 || (p[0] - l / 2.0).abs() > 0.12;
                if clear_of_side_pocket && fits(p, &placed, 0.01) {
                    placed.push(p);
                    break;
                }
            }
        }
    }
    while placed.len() < BALLS {
        let mut done = false;
        for _ in 0..200 {
            let p = [rng.range(r, l - r), rng.range(r, w - r)];
            if fits(p, &placed, 0.02) {
                placed.push(p);
                done = true;
                break;
            }
        }
        if !done {
            // Crowded: take the first free spot of a grid (always exists for 16 balls).
            let step = 2.0 * r + 0.01;
            let mut found = None;
            let mut y = r;
            'grid: while y <= w - r {
                let mut x = r;
                while x <= l - r {
                    if fits([x, y], &placed, 0.0) {
                        found = Some([x, y]);
                        break 'grid;
                    }
                    x += step;
                }
                y += step;
            }
            placed.push(found.unwrap_or([l / 2.0, w / 2.0]));
        }
    }
    let mut numbers: Vec<usize> = (0..BALLS).collect();
    rng.shuffle(&mut numbers);
    let mut out = [[0.0; 2]; BALLS];
    for (p, n) in placed.into_iter().zip(numbers) {
        out[n] = p;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_overlap(t: &Table) {
        for i in 0..BALLS {
            assert!(
                in_bounds(t.balls[i].p),
                "ball {i} off the table: {:?}",
                t.balls[i].p
            );
            for j in (i + 1)..BALLS {
                let d = dist2(t.balls[i].p, t.balls[j].p).sqrt();
                assert!(
                    d > 2.0 * BALL_RADIUS_M - 0.002,
                    "balls {i} and {j} overlap: {d}"
                );
            }
        }
    }

    #[test]
    fn rack_is_a_touching_triangle_with_eight_in_the_middle() {
        let t = Table::new(1, &SceneStyle::default());
        no_overlap(&t);
        let eight = t.balls[8].p;
        let touching = (1..BALLS)
            .filter(|&n| n != 8 && dist2(t.balls[n].p, eight).sqrt() < 2.0 * BALL_RADIUS_M + 0.001)
            .count();
        assert_eq!(touching, 6, "the eight ball sits among six neighbours");
        assert!(!t.moving());
    }

    #[test]
    fn scattered_layout_has_clusters_and_cushion_contacts() {
        let style = SceneStyle {
            layout: Layout::Scattered,
            ..SceneStyle::default()
        };
        for seed in 0..20 {
            let t = Table::new(seed, &style);
            no_overlap(&t);
            let touching_pairs = (0..BALLS)
                .flat_map(|i| ((i + 1)..BALLS).map(move |j| (i, j)))
                .filter(|&(i, j)| {
                    dist2(t.balls[i].p, t.balls[j].p).sqrt() < 2.0 * BALL_RADIUS_M + 0.001
                })
                .count();
            assert!(touching_pairs >= 1, "seed {seed}");
            let on_cushion = t
                .balls
                .iter()
                .filter(|b| {
                    let p = b.p;
                    let r = BALL_RADIUS_M + 0.001;
                    p[0] < r || p[1] < r || p[0] > TABLE_LENGTH_M - r || p[1] > TABLE_WIDTH_M - r
                })
                .count();
            assert!(on_cushion >= 1, "seed {seed}");
        }
    }

    #[test]
    fn shots_move_balls_which_stay_on_the_table_and_come_to_rest() {
        let mut t = Table::new(5, &SceneStyle::default());
        let start = t.balls;
        t.step(1.0);
        assert!(t.moving(), "the break happens after 0.6 s");
        for _ in 0..600 {
            t.step(1.0 / 30.0);
            no_overlap(&t);
        }
        assert_ne!(start.map(|b| b.p), t.balls.map(|b| b.p));
        // Without motion nothing ever moves.
        let mut still = Table::new(5, &SceneStyle::default().still());
        let before = still.balls;
        still.step(5.0);
        assert_eq!(before, still.balls);
    }

    #[test]
    fn play_mode_pockets_balls_and_pauses_between_shots() {
        let style = SceneStyle::default().play();
        let mut t = Table::new(11, &style);
        let dt = 1.0 / 30.0;
        let mut events = Vec::new();
        let mut still_runs = Vec::new();
        let mut still = 0.0;
        let mut buf = Vec::new();
        for _ in 0..(30 * 240) {
            t.step(dt);
            t.take_pocketed(&mut buf);
            events.extend_from_slice(&buf);
            for &n in &buf {
                // (A pocketed cue ball may be back already: ball in hand.)
                assert!(
                    t.balls[n as usize].pocketed || n == 0,
                    "{n} reported, not pocketed"
                );
            }
            // Balls on the table stay on it and apart.
            for (i, a) in t.balls.iter().enumerate().filter(|(_, b)| !b.pocketed) {
                assert!(in_bounds(a.p), "ball {i} off the table: {:?}", a.p);
            }
            if t.moving() {
                if still > 0.0 {
                    still_runs.push(still);
                }
                still = 0.0;
            } else {
                still += dt;
            }
        }
        assert!(
            events.len() >= 3,
            "only {} pocketings in 4 min",
            events.len()
        );
        // Pauses between shots: 0.5 to 3 s (a new layout may add one more pause).
        assert!(still_runs.len() >= 10);
        for s in &still_runs[1..] {
            assert!(*s >= 0.6 - 0.04 && *s <= 6.0 + 0.04, "still for {s} s");
        }
        assert!(still_runs.iter().any(|s| *s > 1.5) && still_runs.iter().any(|s| *s < 1.2));
        // Without play mode nothing is ever pocketed.
        let mut plain = Table::new(11, &SceneStyle::default());
        for _ in 0..(30 * 60) {
            plain.step(dt);
            plain.take_pocketed(&mut buf);
            assert!(buf.is_empty());
        }
    }

    #[test]
    fn deterministic() {
        let style = SceneStyle::varied(9);
        let mut a = Table::new(3, &style);
        let mut b = Table::new(3, &style);
        for _ in 0..300 {
            a.step(1.0 / 30.0);
            b.step(1.0 / 30.0);
        }
        assert_eq!(a.balls, b.balls);
    }

    #[test]
    fn rolling_turns_the_stripe_axis() {
        let v = rotate(
            [0.0, 0.0, 1.0],
            [0.0, 1.0, 0.0],
            std::f64::consts::FRAC_PI_2,
        );
        assert!((v[0] - 1.0).abs() < 1e-9 && v[2].abs() < 1e-9);
    }
}
