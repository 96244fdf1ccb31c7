use super::*;
use crate::model::KindFeatures;

const FRAME_NS: u64 = 33_333_333;
/// When tests start: after the tracker's warm-up.
const T0: u64 = 1_000_000_000;

/// A tracker past its warm-up (started at 0, now at [`T0`]).
fn warmed() -> Tracker {
    let mut t = Tracker::new();
    t.update(&[], 0);
    t
}

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

/// A ball that looks like `number` of a standard set (kind and hue).
fn numbered(x: f32, y: f32, number: u8) -> Ball {
    // BGR of yellow, blue, red, purple, orange, green, maroon.
    const BGR: [[f32; 3]; 7] = [
        [0.0, 190.0, 244.0],
        [170.0, 60.0, 16.0],
        [34.0, 30.0, 206.0],
        [132.0, 38.0, 92.0],
        [10.0, 106.0, 248.0],
        [62.0, 118.0, 8.0],
        [34.0, 26.0, 124.0],
    ];
    let kind = BallKind::from_number(number as u32);
    let mut b = ball(x, y, kind);
    if matches!(kind, BallKind::Solid | BallKind::Stripe) {
        let i = (number as usize - 1) % 8;
        let [bl, g, r] = BGR[i];
        let mx = bl.max(g).max(r);
        b.features = KindFeatures {
            colour: 0.5,
            hue: [(r - 0.5 * (g + bl)) / mx, 0.866_025_4 * (g - bl) / mx],
            value: if i == 6 { 0.85 } else { 1.45 },
            n: 300,
            ..KindFeatures::default()
        };
    }
    b
}

#[test]
fn ids_follow_moving_balls_and_velocities_are_measured() {
    let mut t = warmed();
    let first = t.update(
        &[
            ball(100.0, 100.0, BallKind::Cue),
            ball(300.0, 100.0, BallKind::Solid),
        ],
        T0,
    );
    let (a, b) = (first[0].id, first[1].id);
    assert_ne!(a, b);
    assert!(a >= UNIDENTIFIED_ID_BASE && b >= UNIDENTIFIED_ID_BASE);
    let mut last = Vec::new();
    for i in 1..10u64 {
        // The cue ball rolls right at 150 px/s; listed second to check the matching.
        let x = 100.0 + 5.0 * i as f32;
        last = t.update(
            &[
                ball(300.0, 100.0, BallKind::Solid),
                ball(x, 100.0, BallKind::Cue),
            ],
            T0 + i * FRAME_NS,
        );
        if i >= 2 {
            // Three sightings of evidence first: `null` rather than a guess.
            assert_eq!(last[1].number, Some(0), "the cue ball is identified");
            assert_eq!(last[1].id, 0, "an identified ball's id is its number");
        } else {
            assert_eq!(last[1].number, None);
            assert_eq!(last[1].id, a);
        }
        // A new track's first displacements are not motion.
        assert_eq!(last[1].moving, i >= 3, "frame {i}");
        assert!(!last[0].moving);
        assert_eq!(t.motion(), i >= 3);
    }
    // A solid of unknown colour is never given a number.
    assert_eq!(last[0].number, None);
    assert_eq!(last[0].id, b, "the unidentified ball keeps its id");
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
        let out = t.update(&[ball(200.0 + jitter, 50.0, kind)], i * FRAME_NS);
        xs.push(out[0].ball.x);
        assert_eq!(out[0].ball.kind, BallKind::Stripe, "frame {i}");
        assert!(!out[0].moving, "jitter is not motion (frame {i})");
        assert!(!t.motion());
    }
    let spread = xs[10..]
        .iter()
        .fold(0.0f32, |m, &x| m.max((x - 200.0).abs()));
    assert!(spread < 0.2, "{xs:?}");
}

