//! The synthetic source: a billiards table seen from above (felt, cushions, wooden rails with
//! sights, six pockets) with the 16 standard balls rolling with friction, colliding and
//! bouncing off the cushions, rendered with simple shading, deterministic from a seed. In play
//! mode (`SceneStyle::play`) balls also fall into the pockets and shots are separated by a
//! still table, so shots and pocketings can be measured.
//!
//! Besides feeding `make run` on machines without a camera, it is the vision worker's test
//! bench: every render can return the [`GroundTruth`] (each ball's centre, radius, number and
//! kind, and the table corners, in frame pixels, with pixel centres at integer coordinates
//! as in OpenCV), and [`SceneStyle`] varies cloth colour, lighting, sensor noise, camera
//! tilt, and layouts with clusters and balls against cushions.
//!
//! Rendering is cheap: the background is drawn once per scene, and
//! [`Scene::render_incremental`] redraws only the rectangles where a ball moved since the
//! buffer was last drawn (each buffer, e.g. each shared-memory slot, has its
//! [`RenderCache`]). Nothing allocates per frame.
//!
//! ```
//! use billiards_video_worker::synthetic::{Scene, SceneParams, SceneStyle};
//! let mut scene = Scene::new(SceneParams::new(320, 180, 7)).unwrap();
//! scene.step(1.0 / 30.0);
//! let mut frame = vec![0u8; scene.frame_len()];
//! let truth = scene.render_into(&mut frame).unwrap();
//! assert_eq!(truth.balls.len(), 16);
//! ```

pub mod conditions;
mod draw;
mod physics;
mod rng;
mod style;
mod table;

use std::sync::atomic::{AtomicU64, Ordering};

use opencv::core::{Mat, Scalar, CV_8UC3};
use opencv::prelude::*;

pub use draw::{ball_color, CUE_WHITE};
pub use style::{cloth, rail, Layout, SceneStyle};
pub use table::{BALL_RADIUS_M, TABLE_LENGTH_M, TABLE_WIDTH_M};

use draw::{Canvas, Sprite};
use physics::{Table, BALLS};
use table::{Camera, Lighting};

/// What a scene is made from.
#[derive(Debug, Clone, PartialEq)]
pub struct SceneParams {
    /// Frame width in pixels.
    pub width: u32,
    /// Frame height in pixels.
    pub height: u32,
    /// Seed of the layout, the shots, the ball orientations and the noise.
    pub seed: u64,
    /// How the scene looks.
    pub style: SceneStyle,
}

impl SceneParams {
    /// A `width` x `height` scene with the default style.
    pub fn new(width: u32, height: u32, seed: u64) -> Self {
        SceneParams {
            width,
            height,
            seed,
            style: SceneStyle::default(),
        }
    }

    /// The same parameters with another style.
    pub fn with_style(self, style: SceneStyle) -> Self {
        SceneParams { style, ..self }
    }
}

/// The four kinds of ball the vision worker tells apart (names as in the detections JSON).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BallKind {
    /// The white cue ball (number 0 here).
    Cue,
    /// The black 8.
    Eight,
    /// 1..=7, one colour all over.
    Solid,
    /// 9..=15, a coloured band with white caps.
    Stripe,
}

impl BallKind {
    /// The kind of ball `number` (0 = cue); None above 15.
    pub fn of_number(number: u8) -> Option<BallKind> {
        match number {
            0 => Some(BallKind::Cue),
            8 => Some(BallKind::Eight),
            1..=7 => Some(BallKind::Solid),
            9..=15 => Some(BallKind::Stripe),
            _ => None,
        }
    }

    /// `cue`, `eight`, `solid` or `stripe`, as in the SPEC's detections JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            BallKind::Cue => "cue",
            BallKind::Eight => "eight",
            BallKind::Solid => "solid",
            BallKind::Stripe => "stripe",
        }
    }
}

/// One ball as drawn.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrueBall {
    /// Centre, frame pixels (pixel centres at integer coordinates).
    pub x: f32,
    /// Centre, frame pixels.
    pub y: f32,
    /// Radius of the drawn disc, pixels.
    pub radius: f32,
    /// 0 = cue ball, 1..=15.
    pub number: u8,
    /// Kind, derived from the number.
    pub kind: BallKind,
    /// Whether the ball is rolling (in the physics, so exactly).
    pub moving: bool,
}

