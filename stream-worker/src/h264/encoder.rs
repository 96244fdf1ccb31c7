//! One OpenH264 encoder: BGR frames in, length-prefixed (AVCC) samples and parameter sets out.
//!
//! Settings follow the live view's needs: constrained baseline (no B-frames, CAVLC: every
//! browser decodes it, cheaply), low complexity, single-threaded (it runs on the shared encoder
//! pool, which already has one thread per core), rate control at the requested bitrate with
//! frame skipping off (a skipped frame would stall every viewer), a keyframe at least every
//! `keyframe_frames`, and on demand.

use openh264::encoder::{
    BitRate, Complexity, Encoder, EncoderConfig, FrameRate, FrameType, IntraFramePeriod, Profile,
    RateControlMode, SpsPpsStrategy, UsageType, VuiConfig,
};
use openh264::OpenH264API;

use super::fmp4::{nal_type, strip_start_code};
use super::yuv::{ConvertError, I420};
use crate::frames::RawFrame;

/// How an encoder is set up.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EncoderSettings {
    /// Target bitrate in kbit/s.
    pub bitrate_kbps: u32,
    /// Nominal frame rate, for rate control.
    pub fps: f32,
    /// Frames between periodic keyframes (at least 1).
    pub keyframe_frames: u32,
}

/// Why a frame could not be encoded.
#[derive(Debug, thiserror::Error)]
pub enum H264Error {
    /// The frame could not be converted to I420.
    #[error("cannot convert frame {frame_number} to I420: {source}")]
    Convert {
        /// The frame.
        frame_number: u64,
        /// Why.
        source: ConvertError,
    },
    /// OpenH264 refused to start.
    #[error("cannot create the OpenH264 encoder: {0}")]
    Create(String),
    /// OpenH264 failed on a frame.
    #[error("openh264 failed to encode frame {frame_number} ({width}x{height}): {message}")]
    Encode {
        /// The frame.
        frame_number: u64,
        /// Width.
        width: u32,
        /// Height.
        height: u32,
        /// OpenH264's message.
        message: String,
    },
    /// A keyframe came without SPS/PPS (should not happen with OpenH264).
    #[error("frame {frame_number} is a keyframe without SPS/PPS; the stream cannot start there")]
    NoParameterSets {
        /// The frame.
        frame_number: u64,
    },
}

/// One encoded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Picture {
    /// An IDR frame: decoding can start here.
    pub keyframe: bool,
    /// SPS and PPS (without start codes), present with every keyframe.
    pub parameter_sets: Option<(Vec<u8>, Vec<u8>)>,
    /// The frame's other NAL units, each with a 4-byte big-endian length (AVCC).
    pub sample: Vec<u8>,
}

/// An OpenH264 encoder and its conversion buffer.
pub struct H264Encoder {
    encoder: Encoder,
    picture: I420,
}

impl std::fmt::Debug for H264Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H264Encoder")
            .field("size", &self.picture.size())
            .finish_non_exhaustive()
    }
}

impl H264Encoder {
    /// A new encoder; the frame size is taken from the first frame (and may change later: the
    /// encoder restarts with a keyframe).
    pub fn new(settings: EncoderSettings) -> Result<H264Encoder, H264Error> {
        let config = EncoderConfig::new()
            .profile(Profile::Baseline)
            .complexity(Complexity::Low)
            .usage_type(UsageType::CameraVideoRealTime)
            .rate_control_mode(RateControlMode::Bitrate)
            .bitrate(BitRate::from_bps(
                settings.bitrate_kbps.saturating_mul(1000),
            ))
            .max_frame_rate(FrameRate::from_hz(settings.fps.max(1.0)))
            .skip_frames(false)
            .intra_frame_period(IntraFramePeriod::from_num_frames(
                settings.keyframe_frames.max(1),
            ))
            .sps_pps_strategy(SpsPpsStrategy::ConstantId)
            .num_threads(1)
            // The converter writes BT.601 limited range; say so, so players invert the same matrix.
            .vui(VuiConfig::bt601());
        let encoder = Encoder::with_api_config(OpenH264API::from_source(), config)
            .map_err(|e| H264Error::Create(e.to_string()))?;
        Ok(H264Encoder {
            encoder,
            picture: I420::new(),
        })
    }

    /// Encodes `frame`; `force_keyframe` makes it an IDR frame. `None` when the encoder
    /// produced nothing for this frame.
    pub fn encode(
        &mut self,
        frame: &RawFrame,
        force_keyframe: bool,
    ) -> Result<Option<Picture>, H264Error> {
        self.picture
            .convert_bgr(&frame.data, frame.width, frame.height, frame.stride)
            .map_err(|source| H264Error::Convert {
                frame_number: frame.frame_number,
                source,
            })?;
        if force_keyframe {
            self.encoder.force_intra_frame();
        }
        let stream = self
            .encoder
            .encode(&self.picture)
            .map_err(|e| H264Error::Encode {
                frame_number: frame.frame_number,
                width: frame.width,
                height: frame.height,
                message: e.to_string(),
            })?;
        let keyframe = stream.frame_type() == FrameType::IDR;
        let (mut sps, mut pps) = (None, None);
        let mut sample = Vec::new();
        for l in 0..stream.num_layers() {
            let Some(layer) = stream.layer(l) else {
                continue;
            };
            for n in 0..layer.nal_count() {
                let Some(nal) = layer.nal_unit(n).map(strip_start_code) else {
                    continue;
                };
                match nal_type(nal) {
                    None => {}
                    Some(7) => sps = Some(nal.to_vec()),
                    Some(8) => pps = Some(nal.to_vec()),
                    Some(_) => {
                        sample.extend_from_slice(&(nal.len() as u32).to_be_bytes());
                        sample.extend_from_slice(nal);
                    }
                }
            }
        }
        if sample.is_empty() {
            return Ok(None);
        }
        let parameter_sets = sps.zip(pps);
        if keyframe && parameter_sets.is_none() {
            return Err(H264Error::NoParameterSets {
                frame_number: frame.frame_number,
            });
        }
        Ok(Some(Picture {
            keyframe,
            parameter_sets,
            sample,
        }))
    }
}