#[test]
fn a_hidden_ball_keeps_its_id_for_a_second_and_no_longer() {
    let mut t = Tracker::new();
    let other = ball(500.0, 300.0, BallKind::Solid);
    let mut now = 0;
    let id = t.update(&[ball(100.0, 100.0, BallKind::Stripe), other], now)[0].id;
    // Hidden (a hand) for 0.9 s: same id when it reappears.
    for _ in 0..27 {
        now += FRAME_NS;
        t.update(&[other], now);
    }
    now += FRAME_NS;
    let back = t.update(&[ball(101.0, 100.5, BallKind::Stripe), other], now);
    assert_eq!(back[0].id, id);
    // At rest and missed for 1.5 s (in a cluster): still the same id.
    for _ in 0..45 {
        now += FRAME_NS;
        t.update(&[other], now);
    }
    now += FRAME_NS;
    let back = t.update(&[ball(101.0, 100.5, BallKind::Stripe), other], now);
    assert_eq!(back[0].id, id);
    // Hidden for 6.5 s: the track is gone, a new id.
    for _ in 0..195 {
        now += FRAME_NS;
        t.update(&[other], now);
    }
    now += FRAME_NS;
    let new = t.update(&[ball(101.0, 100.5, BallKind::Stripe), other], now);
    assert_ne!(new[0].id, id);
    assert_eq!(t.len(), 2);
}

#[test]
fn a_rolling_ball_hidden_for_over_a_second_gets_a_new_id() {
    let mut t = warmed();
    let other = ball(500.0, 300.0, BallKind::Solid);
    let mut now = T0;
    let mut id = 0;
    for k in 0..10 {
        let out = t.update(
            &[ball(100.0 + 5.0 * k as f32, 100.0, BallKind::Stripe), other],
            now,
        );
        id = out[0].id;
        now += FRAME_NS;
    }
    assert!(t.update(&[ball(150.0, 100.0, BallKind::Stripe), other], now)[0].moving);
    for _ in 0..45 {
        now += FRAME_NS;
        t.update(&[other], now);
    }
    now += FRAME_NS;
    let new = t.update(&[ball(160.0, 100.0, BallKind::Stripe), other], now);
    assert_ne!(new[0].id, id);
    assert_eq!(t.len(), 2);
}

#[test]
fn a_break_keeps_every_id() {
    // Six balls in a row, struck apart: each moves 4-7 radii per frame, diverging, through
    // the spots the others just left.
    let mut t = warmed();
    let start: Vec<(f32, f32)> = (0..6).map(|i| (400.0 + 20.5 * i as f32, 300.0)).collect();
    let numbers = [1u8, 9, 3, 11, 5, 13];
    let at = |k: u64| -> Vec<Ball> {
        start
            .iter()
            .zip(numbers)
            .enumerate()
            .map(|(i, (&(x, y), n))| {
                let speed = if k == 0 { 0.0 } else { 40.0 + 10.0 * i as f32 };
                let a = (i as f32 - 2.5) * 0.5;
                numbered(
                    x + speed * k as f32 * a.cos(),
                    y + speed * k as f32 * a.sin(),
                    n,
                )
            })
            .collect()
    };
    let mut now = T0;
    let mut ids = Vec::new();
    // The cue ball waits, then rolls to the row (the table is in motion when the row breaks,
    // unlike a new layout) and stops next to it.
    let cue = |x: f32| numbered(x, 300.0, 0);
    let with_cue = |mut balls: Vec<Ball>, x: f32| {
        balls.push(cue(x));
        balls
    };
    for _ in 0..10 {
        ids = t
            .update(&with_cue(at(0), 200.0), now)
            .iter()
            .map(|b| b.id)
            .collect();
        now += FRAME_NS;
    }
    let mut expected = numbers.map(|n| n as u64).to_vec();
    expected.push(0);
    assert_eq!(ids, expected, "all identified");
    for k in 1..=8 {
        t.update(&with_cue(at(0), 200.0 + 20.0 * k as f32), now);
        now += FRAME_NS;
    }
    for k in 1..8 {
        let out = t.update(&with_cue(at(k), 360.0), now);
        now += FRAME_NS;
        let got: Vec<u64> = out.iter().map(|b| b.id).collect();
        assert_eq!(got, ids, "frame {k} of the break");
        assert!(out[..6].iter().all(|b| b.moving));
    }
}

#[test]
fn numbers_are_unique_per_frame() {
    let mut t = Tracker::new();
    // Two balls that both look like the 4 (one of them, in truth, a mislit 12).
    let mut now = 0;
    for _ in 0..30 {
        let out = t.update(&[numbered(100.0, 100.0, 4), numbered(300.0, 100.0, 4)], now);
        now += FRAME_NS;
        let fours = out.iter().filter(|b| b.number == Some(4)).count();
        assert!(fours <= 1, "{out:?}");
        assert_ne!(out[0].id, out[1].id);
    }
    let out = t.update(&[numbered(100.0, 100.0, 4), numbered(300.0, 100.0, 4)], now);
    assert_eq!(out.iter().filter(|b| b.number == Some(4)).count(), 1);
    let four = out.iter().find(|b| b.number == Some(4)).unwrap();
    assert!(four.number_confidence > 0.5, "{four:?}");
    assert_eq!(four.id, 4);
}

