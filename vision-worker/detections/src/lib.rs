//! The detections JSON of the SPEC (what the vision worker publishes on the detections channel
//! and the stream worker reads) and the size of that channel, defined once for the writer
//! (vision), the readers (stream) and the supervisor that creates the segment.
//!
//! Serde types and constants only: this crate knows nothing of OpenCV, shared memory or how
//! balls are found.

#![forbid(unsafe_code)]

use serde::{Deserialize, Serialize};

/// Capacity in bytes of one message on the detections channel (one detections JSON).
pub const DETECTIONS_CAPACITY: usize = 65536;
/// Slots of the detections channel.
pub const DETECTIONS_SLOTS: u32 = 4;

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
    /// Not sure, or a kind this version does not know (a newer writer's): parsing never
    /// fails on the kind.
    #[serde(other)]
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
    /// Pool number (0 cue, 1-15), or `null` when the ball is not identified: never a guess.
    /// Written as `null` rather than left out, so readers can tell "not identified" from an
    /// older writer (which leaves the key out: it parses as `None` too).
    #[serde(default)]
    pub number: Option<u8>,
    /// How sure the number is, 0..1 (0 when `number` is `null`).
    #[serde(default)]
    pub number_confidence: f32,
    /// Whether the ball moved in this frame.
    #[serde(default)]
    pub moving: bool,
}

/// The cue stick over the table (the SPEC's `cue` key).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CueJson {
    /// The tip, `[x, y]` in frame pixels.
    pub tip: [f32; 2],
    /// Direction from the butt to the tip, degrees, `atan2(dy, dx)` in frame pixels (x right,
    /// y down), in (-180, 180]: the aim line leaves the tip in this direction.
    pub angle_deg: f32,
    /// How sure the detector is that this is a cue, 0..1.
    pub confidence: f32,
}

/// Where the table of a detections record comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum TableSource {
    /// Found by the detector on a clear view, and held since.
    Found,
    /// Fixed by `vision.table_corners`.
    Fixed,
    /// No table (none found yet, or the held one stopped fitting).
    #[default]
    #[serde(other)]
    None,
}

impl TableSource {
    /// The JSON name.
    pub fn as_str(self) -> &'static str {
        match self {
            TableSource::Found => "found",
            TableSource::Fixed => "fixed",
            TableSource::None => "none",
        }
    }
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
    /// Whether any ball on the table moves in this frame.
    #[serde(default)]
    pub motion: Motion,
    /// Numbers of the balls that left the table through a pocket in this frame (each
    /// pocketing is reported once).
    #[serde(default)]
    pub pocketed: Vec<u8>,
    /// The newest finished shot, on the records of the frames in the [`SHOT_REPEAT_S`] after
    /// it ended (a reader that skips records still sees it; readers tell shots apart by
    /// [`ShotJson::id`]). Absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shot: Option<ShotJson>,
    /// The cue stick over the table, or `null` when none is seen.
    #[serde(default)]
    pub cue: Option<CueJson>,
    /// Extension: `found` (detected and held), `fixed` (`vision.table_corners`) or `none`.
    #[serde(default)]
    pub table_source: TableSource,
}

/// How long (seconds of capture time) the detections records repeat a finished shot.
pub const SHOT_REPEAT_S: f64 = 1.0;

/// Whether the balls on the table move (`"motion"` of the detections JSON).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Motion {
    /// No ball moves.
    #[default]
    Still,
    /// Some ball moves.
    Moving,
}

/// One finished shot, as in `GET /api/shots` and the push API's `shot` message.
///
/// A shot starts when a ball starts moving on a still table and ends when every ball has been
/// still for 0.5 s.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShotJson {
    /// Number of the shot since the vision worker started (from 1).
    pub id: u64,
    /// The frame in which the first ball moved.
    pub start_frame: u64,
    /// The frame at which every ball had been still for 0.5 s.
    pub end_frame: u64,
    /// Wall-clock time of the start (Unix seconds).
    pub start_unix_s: f64,
    /// From the start to the end, seconds of capture time.
    pub duration_s: f64,
    /// Numbers of the identified balls that moved, ascending.
    pub balls_moved: Vec<u8>,
    /// Numbers of the balls pocketed during the shot, in the order they fell.
    pub pocketed: Vec<u8>,
    /// The first ball the cue ball set moving, when the cue ball moved first.
    pub cue_ball_first_hit: Option<u8>,
}

