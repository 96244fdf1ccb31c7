//! How the synthetic table looks: cloth and rail colours, lighting, noise, camera pose and
//! ball layout. Every variation has its own knob so a test can isolate one difficulty.

use super::rng::Rng;

/// Cloth colours (BGR) of common table felts.
pub mod cloth {
    /// Tournament green.
    pub const GREEN: [u8; 3] = [58, 112, 24];
    /// Tournament blue.
    pub const BLUE: [u8; 3] = [150, 86, 28];
    /// Wine red.
    pub const RED: [u8; 3] = [40, 34, 140];
    /// Purple.
    pub const PURPLE: [u8; 3] = [110, 44, 84];
    /// Slate grey.
    pub const GREY: [u8; 3] = [96, 92, 88];
    /// Camel / tan.
    pub const TAN: [u8; 3] = [92, 140, 176];
    /// Teal.
    pub const TEAL: [u8; 3] = [112, 112, 22];
    /// Charcoal (nearly black).
    pub const CHARCOAL: [u8; 3] = [40, 38, 36];
    /// All presets, in a fixed order (used by [`super::SceneStyle::varied`]).
    pub const ALL: [[u8; 3]; 8] = [GREEN, BLUE, RED, PURPLE, GREY, TAN, TEAL, CHARCOAL];
}

/// Rail (wood) colours (BGR).
pub mod rail {
    /// Dark walnut.
    pub const WALNUT: [u8; 3] = [22, 48, 88];
    /// Mahogany.
    pub const MAHOGANY: [u8; 3] = [26, 40, 110];
    /// Light oak.
    pub const OAK: [u8; 3] = [70, 130, 180];
    /// Black lacquer.
    pub const BLACK: [u8; 3] = [26, 26, 28];
    /// All presets, in a fixed order.
    pub const ALL: [[u8; 3]; 4] = [WALNUT, MAHOGANY, OAK, BLACK];
}

/// Where the balls start (and are put again every few shots).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// An 8-ball rack of 15 touching balls plus the cue ball; the first shot is a break.
    Rack,
    /// Random positions, with clusters and cushion contacts as the style asks.
    Scattered,
}

/// The look of a synthetic scene. `Default` is a clean green table seen from straight above,
/// racked and played continuously; [`SceneStyle::varied`] picks a random, still plausible,
/// style. Each field is a knob that turns one variation on or off.
#[derive(Debug, Clone, PartialEq)]
pub struct SceneStyle {
    /// Felt colour (BGR). See [`cloth`] for presets.
    pub cloth: [u8; 3],
    /// Rail colour (BGR). See [`rail`] for presets.
    pub rail: [u8; 3],
    /// Strength of the lighting gradient and vignette: 0 = flat light, 1 = strong (0..=1).
    pub lighting: f32,
    /// Direction the light comes from, in degrees (0 = from the right, 90 = from below).
    pub light_angle_deg: f32,
    /// Standard deviation of per-pixel sensor noise in grey levels; 0 = none (0..=40).
    /// Noise changes every frame, so it turns off the incremental rendering.
    pub noise: f32,
    /// Camera tilt away from straight overhead, in degrees; 0 = exactly overhead (0..=25).
    pub tilt_deg: f32,
    /// Direction of the tilt in the image, in degrees.
    pub tilt_azimuth_deg: f32,
    /// Camera rotation about its optical axis, in degrees (-30..=30).
    pub roll_deg: f32,
    /// Fraction of the frame (the limiting dimension) the table's outer rail fills (0.3..=1).
    pub zoom: f32,
    /// Starting layout.
    pub layout: Layout,
    /// [`Layout::Scattered`]: put some balls in clusters of touching balls.
    pub clusters: bool,
    /// [`Layout::Scattered`]: put some balls against the cushions.
    pub cushion_contacts: bool,
    /// Keep playing: shoot the cue ball whenever every ball is at rest. Off: a still scene.
    pub motion: bool,
    /// Play like a game (with `motion`): balls fall into the six pockets and leave the table
    /// (a pocketed cue ball comes back behind the head string), and the table is still for
    /// 0.6-3 s between shots. Off: balls only bounce, shots come 1 s apart.
    pub play: bool,
}

impl Default for SceneStyle {
    fn default() -> Self {
        SceneStyle {
            cloth: cloth::GREEN,
            rail: rail::WALNUT,
            lighting: 0.25,
            light_angle_deg: 225.0,
            noise: 0.0,
            tilt_deg: 0.0,
            tilt_azimuth_deg: 0.0,
            roll_deg: 0.0,
            zoom: 0.96,
            layout: Layout::Rack,
            clusters: true,
            cushion_contacts: true,
            motion: true,
            play: false,
        }
    }
}

impl SceneStyle {
    /// A style with every variation turned off: default colours, flat light, no noise,
    /// straight overhead. The easiest case, and the base of tests that add one difficulty.
    pub fn plain() -> Self {
        SceneStyle {
            lighting: 0.0,
            ..SceneStyle::default()
        }
    }