#[test]
fn a_ball_rolling_into_a_pocket_is_reported_once() {
    let mut t = warmed();
    t.set_table(Some([
        [50.0, 50.0],
        [850.0, 50.0],
        [850.0, 450.0],
        [50.0, 450.0],
    ]));
    let still = numbered(400.0, 250.0, 2);
    let mut now = T0;
    for _ in 0..10 {
        t.update(&[numbered(200.0, 200.0, 6), still], now);
        now += FRAME_NS;
    }
    // The 6 rolls into the top-left corner pocket at 10 px per frame.
    let (mut x, mut y) = (200.0f32, 200.0f32);
    while x > 65.0 {
        x -= 10.0;
        y -= 10.0;
        t.update(&[numbered(x, y, 6), still], now);
        assert!(t.pocketed().is_empty());
        now += FRAME_NS;
    }
    let mut events = Vec::new();
    for _ in 0..40 {
        t.update(&[still], now);
        events.extend_from_slice(t.pocketed());
        now += FRAME_NS;
    }
    assert_eq!(events, vec![6]);
    // A ball that stops short of nothing and is hidden is not pocketed.
    assert_eq!(t.len(), 1);
}

#[test]
fn a_ball_hidden_in_mid_table_is_not_pocketed() {
    let mut t = warmed();
    t.set_table(Some([
        [50.0, 50.0],
        [850.0, 50.0],
        [850.0, 450.0],
        [50.0, 450.0],
    ]));
    let mut now = T0;
    for k in 0..10 {
        t.update(&[numbered(300.0 + 8.0 * k as f32, 250.0, 1)], now);
        now += FRAME_NS;
    }
    for _ in 0..20 {
        t.update(&[], now);
        assert!(t.pocketed().is_empty());
        now += FRAME_NS;
    }
    let back = t.update(&[numbered(390.0, 250.0, 1)], now);
    assert_eq!(back[0].id, 1);
}

#[test]
fn pockets_are_corners_and_long_side_middles() {
    let has = |p: &[[f32; 2]; 6], q: [f32; 2]| {
        p.iter()
            .any(|a| (a[0] - q[0]).abs() < 1e-3 && (a[1] - q[1]).abs() < 1e-3)
    };
    let p = pockets_of(&[[0.0, 0.0], [200.0, 0.0], [200.0, 100.0], [0.0, 100.0]]);
    assert!(has(&p, [100.0, 0.0]) && has(&p, [100.0, 100.0]));
    let p = pockets_of(&[[0.0, 0.0], [100.0, 0.0], [100.0, 200.0], [0.0, 200.0]]);
    assert!(has(&p, [100.0, 100.0]) && has(&p, [0.0, 100.0]));
}

#[test]
fn middle_pockets_of_a_table_seen_at_an_angle_are_in_perspective() {
    // A 2:1 table seen with its left end nearer the camera (longer in the image): the far
    // half of each long side looks shorter, so the middle pocket lies right of the side's
    // midpoint in the image. Map the true middle (0.5, 0) and (0.5, 1) through the same
    // homography to check.
    let hmap = |u: f32, v: f32| {
        // x' = (a u + b v + c) / (g u + h v + 1), a simple perspective along u.
        let w = 1.0 + 0.6 * u;
        [
            (1000.0 * u + 100.0) / w,
            (500.0 * v + 100.0 + 150.0 * u) / w,
        ]
    };
    let corners = [
        hmap(0.0, 0.0),
        hmap(1.0, 0.0),
        hmap(1.0, 1.0),
        hmap(0.0, 1.0),
    ];
    let p = pockets_of(&corners);
    for want in [hmap(0.5, 0.0), hmap(0.5, 1.0)] {
        assert!(
            p.iter()
                .any(|a| (a[0] - want[0]).abs() < 0.5 && (a[1] - want[1]).abs() < 0.5),
            "{want:?} not among {p:?}"
        );
    }
    // The plain midpoint of the top side is well off the true middle pocket.
    let plain = 0.5 * (corners[0][0] + corners[1][0]);
    assert!((plain - hmap(0.5, 0.0)[0]).abs() > 20.0);
}