/// What a frame shows.
///
/// A ball's number is also its stable id: the same physical ball has it in every frame, and
/// a ball that leaves the table through a pocket is listed in `pocketed` once and then
/// missing from `balls` (play mode) until the balls are laid out again.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct GroundTruth {
    /// The balls on the table, by number (the cue ball first): all 16 unless some are
    /// pocketed.
    pub balls: Vec<TrueBall>,
    /// Corners of the playing surface (the cushion noses) in frame pixels, in table order:
    /// (0, 0), (length, 0), (length, width), (0, width) — top-left, top-right, bottom-right,
    /// bottom-left when the camera is neither tilted nor rolled.
    pub table_corners: [[f32; 2]; 4],
    /// Numbers of the balls that fell into a pocket during the last [`Scene::step`], in order.
    pub pocketed: Vec<u8>,
    /// Whether any ball rolls. A shot (SPEC rule) starts at the first moving frame after a
    /// still one and ends when the table has been still for 0.5 s; in play mode the table is
    /// still for 0.6-3 s between shots.
    pub moving: bool,
    /// Which layout of the balls this is (from 1): when it changes, every ball was put
    /// somewhere new at once (a new rack), so ids need not carry over.
    pub layout: u64,
}

/// Why a scene could not be made.
#[derive(Debug, thiserror::Error)]
pub enum SceneError {
    /// Width or height out of range.
    #[error(
        "synthetic scene: frame size {width}x{height} is not supported: width must be 16..=7680 \
         and height 16..=4320"
    )]
    Size {
        /// Asked width.
        width: u32,
        /// Asked height.
        height: u32,
    },
    /// A style knob out of range.
    #[error("synthetic scene: style.{field} = {value}: {rule}")]
    Style {
        /// The knob.
        field: &'static str,
        /// Its value.
        value: f32,
        /// What is wrong.
        rule: &'static str,
    },
    /// The camera pose cannot be computed (degenerate view).
    #[error(
        "synthetic scene: the camera pose of this style is degenerate; use a smaller tilt_deg"
    )]
    Camera,
}

/// Why a frame could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// The buffer does not hold exactly one frame.
    #[error(
        "synthetic scene: frame buffer holds {actual} bytes but a {width}x{height} BGR8 frame \
         needs exactly {expected}"
    )]
    BufferSize {
        /// Bytes needed.
        expected: usize,
        /// Bytes given.
        actual: usize,
        /// Frame width.
        width: u32,
        /// Frame height.
        height: u32,
    },
    /// OpenCV refused to (re)allocate the matrix.
    #[error("synthetic scene: cannot prepare the OpenCV matrix: {0}")]
    Mat(#[from] opencv::Error),
}

/// What one buffer currently shows, so [`Scene::render_incremental`] can redraw only what
/// changed. Keep one per buffer (e.g. per shared-memory slot); a new cache makes the first
/// render a full one.
#[derive(Debug, Clone)]
pub struct RenderCache {
    scene_id: u64,
    valid: bool,
    drawn: [Sprite; BALLS],
}

impl Default for RenderCache {
    fn default() -> Self {
        RenderCache::new()
    }
}

impl RenderCache {
    /// A cache that knows nothing about its buffer.
    pub fn new() -> Self {
        RenderCache {
            scene_id: 0,
            valid: false,
            drawn: [Sprite::default(); BALLS],
        }
    }

    /// Forget what the buffer shows (e.g. someone else wrote to it).
    pub fn invalidate(&mut self) {
        self.valid = false;
    }
}

static NEXT_SCENE_ID: AtomicU64 = AtomicU64::new(1);

/// Length of the noise table: not a power of two, so the pattern does not line up with rows.
const NOISE_LEN: usize = 1_048_573;

