//! The shared-memory segments of a tree, derived from the configuration in one place: the
//! frame segment (`video.shm_name`, sized by `video.width`/`height`/`slots`) and the
//! detections channel (`vision.detections_shm_name`, sized by the detections wire constants).
//! The supervisor creates them with these; the workers open and attach to them with these.

use config::Config;
use shm_core::{NameError, SegmentLocation, SegmentSpec};

/// Where a segment lives and its geometry.
#[derive(Debug, Clone)]
pub struct Segment {
    /// The segment's name and fallback directory.
    pub location: SegmentLocation,
    /// Its slot count and sizes.
    pub spec: SegmentSpec,
}

/// A segment name from the configuration is not usable.
#[derive(Debug, thiserror::Error)]
#[error("{key} = {name:?}: {source}")]
pub struct SegmentNameError {
    /// The configuration key.
    pub key: &'static str,
    /// Its value.
    pub name: String,
    /// What is wrong with it.
    pub source: NameError,
}

fn locate(
    config: &Config,
    key: &'static str,
    name: &str,
) -> Result<SegmentLocation, SegmentNameError> {
    SegmentLocation::new(name, config.shm_fallback_dir()).map_err(|source| SegmentNameError {
        key,
        name: name.to_owned(),
        source,
    })
}

/// The frame segment the video worker writes and the vision and stream workers read.
pub fn frames_segment(config: &Config) -> Result<Segment, SegmentNameError> {
    let v = &config.video;
    Ok(Segment {
        location: locate(config, "video.shm_name", &v.shm_name)?,
        spec: SegmentSpec::frames(v.width, v.height, v.slots),
    })
}

/// The detections channel the vision worker writes and the stream worker reads.
pub fn detections_channel(config: &Config) -> Result<Segment, SegmentNameError> {
    Ok(Segment {
        location: locate(
            config,
            "vision.detections_shm_name",
            &config.vision.detections_shm_name,
        )?,
        spec: SegmentSpec::bytes(
            billiards_detections::DETECTIONS_CAPACITY,
            billiards_detections::DETECTIONS_SLOTS,
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_names_and_sizes_come_from_the_configuration() {
        let mut c = Config::default();
        c.video.shm_name = "t_frames".into();
        c.vision.detections_shm_name = "t_det".into();
        let f = frames_segment(&c).expect("frames");
        assert_eq!(f.location.name(), "t_frames");
        assert_eq!(
            f.spec,
            SegmentSpec::frames(c.video.width, c.video.height, c.video.slots)
        );
        let d = detections_channel(&c).expect("detections");
        assert_eq!(d.location.name(), "t_det");
    }

    #[test]
    fn a_bad_name_names_its_key() {
        let mut c = Config::default();
        c.vision.detections_shm_name = String::new();
        let e = detections_channel(&c).expect_err("empty name");
        assert!(
            e.to_string()
                .starts_with("vision.detections_shm_name = \"\""),
            "{e}"
        );
    }
}