#[test]
fn tiny_balls_still_get_the_minimum_motion_threshold() {
    // At 2 px the radius-based cap is below the jitter floor: the floor wins (no panic).
    let mut t = warmed();
    let mut b = ball(100.0, 100.0, BallKind::Cue);
    b.radius = 2.0;
    let mut now = T0;
    for k in 0..10 {
        b.x = 100.0 + 0.3 * (k % 2) as f32;
        let out = t.update(&[b], now);
        assert!(!out[0].moving, "frame {k}");
        now += FRAME_NS;
    }
    b.x += 5.0;
    assert!(t.update(&[b], now)[0].moving);
}

#[test]
fn a_ball_creeping_to_a_stop_is_moving_until_it_stops() {
    let mut t = warmed();
    let mut now = T0;
    let mut x = 300.0f32;
    for _ in 0..20 {
        t.update(&[ball(x, 200.0, BallKind::Cue)], now);
        now += FRAME_NS;
    }
    // 0.5 px per frame: under the 0.75 px jitter allowance per frame, 2 px over the window.
    let mut moving = Vec::new();
    for _ in 0..12 {
        x += 0.5;
        moving.push(t.update(&[ball(x, 200.0, BallKind::Cue)], now)[0].moving);
        now += FRAME_NS;
    }
    assert!(moving[4..].iter().all(|&m| m), "{moving:?}");
    // Stopped: still within a frame or two.
    let mut after = Vec::new();
    for _ in 0..6 {
        after.push(t.update(&[ball(x, 200.0, BallKind::Cue)], now)[0].moving);
        now += FRAME_NS;
    }
    assert!(after[2..].iter().all(|&m| !m), "{after:?}");
}

#[test]
fn a_ball_at_rest_whose_detection_flips_is_still() {
    let mut t = warmed();
    let mut now = T0;
    // At rest, then its detection flips by 1 px between two fits now and then.
    for k in 0..200u64 {
        let x = if k > 30 && k % 7 < 2 { 301.0 } else { 300.0 };
        let out = t.update(&[ball(x, 200.0, BallKind::Cue)], now);
        if k > 40 {
            assert!(!out[0].moving, "frame {k}");
        }
        now += FRAME_NS;
    }
    // A stroke still moves it.
    assert!(t.update(&[ball(304.0, 200.0, BallKind::Cue)], now)[0].moving);
}

#[test]
fn a_new_layout_starts_every_track_afresh() {
    let mut t = warmed();
    let mut now = T0;
    let row = |x0: f32, numbers: &[u8]| -> Vec<Ball> {
        numbers
            .iter()
            .enumerate()
            .map(|(i, &n)| numbered(x0 + 60.0 * i as f32, 200.0, n))
            .collect()
    };
    let before = [1u8, 2, 3, 4, 5, 6, 7, 0];
    for _ in 0..20 {
        t.update(&row(100.0, &before), now);
        now += FRAME_NS;
    }
    // Laid out anew: the 9 lands where the 1 was (no ball is near where it was), and so on.
    let after = [9u8, 10, 11, 12, 13, 14, 15, 8];
    let mut shifted = row(100.0, &after);
    for b in &mut shifted {
        b.y += 25.0;
    }
    let out = t.update(&shifted, now);
    assert!(
        out.iter().all(|b| b.number.is_none() && !b.moving),
        "no old number, no motion: {out:?}"
    );
    assert!(!t.motion());
    for _ in 0..10 {
        now += FRAME_NS;
        let out = t.update(&shifted, now);
        for (b, n) in out.iter().zip(after) {
            assert!(
                b.number.is_none() || b.number == Some(n),
                "{b:?} is the {n}"
            );
        }
    }
    let out = t.update(&shifted, now + FRAME_NS);
    let ids: Vec<u64> = out.iter().map(|b| b.id).collect();
    assert_eq!(ids, after.map(|n| n as u64).to_vec());
}

