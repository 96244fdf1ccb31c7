use super::*;

const W: u32 = 640;
const H: u32 = 360;

fn scene(seed: u64, style: SceneStyle) -> Scene {
    Scene::new(SceneParams::new(W, H, seed).with_style(style)).unwrap()
}

fn px(buf: &[u8], x: i32, y: i32) -> [u8; 3] {
    let i = (y as usize * W as usize + x as usize) * 3;
    [buf[i], buf[i + 1], buf[i + 2]]
}

fn close(a: [u8; 3], b: [f32; 3], tol: f32) -> bool {
    (0..3).all(|c| (a[c] as f32 - b[c]).abs() <= tol)
}

/// Distance in colour space from `p` to the segment between colours `a` and `b`.
fn dist_to_segment(p: [u8; 3], a: [u8; 3], b: [u8; 3]) -> f32 {
    let p = p.map(|v| v as f32);
    let a = a.map(|v| v as f32);
    let b = b.map(|v| v as f32);
    let ab = [b[0] - a[0], b[1] - a[1], b[2] - a[2]];
    let ap = [p[0] - a[0], p[1] - a[1], p[2] - a[2]];
    let len2 = ab.iter().map(|v| v * v).sum::<f32>().max(1e-6);
    let t = ((ap[0] * ab[0] + ap[1] * ab[1] + ap[2] * ab[2]) / len2).clamp(0.0, 1.0);
    (0..3)
        .map(|c| (a[c] + ab[c] * t - p[c]).powi(2))
        .sum::<f32>()
        .sqrt()
}

#[test]
fn deterministic_for_a_seed() {
    let render = |seed: u64| {
        let mut s = scene(seed, SceneStyle::default());
        let mut frames = Vec::new();
        for i in 0..60 {
            s.step(1.0 / 30.0);
            if i % 20 == 19 {
                let mut f = vec![0u8; s.frame_len()];
                let gt = s.render_into(&mut f).unwrap();
                frames.push((f, gt));
            }
        }
        frames
    };
    let a = render(4);
    assert_eq!(a, render(4));
    assert_ne!(a, render(5));
}

#[test]
fn ground_truth_matches_the_drawn_colours() {
    for (seed, style) in [
        (1, SceneStyle::plain().still()),
        (
            2,
            SceneStyle {
                layout: Layout::Scattered,
                ..SceneStyle::plain().still()
            },
        ),
        (
            3,
            SceneStyle {
                tilt_deg: 10.0,
                tilt_azimuth_deg: 60.0,
                roll_deg: 3.0,
                ..SceneStyle::plain().still()
            },
        ),
        (
            4,
            SceneStyle {
                cloth: cloth::RED,
                ..SceneStyle::plain()
            },
        ),
    ] {
        let mut s = scene(seed, style.clone());
        // Let it play a little where it moves.
        for _ in 0..45 {
            s.step(1.0 / 30.0);
        }
        let mut f = vec![0u8; s.frame_len()];
        let gt = s.render_into(&mut f).unwrap();
        assert_eq!(gt.balls.len(), 16);
        let numbers: Vec<u8> = gt.balls.iter().map(|b| b.number).collect();
        assert_eq!(numbers, (0..16).collect::<Vec<u8>>());
        for b in &gt.balls {
            assert!(
                b.radius > 4.0 && b.radius < 9.0,
                "seed {seed}: radius {}",
                b.radius
            );
            let (x, y) = (b.x.round() as i32, b.y.round() as i32);
            let centre = px(&f, x, y);
            let base = ball_color(b.number).unwrap();
            match b.kind {
                BallKind::Stripe => {
                    let d = dist_to_segment(centre, base, CUE_WHITE);
                    assert!(
                        d < 30.0,
                        "seed {seed} ball {}: centre {centre:?} far from {base:?}..white",
                        b.number
                    );
                }
                _ => {
                    let want = base.map(|c| c as f32);
                    assert!(
                        close(centre, want, 30.0),
                        "seed {seed} ball {}: centre {centre:?} vs {want:?}",
                        b.number
                    );
                }
            }
            // Just outside the disc, on the side away from the shadow, the background shows
            // unless another ball is there.
            let (ox, oy) = (b.x - b.radius - 2.0, b.y - b.radius * 0.3);
            let other_near = gt.balls.iter().any(|o| {
                o.number != b.number
                    && ((o.x - ox).powi(2) + (o.y - oy).powi(2)).sqrt() < o.radius * 2.6
            });
            if !other_near {
                let (ox, oy) = (ox.round() as i32, oy.round() as i32);
                assert_eq!(
                    px(&f, ox, oy),
                    px(&s.bg, ox, oy),
                    "seed {seed} ball {} outside",
                    b.number
                );
            }
        }
        let c = gt.table_corners;
        assert!(c[0][0] < c[1][0] && c[3][1] > c[0][1], "seed {seed}: {c:?}");
    }
}

