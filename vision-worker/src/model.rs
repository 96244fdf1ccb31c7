//! What the detector finds and what the worker publishes: the SPEC's detections JSON.

use serde::{Deserialize, Serialize};

/// The kind of a ball, as named in the detections JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum BallKind {
    /// The white cue ball.
    Cue,
    /// The black eight ball.
    Eight,
    /// A coloured ball (1-7).
    Solid,
    /// A white ball with a coloured band (9-15).
    Stripe,
    /// Not sure.
    Unknown,
}

impl BallKind {
    /// Every kind, in table order (used by the evaluation's confusion matrix).
    pub const ALL: [BallKind; 5] = [
        BallKind::Cue,
        BallKind::Eight,
        BallKind::Solid,
        BallKind::Stripe,
        BallKind::Unknown,
    ];

    /// The JSON name of the kind.
    pub fn as_str(self) -> &'static str {
        match self {
            BallKind::Cue => "cue",
            BallKind::Eight => "eight",
            BallKind::Solid => "solid",
            BallKind::Stripe => "stripe",
            BallKind::Unknown => "unknown",
        }
    }

    /// The kind of a standard pool ball number (0 = cue, 8 = eight, 1-7 solids, 9-15 stripes).
    pub fn from_number(n: u32) -> BallKind {
        match n {
            0 => BallKind::Cue,
            8 => BallKind::Eight,
            1..=7 => BallKind::Solid,
            9..=15 => BallKind::Stripe,
            _ => BallKind::Unknown,
        }
    }
}

/// Per-ball pixel statistics, exposed for diagnostics and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct KindFeatures {
    /// Fraction of white pixels.
    pub white: f32,
    /// Fraction of dark, neutral pixels.
    pub dark: f32,
    /// Fraction of saturated pixels.
    pub colour: f32,
    /// Fraction of saturated pixels in the outer ring (a stripe seen from its pole shows its
    /// band only there).
    pub ring_colour: f32,
    /// Fraction of white pixels in the outer ring (a stripe's caps reach the rim; a solid's
    /// number circle facing the camera does not).
    pub ring_white: f32,
    /// Whether the white pixels lie on two opposite sides of the centre.
    pub two_sided: bool,
    /// Pixels examined.
    pub n: u32,
}

/// One detected ball, in frame pixels (pixel centres at integer coordinates).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ball {
    /// Centre, x.
    pub x: f32,
    /// Centre, y.
    pub y: f32,
    /// Radius.
    pub radius: f32,
    /// Classified kind.
    pub kind: BallKind,
    /// Confidence of the detection in 0..1 (edge support of the fitted circle).
    pub score: f32,
    /// RMS distance of the outline points from the fitted circle, in radii.
    pub fit_rms: f32,
    /// The pixel statistics the kind was decided from.
    pub features: KindFeatures,
}

/// The playing surface: four corners in frame pixels, clockwise from the top-left one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Table {
    /// Top-left, top-right, bottom-right, bottom-left.
    pub corners: [[f32; 2]; 4],
}

/// The result of one frame.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FrameDetections {
    /// The table, when found.
    pub table: Option<Table>,
    /// The balls found on it.
    pub balls: Vec<Ball>,
}

/// The table object of the detections JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableJson {
    /// Four `[x, y]` corners clockwise from the top-left one; empty when no table was found.
    pub corners: Vec<[f32; 2]>,
}

/// One ball of the detections JSON (`x`, `y`, `radius`, `kind` per the SPEC; the rest are
/// extensions from the tracker).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BallJson {
    /// Centre, x (frame pixels).
    pub x: f32,
    /// Centre, y (frame pixels).
    pub y: f32,
    /// Radius (frame pixels).
    pub radius: f32,
    /// `cue`, `eight`, `solid`, `stripe` or `unknown`.
    pub kind: BallKind,
    /// Track id, stable while the ball stays in view.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<u64>,
    /// Velocity, x (pixels per second), when tracked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vx: Option<f32>,
    /// Velocity, y (pixels per second), when tracked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vy: Option<f32>,
}

/// The SPEC's detections JSON, one record per processed frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DetectionsJson {
    /// Number of the frame in the frame segment.
    pub frame_number: u64,
    /// Capture time of the frame (CLOCK_MONOTONIC ns).
    pub capture_ts_ns: u64,
    /// When the detections were ready (CLOCK_MONOTONIC ns).
    pub processed_ts_ns: u64,
    /// The playing surface.
    pub table: TableJson,
    /// The balls on it.
    pub balls: Vec<BallJson>,
    /// Extension: whether the table was found in this frame.
    #[serde(default = "default_true")]
    pub table_found: bool,
    /// Extension: time spent in detection for this frame, milliseconds.
    #[serde(default)]
    pub detect_ms: f32,
}

fn default_true() -> bool {
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_has_the_spec_shape() {
        let d = DetectionsJson {
            frame_number: 7,
            capture_ts_ns: 100,
            processed_ts_ns: 200,
            table: TableJson {
                corners: vec![[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]],
            },
            balls: vec![BallJson {
                x: 1.5,
                y: 2.5,
                radius: 3.0,
                kind: BallKind::Stripe,
                id: None,
                vx: None,
                vy: None,
            }],
            table_found: true,
            detect_ms: 1.0,
        };
        let text = serde_json::to_string(&d).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["frame_number"], 7);
        assert_eq!(v["capture_ts_ns"], 100);
        assert_eq!(v["processed_ts_ns"], 200);
        assert_eq!(v["table"]["corners"][2][0], 1.0);
        assert_eq!(v["balls"][0]["kind"], "stripe");
        assert_eq!(v["balls"][0]["radius"], 3.0);
        assert!(v["balls"][0].get("id").is_none());
        let back: DetectionsJson = serde_json::from_str(&text).unwrap();
        assert_eq!(back, d);
    }

    #[test]
    fn kinds_of_numbers() {
        assert_eq!(BallKind::from_number(0), BallKind::Cue);
        assert_eq!(BallKind::from_number(8), BallKind::Eight);
        assert_eq!(BallKind::from_number(3), BallKind::Solid);
        assert_eq!(BallKind::from_number(12), BallKind::Stripe);
        assert_eq!(BallKind::from_number(99), BallKind::Unknown);
    }
}