/// Smallest id of a ball that is not identified (an identified ball's id is its number).
pub const UNIDENTIFIED_ID_BASE: u64 = 100;

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
                number: None,
                number_confidence: 0.0,
                moving: false,
            }],
            table_found: true,
            detect_ms: 1.0,
            motion: Motion::Still,
            pocketed: vec![],
            shot: None,
            cue: Some(CueJson {
                tip: [10.0, 20.0],
                angle_deg: -45.5,
                confidence: 0.9,
            }),
            table_source: TableSource::Fixed,
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
        assert!(v["balls"][0]["number"].is_null(), "not identified is null");
        assert_eq!(v["balls"][0]["moving"], false);
        assert_eq!(v["motion"], "still");
        assert_eq!(v["pocketed"], serde_json::json!([]));
        assert!(v.get("shot").is_none());
        assert_eq!(v["cue"]["tip"][1], 20.0);
        assert_eq!(v["cue"]["angle_deg"], -45.5);
        assert_eq!(v["cue"]["confidence"], 0.9);
        assert_eq!(v["table_source"], "fixed");
        let back: DetectionsJson = serde_json::from_str(&text).unwrap();
        assert_eq!(back, d);
    }

    #[test]
    fn shots_and_older_records_parse() {
        let shot = ShotJson {
            id: 3,
            start_frame: 10,
            end_frame: 70,
            start_unix_s: 1.5e9,
            duration_s: 2.0,
            balls_moved: vec![0, 3],
            pocketed: vec![3],
            cue_ball_first_hit: Some(3),
        };
        let v = serde_json::to_value(&shot).unwrap();
        for key in [
            "id",
            "start_frame",
            "end_frame",
            "start_unix_s",
            "duration_s",
            "balls_moved",
            "pocketed",
            "cue_ball_first_hit",
        ] {
            assert!(v.get(key).is_some(), "{key}");
        }
        let none = ShotJson {
            cue_ball_first_hit: None,
            ..shot.clone()
        };
        assert!(serde_json::to_value(&none).unwrap()["cue_ball_first_hit"].is_null());
        // A record of an older writer (no number, motion, pocketed or shot) still parses.
        let old = r#"{"frame_number":1,"capture_ts_ns":0,"processed_ts_ns":0,
            "table":{"corners":[]},"balls":[{"x":1,"y":2,"radius":3,"kind":"cue","id":4}]}"#;
        let d: DetectionsJson = serde_json::from_str(old).unwrap();
        assert_eq!(d.balls[0].number, None);
        assert_eq!(d.motion, Motion::Still);
        assert!(d.pocketed.is_empty() && d.shot.is_none());
        let moving: Motion = serde_json::from_str("\"moving\"").unwrap();
        assert_eq!(moving, Motion::Moving);
    }

    #[test]
    fn cue_is_null_when_absent_and_old_records_parse() {
        let old = r#"{"frame_number": 1, "capture_ts_ns": 0, "processed_ts_ns": 0,
            "table": {"corners": []}, "balls": []}"#;
        let d: DetectionsJson = serde_json::from_str(old).unwrap();
        assert_eq!(d.cue, None);
        assert_eq!(d.table_source, TableSource::None);
        let v: serde_json::Value = serde_json::to_value(&d).unwrap();
        assert!(v["cue"].is_null());
        assert!(
            v.as_object().unwrap().contains_key("cue"),
            "cue is always present"
        );
        let newer: TableSource = serde_json::from_str("\"estimated\"").unwrap();
        assert_eq!(newer, TableSource::None);
        for s in [TableSource::Found, TableSource::Fixed, TableSource::None] {
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
    }

    #[test]
    fn kinds_of_numbers() {
        assert_eq!(BallKind::from_number(0), BallKind::Cue);
        assert_eq!(BallKind::from_number(8), BallKind::Eight);
        assert_eq!(BallKind::from_number(3), BallKind::Solid);
        assert_eq!(BallKind::from_number(12), BallKind::Stripe);
        assert_eq!(BallKind::from_number(99), BallKind::Unknown);
    }

    #[test]
    fn unknown_kinds_parse_as_unknown() {
        let k: BallKind = serde_json::from_str("\"nine-ball\"").unwrap();
        assert_eq!(k, BallKind::Unknown);
        assert_eq!(
            serde_json::to_string(&BallKind::Unknown).unwrap(),
            "\"unknown\""
        );
        for k in BallKind::ALL {
            let text = serde_json::to_string(&k).unwrap();
            assert_eq!(text, format!("\"{}\"", k.as_str()));
            assert_eq!(serde_json::from_str::<BallKind>(&text).unwrap(), k);
        }
    }
}
