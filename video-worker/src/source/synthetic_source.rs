//! The synthetic table as a paced source, rendered straight into the slots.

use std::sync::atomic::AtomicBool;

use config::{SourceConfig, VideoConfig};
use opencv::core::{Mat, Scalar, CV_8UC3};
use opencv::prelude::*;

use super::{FrameSource, Next};
use crate::calibration::Remapper;
use crate::pacing::{Pace, Pacer};
use crate::synthetic::{RenderCache, Scene, SceneParams, SceneStyle};
use crate::WorkerError;

/// Frames of lag replayed one by one; beyond this the scene jumps ahead in one step.
const MAX_REPLAY: u64 = 300;

pub(crate) struct SyntheticSource {
    scene: Scene,
    pacer: Pacer,
    dt: f64,
    first: bool,
    skipped: u64,
    /// What each slot (by address) shows, so only moved balls are redrawn. Slots live as
    /// long as the writer's mapping, which outlives this source's use.
    caches: Vec<(usize, RenderCache)>,
    /// `video.source.distortion`: the ideal render goes to `ideal`, and the lens is applied
    /// on the way into the slot.
    lens: Option<Lens>,
    description: String,
}

struct Lens {
    remap: Remapper,
    ideal: Mat,
}

impl SyntheticSource {
    pub(crate) fn new(v: &VideoConfig) -> Result<Self, WorkerError> {
        let started = std::time::Instant::now();
        // Play mode: shots separated by a still table, balls falling into pockets, as a game
        // looks (and what shot and pocket detection are measured on).
        let scene = Scene::new(
            SceneParams::new(v.width, v.height, v.source.seed)
                .with_style(SceneStyle::default().play()),
        )?;
        tracing::debug!(
            took_ms = started.elapsed().as_millis() as u64,
            "synthetic background rendered"
        );
        let lens = if v.source.distortion.is_empty() {
            None
        } else {
            let (w, h) = (v.width as i32, v.height as i32);
            let k = SourceConfig::synthetic_camera_matrix(v.width, v.height);
            let lens = Remapper::distort(&k, &v.source.distortion, w, h)
                .and_then(|remap| {
                    let ideal = Mat::new_rows_cols_with_default(h, w, CV_8UC3, Scalar::all(0.0))?;
                    Ok(Lens { remap, ideal })
                })
                .map_err(|e| WorkerError::Distortion(e.message))?;
            tracing::info!(
                distortion = ?v.source.distortion,
                camera_matrix = ?k,
                "synthetic frames pass through a distorting lens"
            );
            Some(lens)
        };
        Ok(SyntheticSource {
            scene,
            pacer: Pacer::new(v.fps as f64),
            dt: 1.0 / v.fps.max(1) as f64,
            first: true,
            skipped: 0,
            caches: Vec::with_capacity(v.slots as usize),
            description: format!(
                "synthetic table (seed {}, {}x{} @ {} fps{})",
                v.source.seed,
                v.width,
                v.height,
                v.fps,
                if lens.is_some() { ", distorted" } else { "" }
            ),
            lens,
        })
    }
}

impl FrameSource for SyntheticSource {
    fn describe(&self) -> &str {
        &self.description
    }

    fn identity(&self) -> (&'static str, &str) {
        ("synthetic source", &self.description)
    }

    fn next(&mut self, stop: &AtomicBool) -> Next {
        let skip = match self.pacer.wait(stop) {
            Pace::Stopped => return Next::Stopped,
            Pace::Due { skip } => skip,
        };
        // Frame 1 shows the initial layout; every later frame is one period later in
        // simulated time, also for the frames skipped because we lagged.
        if !self.first {
            if skip > MAX_REPLAY {
                self.scene.step(self.dt * skip as f64);
            } else {
                for _ in 0..skip {
                    self.scene.step(self.dt);
                }
            }
            self.scene.step(self.dt);
        }
        self.first = false;
        self.skipped += skip;
        Next::Frame {
            capture_ns: shm_core::monotonic_ns(),
        }
    }

    fn fill(&mut self, slot: &mut [u8]) -> Result<(), String> {
        let Some(mut lens) = self.lens.take() else {
            return self.render(slot);
        };
        let result = lens
            .ideal
            .data_bytes_mut()
            .map_err(|e| e.message)
            .and_then(|ideal| self.render(ideal))
            .and_then(|()| lens.remap.remap_into(&lens.ideal, slot));
        self.lens = Some(lens);
        result
    }

    fn take_skipped(&mut self) -> u64 {
        std::mem::take(&mut self.skipped)
    }
}

impl SyntheticSource {
    /// Renders the scene into `buf`, redrawing only what changed since `buf` last showed it.
    fn render(&mut self, slot: &mut [u8]) -> Result<(), String> {
        let key = slot.as_ptr() as usize;
        let idx = match self.caches.iter().position(|(k, _)| *k == key) {
            Some(i) => i,
            None => {
                self.caches.push((key, RenderCache::new()));
                self.caches.len() - 1
            }
        };
        let cache = &mut self.caches[idx].1;
        self.scene.render_incremental(slot, cache).map_err(|e| {
            cache.invalidate();
            e.to_string()
        })
    }
}