    /// A random but plausible style, the same for the same `seed`: cloth among the presets
    /// (green, blue, red, purple, grey, tan, teal, charcoal, with a little jitter), lighting
    /// gradient, sensor noise, mild perspective and roll, zoom, rack or scattered layout with
    /// clusters and cushion contacts. Each variation is on in roughly half of the styles.
    pub fn varied(seed: u64) -> Self {
        let mut r = Rng::new(seed, 0x0057_171E);
        let base = cloth::ALL[r.below(cloth::ALL.len())];
        let mut cloth = [0u8; 3];
        for (c, b) in cloth.iter_mut().zip(base) {
            *c = (b as f64 + r.range(-12.0, 12.0)).clamp(0.0, 255.0) as u8;
        }
        let rail = rail::ALL[r.below(rail::ALL.len())];
        let lighting = if r.chance(0.6) {
            r.range(0.25, 0.9)
        } else {
            r.range(0.0, 0.2)
        } as f32;
        let light_angle_deg = r.range(0.0, 360.0) as f32;
        let noise = if r.chance(0.5) {
            r.range(2.0, 10.0)
        } else {
            0.0
        } as f32;
        let tilt_deg = if r.chance(0.6) {
            r.range(2.0, 12.0)
        } else {
            0.0
        } as f32;
        let tilt_azimuth_deg = r.range(0.0, 360.0) as f32;
        let roll_deg = if r.chance(0.5) {
            r.range(-4.0, 4.0)
        } else {
            0.0
        } as f32;
        let zoom = r.range(0.8, 0.98) as f32;
        let layout = if r.chance(0.3) {
            Layout::Rack
        } else {
            Layout::Scattered
        };
        SceneStyle {
            cloth,
            rail,
            lighting,
            light_angle_deg,
            noise,
            tilt_deg,
            tilt_azimuth_deg,
            roll_deg,
            zoom,
            layout,
            clusters: r.chance(0.75),
            cushion_contacts: r.chance(0.75),
            motion: true,
            play: false,
        }
    }

    /// The same style without sensor noise.
    pub fn without_noise(self) -> Self {
        SceneStyle { noise: 0.0, ..self }
    }

    /// The same style with flat lighting.
    pub fn without_lighting(self) -> Self {
        SceneStyle {
            lighting: 0.0,
            ..self
        }
    }

    /// The same style seen from exactly overhead (no tilt, no roll).
    pub fn overhead(self) -> Self {
        SceneStyle {
            tilt_deg: 0.0,
            roll_deg: 0.0,
            ..self
        }
    }

    /// The same style without motion: the scene stays as laid out.
    pub fn still(self) -> Self {
        SceneStyle {
            motion: false,
            ..self
        }
    }

    /// The same style in play mode (see the `play` field): pockets, and shots separated by
    /// a still table.
    pub fn play(self) -> Self {
        SceneStyle {
            motion: true,
            play: true,
            ..self
        }
    }

    /// Checks every numeric knob; returns the first one out of range as (field, value, rule).
    pub(crate) fn check(&self) -> Result<(), (&'static str, f32, &'static str)> {
        let rules: [(&'static str, f32, f32, f32); 7] = [
            ("lighting", self.lighting, 0.0, 1.0),
            ("light_angle_deg", self.light_angle_deg, -3600.0, 3600.0),
            ("noise", self.noise, 0.0, 40.0),
            ("tilt_deg", self.tilt_deg, 0.0, 25.0),
            ("tilt_azimuth_deg", self.tilt_azimuth_deg, -3600.0, 3600.0),
            ("roll_deg", self.roll_deg, -30.0, 30.0),
            ("zoom", self.zoom, 0.3, 1.0),
        ];
        for (name, v, lo, hi) in rules {
            if !v.is_finite() {
                return Err((name, v, "must be a finite number"));
            }
            if v < lo || v > hi {
                return Err((name, v, "is out of range (see the field's documentation)"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varied_is_deterministic_and_valid() {
        for seed in 0..200 {
            let a = SceneStyle::varied(seed);
            assert_eq!(a, SceneStyle::varied(seed));
            assert!(a.check().is_ok(), "seed {seed}: {a:?}");
        }
        let distinct: std::collections::HashSet<[u8; 3]> =
            (0..50).map(|s| SceneStyle::varied(s).cloth).collect();
        assert!(distinct.len() > 10);
    }

    #[test]
    fn varied_turns_each_variation_on_and_off() {
        let styles: Vec<SceneStyle> = (0..100).map(SceneStyle::varied).collect();
        assert!(styles.iter().any(|s| s.noise > 0.0) && styles.iter().any(|s| s.noise == 0.0));
        assert!(
            styles.iter().any(|s| s.tilt_deg > 0.0) && styles.iter().any(|s| s.tilt_deg == 0.0)
        );
        assert!(styles.iter().any(|s| s.layout == Layout::Rack));
        assert!(styles.iter().any(|s| s.layout == Layout::Scattered));
        assert!(styles.iter().any(|s| s.clusters) && styles.iter().any(|s| !s.clusters));
    }

    #[test]
    fn knobs_switch_off() {
        let s = SceneStyle::varied(3)
            .without_noise()
            .without_lighting()
            .overhead()
            .still();
        assert_eq!(
            (s.noise, s.lighting, s.tilt_deg, s.roll_deg, s.motion),
            (0.0, 0.0, 0.0, 0.0, false)
        );
    }

    #[test]
    fn check_rejects_bad_values() {
        let s = SceneStyle {
            zoom: f32::NAN,
            ..SceneStyle::default()
        };
        assert_eq!(s.check().unwrap_err().0, "zoom");
        let s = SceneStyle {
            tilt_deg: 80.0,
            ..SceneStyle::default()
        };
        assert_eq!(s.check().unwrap_err().0, "tilt_deg");
    }
}