/// A synthetic table: state, camera and cached background.
pub struct Scene {
    id: u64,
    params: SceneParams,
    cam: Camera,
    light: Lighting,
    bg: Vec<u8>,
    noise: Vec<i8>,
    table: Table,
    steps: u64,
    time: f64,
    sprites: [Sprite; BALLS],
    /// Balls pocketed during the last step.
    pocketed: Vec<u8>,
}

impl std::fmt::Debug for Scene {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scene")
            .field("params", &self.params)
            .field("time", &self.time)
            .field("steps", &self.steps)
            .finish_non_exhaustive()
    }
}

impl Scene {
    /// Lays out the table and renders the background (the only expensive part: tens of
    /// milliseconds at 720p in a release build).
    pub fn new(params: SceneParams) -> Result<Scene, SceneError> {
        let (w, h) = (params.width, params.height);
        if !(16..=7680).contains(&w) || !(16..=4320).contains(&h) {
            return Err(SceneError::Size {
                width: w,
                height: h,
            });
        }
        params
            .style
            .check()
            .map_err(|(field, value, rule)| SceneError::Style { field, value, rule })?;
        let cam = Camera::new(w, h, &params.style).ok_or(SceneError::Camera)?;
        let light = Lighting::new(w, h, &params.style);
        let bg = table::render_background(w, h, &cam, &light, &params.style, params.seed);
        let noise = if params.style.noise > 0.0 {
            let mut r = rng::Rng::new(params.seed, 0x0015E);
            let sigma = params.style.noise as f64;
            (0..NOISE_LEN)
                .map(|_| (r.gauss() * sigma).round().clamp(-127.0, 127.0) as i8)
                .collect()
        } else {
            Vec::new()
        };
        let table = Table::new(params.seed, &params.style);
        let mut scene = Scene {
            id: NEXT_SCENE_ID.fetch_add(1, Ordering::Relaxed),
            params,
            cam,
            light,
            bg,
            noise,
            table,
            steps: 0,
            time: 0.0,
            sprites: [Sprite::default(); BALLS],
            pocketed: Vec::with_capacity(BALLS),
        };
        scene.update_sprites();
        Ok(scene)
    }

    /// The parameters the scene was made from.
    pub fn params(&self) -> &SceneParams {
        &self.params
    }

    /// Frame width in pixels.
    pub fn width(&self) -> u32 {
        self.params.width
    }

    /// Frame height in pixels.
    pub fn height(&self) -> u32 {
        self.params.height
    }

    /// Bytes of one BGR8 frame: width * height * 3.
    pub fn frame_len(&self) -> usize {
        self.params.width as usize * self.params.height as usize * 3
    }

    /// Simulated seconds since the scene was made.
    pub fn time(&self) -> f64 {
        self.time
    }

    /// True while some ball is moving.
    pub fn is_moving(&self) -> bool {
        self.table.moving()
    }

    /// Advances the simulation by `dt` seconds (fixed 1 ms substeps inside, so the result
    /// depends only on the seed and the sequence of `dt`s). Non-finite or negative `dt` is
    /// ignored; more than 10 s at once is cut to 10 s.
    pub fn step(&mut self, dt: f64) {
        if !dt.is_finite() || dt <= 0.0 {
            return;
        }
        let dt = dt.min(10.0);
        self.table.step(dt);
        self.table.take_pocketed(&mut self.pocketed);
        self.time += dt;
        self.steps += 1;
        self.update_sprites();
    }

    fn update_sprites(&mut self) {
        let (w, h) = (self.params.width, self.params.height);
        for (s, b) in self.sprites.iter_mut().zip(self.table.balls.iter()) {
            *s = Sprite::new(b, &self.cam, &self.light, w, h);
        }
    }

    fn check_len(&self, buf: &[u8]) -> Result<(), RenderError> {
        if buf.len() != self.frame_len() {
            return Err(RenderError::BufferSize {
                expected: self.frame_len(),
                actual: buf.len(),
                width: self.params.width,
                height: self.params.height,
            });
        }
        Ok(())
    }

