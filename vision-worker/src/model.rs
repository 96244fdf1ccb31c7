//! What the detector finds and what the worker publishes: the SPEC's detections JSON.

pub use billiards_detections::{
    BallJson, BallKind, CueJson, DetectionsJson, Motion, ShotJson, TableJson, TableSource,
};

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
    /// Mean opponent-colour vector `[r - (g + b) / 2, (g - b) * sqrt(3) / 2]` of the saturated
    /// pixels, each divided by its brightness: its angle is the ball's hue (the number's
    /// evidence beyond solid or stripe).
    pub hue: [f32; 2],
    /// Mean brightness of the saturated pixels relative to the cloth next to the ball (tells
    /// red from maroon, which share a hue).
    pub value: f32,
    /// Mean brightness of the white pixels relative to the cloth next to the ball (0 without
    /// any): the cue ball's and the stripes' white is the frame's brightness reference.
    pub white_value: f32,
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

/// The cue stick over the table, in frame pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cue {
    /// The tip.
    pub tip: [f32; 2],
    /// Direction from the butt to the tip, degrees, `atan2(dy, dx)` (y down), in
    /// (-180, 180].
    pub angle_deg: f32,
    /// 0..1.
    pub confidence: f32,
}

/// The result of one frame.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FrameDetections {
    /// The table, when found.
    pub table: Option<Table>,
    /// The balls found on it.
    pub balls: Vec<Ball>,
    /// The cue stick over the table, when one is seen.
    pub cue: Option<Cue>,
    /// Whether the table was found (and held) or fixed by the configuration.
    pub table_source: TableSource,
}
