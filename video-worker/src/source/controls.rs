//! The camera settings of `[video.camera]` (and the size and rate of `[video]`) as the list
//! of OpenCV `CAP_PROP_*` values to set, in the order a V4L2 driver needs them: the format
//! before the size, and each "auto" switch before the manual value it unlocks.

use config::{CameraFormat, VideoConfig};
use opencv::videoio;

/// V4L2's `exposure_auto` menu as OpenCV's V4L2 backend passes it through: manual.
pub(crate) const V4L2_EXPOSURE_MANUAL: f64 = 1.0;
/// V4L2's `exposure_auto` menu: aperture priority, the automatic mode UVC cameras offer.
pub(crate) const V4L2_EXPOSURE_APERTURE_PRIORITY: f64 = 3.0;

/// One property to set on the capture.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Control {
    /// `videoio::CAP_PROP_*`.
    pub(crate) prop: i32,
    /// The value asked.
    pub(crate) value: f64,
    /// How it is named in the log.
    pub(crate) name: &'static str,
}

/// The FOURCC code of four ASCII characters, as OpenCV's `VideoWriter::fourcc` computes it.
pub(crate) fn fourcc(code: &[u8; 4]) -> f64 {
    u32::from_le_bytes(*code) as f64
}

/// Every property to set on a freshly opened camera, in order.
pub(crate) fn camera_controls(v: &VideoConfig) -> Vec<Control> {
    let c = &v.camera;
    let mut out = Vec::with_capacity(12);
    let mut push = |prop, value: f64, name| out.push(Control { prop, value, name });
    match c.format {
        CameraFormat::Mjpg => push(videoio::CAP_PROP_FOURCC, fourcc(b"MJPG"), "format"),
        CameraFormat::Yuyv => push(videoio::CAP_PROP_FOURCC, fourcc(b"YUYV"), "format"),
        CameraFormat::Any => {}
    }
    push(videoio::CAP_PROP_FRAME_WIDTH, v.width as f64, "width");
    push(videoio::CAP_PROP_FRAME_HEIGHT, v.height as f64, "height");
    push(videoio::CAP_PROP_FPS, v.fps as f64, "fps");
    push(videoio::CAP_PROP_BUFFERSIZE, c.buffers as f64, "buffers");
    if c.auto_exposure {
        push(
            videoio::CAP_PROP_AUTO_EXPOSURE,
            V4L2_EXPOSURE_APERTURE_PRIORITY,
            "auto_exposure",
        );
    } else {
        push(
            videoio::CAP_PROP_AUTO_EXPOSURE,
            V4L2_EXPOSURE_MANUAL,
            "auto_exposure",
        );
        push(videoio::CAP_PROP_EXPOSURE, c.exposure as f64, "exposure");
    }
    // Controls persist in the driver across opens: "auto" is set explicitly so that a
    // manual value left by an earlier run (or another program) does not stick.
    push(
        videoio::CAP_PROP_AUTO_WB,
        if c.auto_white_balance { 1.0 } else { 0.0 },
        "auto_white_balance",
    );
    if !c.auto_white_balance {
        push(
            videoio::CAP_PROP_WB_TEMPERATURE,
            c.white_balance_k as f64,
            "white_balance_k",
        );
    }
    if c.gain >= 0 {
        push(videoio::CAP_PROP_GAIN, c.gain as f64, "gain");
    }
    if c.focus >= 0 {
        push(videoio::CAP_PROP_AUTOFOCUS, 0.0, "autofocus");
        push(videoio::CAP_PROP_FOCUS, c.focus as f64, "focus");
    } else {
        push(videoio::CAP_PROP_AUTOFOCUS, 1.0, "autofocus");
    }
    out
}