    fn canvas<'a>(&self, buf: &'a mut [u8]) -> Canvas<'a> {
        Canvas {
            buf,
            width: self.params.width as usize,
            height: self.params.height as usize,
        }
    }

    fn noise_offset(&self) -> usize {
        (rng::mix(self.params.seed ^ self.steps.wrapping_mul(0x9E37_79B9)) % NOISE_LEN as u64)
            as usize
    }

    /// Draws the current frame into `buf` (BGR8, rows packed, exactly [`Scene::frame_len`]
    /// bytes) from scratch and returns what it shows.
    pub fn render_into(&self, buf: &mut [u8]) -> Result<GroundTruth, RenderError> {
        self.check_len(buf)?;
        let mut canvas = self.canvas(buf);
        canvas.full_render(&self.bg, &self.sprites);
        canvas.add_noise(&self.noise, self.noise_offset());
        Ok(self.ground_truth())
    }

    /// Like [`Scene::render_into`], into an OpenCV matrix that is (re)allocated as a
    /// `height` x `width` CV_8UC3 matrix when it is not one already.
    pub fn render_mat(&self, mat: &mut Mat) -> Result<GroundTruth, RenderError> {
        let (w, h) = (self.params.width as i32, self.params.height as i32);
        if mat.rows() != h || mat.cols() != w || mat.typ() != CV_8UC3 || !mat.is_continuous() {
            *mat = Mat::new_rows_cols_with_default(h, w, CV_8UC3, Scalar::all(0.0))?;
        }
        let bytes = mat.data_bytes_mut()?;
        self.render_into(bytes)
    }

    /// Brings `buf` up to the current frame, redrawing only the regions where a ball moved
    /// since this buffer was last drawn through `cache`. The result is byte-identical to
    /// [`Scene::render_into`]. With sensor noise every pixel changes, so it draws the whole
    /// frame. Does not allocate.
    pub fn render_incremental(
        &self,
        buf: &mut [u8],
        cache: &mut RenderCache,
    ) -> Result<(), RenderError> {
        self.check_len(buf)?;
        let noisy = !self.noise.is_empty();
        let offset = self.noise_offset();
        let mut canvas = self.canvas(buf);
        if noisy || !cache.valid || cache.scene_id != self.id {
            canvas.full_render(&self.bg, &self.sprites);
            canvas.add_noise(&self.noise, offset);
        } else {
            canvas.damage_render(&self.bg, &cache.drawn, &self.sprites);
        }
        cache.scene_id = self.id;
        cache.valid = !noisy;
        cache.drawn = self.sprites;
        Ok(())
    }

    /// What the current frame shows.
    pub fn ground_truth(&self) -> GroundTruth {
        let mut gt = GroundTruth {
            balls: Vec::with_capacity(BALLS),
            table_corners: [[0.0; 2]; 4],
            pocketed: Vec::new(),
            moving: false,
            layout: 0,
        };
        self.ground_truth_into(&mut gt);
        gt
    }

    /// Like [`Scene::ground_truth`], reusing `out`'s allocation.
    pub fn ground_truth_into(&self, out: &mut GroundTruth) {
        out.balls.clear();
        out.balls.extend(
            self.sprites
                .iter()
                .zip(self.table.balls.iter())
                .filter(|(_, b)| !b.pocketed)
                .map(|(s, b)| TrueBall {
                    x: s.cx,
                    y: s.cy,
                    radius: s.r,
                    number: s.number,
                    kind: BallKind::of_number(s.number).unwrap_or(BallKind::Solid),
                    moving: b.v != [0.0, 0.0],
                }),
        );
        out.table_corners = self.table_corners();
        out.pocketed.clear();
        out.pocketed.extend_from_slice(&self.pocketed);
        out.moving = self.table.moving();
        out.layout = self.table.layouts;
    }

    /// Corners of the playing surface in frame pixels (see [`GroundTruth::table_corners`]).
    pub fn table_corners(&self) -> [[f32; 2]; 4] {
        let (l, w) = (TABLE_LENGTH_M, TABLE_WIDTH_M);
        [(0.0, 0.0), (l, 0.0), (l, w), (0.0, w)].map(|(x, y)| {
            let (u, v) = self.cam.to_image.apply(x, y);
            [u as f32, v as f32]
        })
    }
}

#[cfg(test)]
mod tests;