#[test]
fn ball_kinds_and_colours_are_standard() {
    assert_eq!(BallKind::of_number(0), Some(BallKind::Cue));
    assert_eq!(BallKind::of_number(8), Some(BallKind::Eight));
    assert_eq!(BallKind::of_number(3), Some(BallKind::Solid));
    assert_eq!(BallKind::of_number(12), Some(BallKind::Stripe));
    assert_eq!(BallKind::of_number(16), None);
    assert_eq!(BallKind::Stripe.as_str(), "stripe");
    let white = ball_color(0).unwrap();
    assert!(white.iter().all(|&c| c > 200));
    assert!(ball_color(8).unwrap().iter().all(|&c| c < 40));
}

#[test]
fn lighting_shades_the_balls_and_cloth() {
    let lit = SceneStyle {
        lighting: 1.0,
        light_angle_deg: 0.0,
        ..SceneStyle::plain().still()
    };
    let s = scene(1, lit);
    let mut f = vec![0u8; s.frame_len()];
    s.render_into(&mut f).unwrap();
    // Light from the right: the right side of the cloth is brighter than the left.
    let c = s.table_corners();
    let (yl, xl, xr) = ((c[0][1] + c[3][1]) / 2.0, c[0][0] + 30.0, c[1][0] - 30.0);
    let left: u32 = px(&f, xl as i32, yl as i32).iter().map(|&v| v as u32).sum();
    let right: u32 = px(&f, xr as i32, yl as i32).iter().map(|&v| v as u32).sum();
    assert!(right > left + 30, "left {left} right {right}");
}

#[test]
fn incremental_rendering_equals_full_rendering() {
    for style in [
        SceneStyle::default(),
        SceneStyle::varied(11).without_noise(),
        SceneStyle::varied(12),
    ] {
        let mut s = scene(21, style);
        // Three buffers used in turn, like shared-memory slots.
        let mut bufs = vec![vec![0u8; s.frame_len()]; 3];
        let mut caches = vec![RenderCache::new(); 3];
        let mut full = vec![0u8; s.frame_len()];
        for i in 0..150 {
            s.step(1.0 / 30.0);
            let k = i % 3;
            s.render_incremental(&mut bufs[k], &mut caches[k]).unwrap();
            if i % 10 == 0 || i > 140 {
                s.render_into(&mut full).unwrap();
                assert!(bufs[k] == full, "frame {i} differs");
            }
        }
    }
}

#[test]
fn a_still_scene_renders_the_same_frame() {
    let mut s = scene(2, SceneStyle::default().still());
    let mut a = vec![0u8; s.frame_len()];
    s.render_into(&mut a).unwrap();
    s.step(1.0);
    let mut b = vec![0u8; s.frame_len()];
    s.render_into(&mut b).unwrap();
    assert!(a == b);
}