#[test]
fn an_unidentified_ball_that_falls_is_reported_by_its_likeliest_number() {
    let mut t = warmed();
    t.set_table(Some([
        [50.0, 50.0],
        [850.0, 50.0],
        [850.0, 450.0],
        [50.0, 450.0],
    ]));
    let mut now = T0;
    let two = numbered(600.0, 300.0, 2);
    for _ in 0..10 {
        t.update(&[numbered(400.0, 250.0, 6), two], now);
        now += FRAME_NS;
    }
    // The 6 is lost (too far from where its track expects it: a new track, while the old one
    // keeps the 6 reserved) and rolls into the top-left pocket unidentified.
    let (mut x, mut y) = (200.0f32, 200.0f32);
    for k in 0..10 {
        let out = t.update(&[numbered(x, y, 6), two], now);
        assert_eq!(out[0].number, None, "sighting {k}");
        assert!(out[0].id >= UNIDENTIFIED_ID_BASE);
        x -= 14.0;
        y -= 14.0;
        now += FRAME_NS;
    }
    let mut events = Vec::new();
    for _ in 0..20 {
        t.update(&[two], now);
        events.extend_from_slice(t.pocketed());
        now += FRAME_NS;
    }
    assert_eq!(events, vec![6], "once, by its likeliest number");
    assert_eq!(t.len(), 1, "its lost track went with it");
}

#[test]
fn a_ball_at_rest_whose_detection_wobbles_once_over_the_window_is_still() {
    // A small ball (4 px): its window allowance is the 0.75 px floor.
    let small = |x: f32| Ball {
        radius: 4.0,
        ..ball(x, 200.0, BallKind::Cue)
    };
    let mut t = warmed();
    let mut now = T0;
    // Rolls, then lies still for a few frames (too few to learn its jitter at rest).
    for k in 0..16 {
        let x = 250.0 + 5.0 * k.min(10) as f32;
        t.update(&[small(x)], now);
        now += FRAME_NS;
    }
    // Two small steps to one side add up to more than the allowance over the window (but
    // each is under it), then back: noise, not a creep (seed 2's 14 after a break).
    for x in [300.4, 300.8, 300.0, 300.2, 300.0] {
        let out = t.update(&[small(x)], now);
        assert!(!out[0].moving, "at {x}");
        now += FRAME_NS;
    }
}

#[test]
fn a_ball_at_rest_in_a_cluster_is_still_when_its_detection_jumps() {
    let mut t = warmed();
    let mut now = T0;
    let b = ball(320.0, 200.0, BallKind::Solid);
    for _ in 0..20 {
        t.update(&[ball(300.0, 200.0, BallKind::Solid), b], now);
        now += FRAME_NS;
    }
    // Touching a neighbour, its fit jumps 2.5 px (a quarter radius, over the 0.15-radius
    // cap of a lone ball) and back, now and then (seed 12's rack).
    for k in 0..30u64 {
        let x = if k % 5 == 0 { 297.5 } else { 300.0 };
        let out = t.update(&[ball(x, 200.0, BallKind::Solid), b], now);
        assert!(out.iter().all(|o| !o.moving), "frame {k}");
        assert!(!t.motion());
        now += FRAME_NS;
    }
    // Struck, it moves.
    let out = t.update(&[ball(294.0, 200.0, BallKind::Solid), b], now);
    assert!(out[0].moving && t.motion());
    // A lone ball's jump of the same size is motion.
    let mut t = warmed();
    let mut now = T0;
    for _ in 0..20 {
        t.update(&[ball(300.0, 200.0, BallKind::Solid)], now);
        now += FRAME_NS;
    }
    assert!(t.update(&[ball(297.5, 200.0, BallKind::Solid)], now)[0].moving);
}

#[test]
fn a_ball_lost_for_a_few_frames_next_to_a_pocket_is_not_pocketed() {
    let mut t = warmed();
    t.set_table(Some([
        [50.0, 50.0],
        [850.0, 50.0],
        [850.0, 450.0],
        [50.0, 450.0],
    ]));
    let still = numbered(400.0, 250.0, 2);
    let mut now = T0;
    let mut x = 300.0f32;
    let mut id = None;
    // The cue ball rolls along the top cushion past the middle pocket (450, 50), unseen for
    // 5 frames (170 ms) over its mouth (seed 12's one false pocketing).
    for k in 0..50 {
        x += 6.0;
        let hidden = (x - 450.0).abs() < 16.0;
        let balls = if hidden {
            vec![still]
        } else {
            vec![numbered(x, 62.0, 0), still]
        };
        let out = t.update(&balls, now);
        assert!(t.pocketed().is_empty(), "frame {k} at x {x}");
        if !hidden && k > 5 {
            let cue = out.iter().find(|o| o.ball.y < 100.0).map(|o| o.id);
            assert!(id.is_none() || cue == id, "frame {k}: {cue:?} after {id:?}");
            id = cue;
        }
        now += FRAME_NS;
    }
    assert_eq!(id, Some(0));
}