/// A property's value for the log: the FOURCC as text, integers without a fraction.
pub(crate) fn show(prop: i32, value: f64) -> String {
    if prop == videoio::CAP_PROP_FOURCC {
        let n = value as u32;
        if n == 0 {
            return "none".into();
        }
        return n
            .to_le_bytes()
            .iter()
            .map(|&b| if b.is_ascii_graphic() { b as char } else { '?' })
            .collect();
    }
    if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{}", value as i64)
    } else {
        format!("{value}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use config::{CameraConfig, Config};

    fn names_values(v: &VideoConfig) -> Vec<(&'static str, String)> {
        camera_controls(v)
            .iter()
            .map(|c| (c.name, show(c.prop, c.value)))
            .collect()
    }

    #[test]
    fn defaults_ask_mjpg_one_buffer_and_every_auto_mode() {
        let v = Config::default().video;
        let got = names_values(&v);
        let want: Vec<(&str, String)> = [
            ("format", "MJPG"),
            ("width", "1280"),
            ("height", "720"),
            ("fps", "30"),
            ("buffers", "1"),
            ("auto_exposure", "3"),
            ("auto_white_balance", "1"),
            ("autofocus", "1"),
        ]
        .iter()
        .map(|(n, v)| (*n, v.to_string()))
        .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn manual_settings_switch_auto_off_before_their_value() {
        let mut v = Config::default().video;
        v.camera = CameraConfig {
            format: config::CameraFormat::Yuyv,
            buffers: 3,
            auto_exposure: false,
            exposure: 157,
            auto_white_balance: false,
            white_balance_k: 5200,
            gain: 0,
            focus: 30,
        };
        let controls = camera_controls(&v);
        let got = names_values(&v);
        assert_eq!(got[0], ("format", "YUYV".to_string()));
        let pos = |name: &str| got.iter().position(|(n, _)| *n == name).unwrap();
        assert_eq!(got[pos("auto_exposure")].1, "1");
        assert_eq!(got[pos("exposure")].1, "157");
        assert!(pos("auto_exposure") < pos("exposure"));
        assert_eq!(got[pos("auto_white_balance")].1, "0");
        assert_eq!(got[pos("white_balance_k")].1, "5200");
        assert!(pos("auto_white_balance") < pos("white_balance_k"));
        assert_eq!(got[pos("gain")].1, "0");
        assert_eq!(got[pos("autofocus")].1, "0");
        assert_eq!(got[pos("focus")].1, "30");
        assert!(pos("autofocus") < pos("focus"));
        assert_eq!(got[pos("buffers")].1, "3");
        let prop_of = |name: &str| controls.iter().find(|c| c.name == name).unwrap().prop;
        assert_eq!(prop_of("exposure"), videoio::CAP_PROP_EXPOSURE);
        assert_eq!(prop_of("white_balance_k"), videoio::CAP_PROP_WB_TEMPERATURE);
        assert_eq!(prop_of("buffers"), videoio::CAP_PROP_BUFFERSIZE);
        assert_eq!(prop_of("gain"), videoio::CAP_PROP_GAIN);
        assert_eq!(prop_of("focus"), videoio::CAP_PROP_FOCUS);
    }

    #[test]
    fn any_format_sets_no_fourcc_and_unset_gain_is_left_alone() {
        let mut v = Config::default().video;
        v.camera.format = config::CameraFormat::Any;
        let controls = camera_controls(&v);
        assert!(controls
            .iter()
            .all(|c| c.prop != videoio::CAP_PROP_FOURCC && c.prop != videoio::CAP_PROP_GAIN));
        assert!(controls
            .iter()
            .all(|c| c.prop != videoio::CAP_PROP_EXPOSURE));
    }

    #[test]
    fn fourcc_matches_opencv() {
        let cv = videoio::VideoWriter::fourcc('M', 'J', 'P', 'G').unwrap();
        assert_eq!(fourcc(b"MJPG"), cv as f64);
        assert_eq!(show(videoio::CAP_PROP_FOURCC, fourcc(b"YUYV")), "YUYV");
        assert_eq!(show(videoio::CAP_PROP_FOURCC, 0.0), "none");
        assert_eq!(show(videoio::CAP_PROP_EXPOSURE, 12.5), "12.5");
    }
}