#[test]
fn noise_changes_every_frame_but_not_the_truth() {
    let mut s = scene(
        2,
        SceneStyle {
            noise: 6.0,
            ..SceneStyle::default().still()
        },
    );
    let mut a = vec![0u8; s.frame_len()];
    let ga = s.render_into(&mut a).unwrap();
    s.step(1.0 / 30.0);
    let mut b = vec![0u8; s.frame_len()];
    let gb = s.render_into(&mut b).unwrap();
    assert_eq!(ga, gb);
    let differing = a.iter().zip(&b).filter(|(x, y)| x != y).count();
    assert!(differing > a.len() / 2, "{differing} of {}", a.len());
    // Centred on the clean image.
    let clean = scene(2, SceneStyle::default().still());
    let mut c = vec![0u8; clean.frame_len()];
    clean.render_into(&mut c).unwrap();
    let mean: f64 = a
        .iter()
        .zip(&c)
        .map(|(&x, &y)| x as f64 - y as f64)
        .sum::<f64>()
        / a.len() as f64;
    assert!(mean.abs() < 1.0, "mean shift {mean}");
}

#[test]
fn perspective_makes_the_table_a_trapezoid() {
    let s = scene(
        1,
        SceneStyle {
            tilt_deg: 12.0,
            ..SceneStyle::plain().still()
        },
    );
    let c = s.table_corners();
    let top = c[1][0] - c[0][0];
    let bottom = c[2][0] - c[3][0];
    assert!((top - bottom).abs() > 5.0, "{c:?}");
    let flat = scene(1, SceneStyle::plain().still()).table_corners();
    assert!((flat[1][0] - flat[0][0] - (flat[2][0] - flat[3][0])).abs() < 0.01);
}

#[test]
fn bad_input_gives_errors() {
    assert!(matches!(
        Scene::new(SceneParams::new(8, 360, 1)),
        Err(SceneError::Size { .. })
    ));
    assert!(matches!(
        Scene::new(SceneParams::new(640, 9000, 1)),
        Err(SceneError::Size { .. })
    ));
    let bad = SceneParams::new(64, 36, 1).with_style(SceneStyle {
        noise: -1.0,
        ..SceneStyle::default()
    });
    let e = Scene::new(bad).unwrap_err();
    assert!(e.to_string().contains("style.noise"), "{e}");
    let s = Scene::new(SceneParams::new(64, 36, 1)).unwrap();
    let mut small = vec![0u8; 10];
    let e = s.render_into(&mut small).unwrap_err();
    assert!(e.to_string().contains("needs exactly 6912"), "{e}");
    let mut cache = RenderCache::new();
    assert!(s.render_incremental(&mut small, &mut cache).is_err());
    // Odd dt values are ignored, not fatal.
    let mut s = s;
    s.step(f64::NAN);
    s.step(-1.0);
    assert_eq!(s.time(), 0.0);
}

#[test]
fn renders_into_a_mat() {
    let s = Scene::new(SceneParams::new(64, 36, 1)).unwrap();
    let mut m = Mat::default();
    let gt = s.render_mat(&mut m).unwrap();
    assert_eq!((m.rows(), m.cols(), m.typ()), (36, 64, CV_8UC3));
    let mut v = vec![0u8; s.frame_len()];
    assert_eq!(gt, s.render_into(&mut v).unwrap());
    assert_eq!(m.data_bytes().unwrap(), &v[..]);
}

#[test]
fn varied_styles_render() {
    for seed in 0..6 {
        let style = SceneStyle::varied(seed);
        let mut s = Scene::new(SceneParams::new(320, 180, seed).with_style(style)).unwrap();
        s.step(0.5);
        let mut f = vec![0u8; s.frame_len()];
        let gt = s.render_into(&mut f).unwrap();
        for b in &gt.balls {
            assert!(
                b.x >= 0.0 && b.x < 320.0 && b.y >= 0.0 && b.y < 180.0,
                "{b:?}"
            );
        }
    }
}