#[test]
fn a_look_alike_gets_the_number_left_by_elimination() {
    let mut t = warmed();
    let mut now = T0;
    // The 11 (red stripe) plainly; a stripe whose brightness reads halfway between red and
    // maroon, a little nearer red: on its own it is not sure enough of the 15, but the 11 is
    // plainly the other ball.
    let eleven = numbered(100.0, 100.0, 11);
    let mut unsure = numbered(400.0, 300.0, 15);
    unsure.features.value = 1.13;
    let mut out = Vec::new();
    let mut given_at = None;
    for k in 0..60 {
        out = t.update(&[eleven, unsure], now);
        if given_at.is_none() && out[1].number.is_some() {
            given_at = Some(k);
        }
        now += FRAME_NS;
    }
    assert_eq!(out[0].number, Some(11));
    assert_eq!(out[1].number, Some(15), "{out:?}");
    // The 11 is held after about 20 sightings; the offer then stands for 20 frames before
    // the 15 is given (an offer that comes and goes would flicker the id).
    assert!(given_at.is_some_and(|k| k >= 35), "given at {given_at:?}");
    assert_eq!(out[1].id, 15);
    // Early on, before the 11 has been seen long, the unsure ball gets no number.
    let mut t = warmed();
    let mut now = T0;
    for _ in 0..8 {
        out = t.update(&[eleven, unsure], now);
        now += FRAME_NS;
    }
    assert_eq!(out[0].number, Some(11));
    assert_eq!(out[1].number, None);
}

#[test]
fn a_ball_at_rest_missed_for_seconds_in_a_cluster_keeps_its_id() {
    let mut t = warmed();
    let mut now = T0;
    let (a, b) = (numbered(300.0, 200.0, 4), numbered(320.0, 200.0, 12));
    for _ in 0..60 {
        t.update(&[a, b], now);
        now += FRAME_NS;
    }
    // The detector misses the 4 for 5 s (seed 13's 4 beside two others), then sees it again.
    for _ in 0..150 {
        t.update(&[b], now);
        now += FRAME_NS;
    }
    let out = t.update(&[a, b], now);
    assert_eq!(out[0].id, 4);
}

#[test]
fn the_cue_ball_bouncing_back_keeps_its_id_when_the_ball_it_hit_shoots_out() {
    let mut t = warmed();
    let mut now = T0;
    let two = numbered(420.0, 210.0, 2);
    // The cue ball at rest, then rolling right at 40 px per frame towards the 2.
    for _ in 0..30 {
        t.update(&[numbered(100.0, 200.0, 0), two], now);
        now += FRAME_NS;
    }
    let mut x = 100.0;
    for _ in 0..7 {
        x += 40.0;
        t.update(&[numbered(x, 200.0, 0), two], now);
        now += FRAME_NS;
    }
    // x = 380: predicted next at 420. It hits the 2 and stops dead (seen where it was),
    // while the 2 shoots out to 20 px from the cue ball's prediction (seed 14's break).
    let out = t.update(&[numbered(x, 200.0, 0), numbered(430.0, 227.0, 2)], now);
    assert_eq!(out[0].id, 0, "{out:?}");
    assert_eq!(out[1].id, 2, "{out:?}");
}

#[test]
fn a_lone_ball_at_rest_flipping_between_two_far_fits_is_still_after_the_first_flip() {
    let mut t = warmed();
    let mut now = T0;
    for _ in 0..20 {
        t.update(&[ball(300.0, 200.0, BallKind::Solid)], now);
        now += FRAME_NS;
    }
    // Its fit flips by 2.6 px (over the 1.5 px cap) now and then (seed 12's 11 and 12).
    let mut moving = Vec::new();
    for k in 0..60u64 {
        let (x, y) = if k % 6 == 3 {
            (301.7, 202.0)
        } else {
            (300.0, 200.0)
        };
        moving.push(t.update(&[ball(x, y, BallKind::Solid)], now)[0].moving);
        now += FRAME_NS;
    }
    // The first flip and its return may count; none after.
    assert!(moving[6..].iter().all(|&m| !m), "{moving:?}");
    // A stroke still moves it.
    assert!(t.update(&[ball(306.0, 200.0, BallKind::Solid)], now)[0].moving);
}
