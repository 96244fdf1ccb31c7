//! Lens calibration: the calibration file (OpenCV FileStorage, YAML or JSON, with
//! `camera_matrix`, `dist_coeffs`, `image_width` and `image_height`), the undistortion maps
//! built from it once at start, and the inverse maps the synthetic source uses to add a known
//! lens distortion.
//!
//! Maps are fixed-point (`CV_16SC2` + `CV_16UC1` interpolation table): `remap` with them is
//! the fastest form OpenCV offers, and the precision (1/32 pixel) is far below what the
//! detectors resolve. Where the CPU has AVX2 the frames are remapped by our own kernel
//! ([`remap`]), which gives OpenCV's result at a fraction of its cost; elsewhere by OpenCV.

use std::ffi::c_void;
use std::path::{Path, PathBuf};

use config::{CalibrationConfig, Framing, LensModel};
use opencv::core::{
    FileStorage, FileStorage_Mode, Mat, Point2f, Scalar, Size, TermCriteria, TermCriteria_Type,
    Vector, CV_16SC2, CV_32FC2, CV_64F, CV_8UC3,
};
use opencv::prelude::*;
use opencv::{calib3d, imgproc};

pub mod remap;

use remap::CompactMap;
pub use remap::Kernel;

/// The config key that names the calibration file, for error messages.
pub const FILE_KEY: &str = "video.calibration.file";

/// Why a calibration could not be loaded or used.
#[derive(Debug, thiserror::Error)]
pub enum CalibrationError {
    /// The file is missing, unreadable, or not FileStorage YAML/JSON.
    #[error("{FILE_KEY} = {file:?}: cannot read the calibration file: {why}")]
    Read {
        /// The file.
        file: PathBuf,
        /// What went wrong, in words.
        why: String,
    },
    /// A field is missing or has the wrong shape.
    #[error("{FILE_KEY} = {file:?}: {field}: {why}")]
    Field {
        /// The file.
        file: PathBuf,
        /// `camera_matrix`, `dist_coeffs`, `image_width`, `image_height` or `model`.
        field: &'static str,
        /// What is wrong and what is expected.
        why: String,
    },
    /// The calibration was made for frames of another size.
    #[error(
        "{FILE_KEY} = {file:?}: the calibration is for {cal_w}x{cal_h} images but the source \
         delivers {src_w}x{src_h} (video.width x video.height); calibrate at {src_w}x{src_h} \
         or set video.width = {cal_w} and video.height = {cal_h}"
    )]
    SizeMismatch {
        /// The file.
        file: PathBuf,
        /// Size in the file.
        cal_w: i32,
        /// Size in the file.
        cal_h: i32,
        /// Size of the frames to undistort.
        src_w: i32,
        /// Size of the frames to undistort.
        src_h: i32,
    },
    /// OpenCV could not build the maps (degenerate coefficients).
    #[error("{FILE_KEY} = {file:?}: cannot compute the undistortion maps: {why}")]
    Maps {
        /// The file.
        file: PathBuf,
        /// OpenCV's message.
        why: String,
    },
}

/// A camera calibration: intrinsics, distortion coefficients and the image size they hold
/// for.
#[derive(Debug, Clone, PartialEq)]
pub struct Calibration {
    /// Row-major 3x3 camera matrix `[fx, 0, cx, 0, fy, cy, 0, 0, 1]`.
    pub camera_matrix: [f64; 9],
    /// Distortion coefficients in OpenCV's order (pinhole: k1, k2, p1, p2[, k3, ...];
    /// fisheye: k1..k4).
    pub dist_coeffs: Vec<f64>,
    /// Image width the calibration holds for.
    pub image_width: i32,
    /// Image height the calibration holds for.
    pub image_height: i32,
    /// The lens model, when the file records it (files from `calibrate` do).
    pub model: Option<LensModel>,
}

/// Numbers of pinhole coefficients OpenCV accepts.
pub const PINHOLE_COEFF_COUNTS: [usize; 5] = [4, 5, 8, 12, 14];

fn cv(e: opencv::Error) -> String {
    e.message
}

/// A `rows` x `cols` CV_64F matrix holding `values` (row-major).
pub fn mat_f64(rows: i32, cols: i32, values: &[f64]) -> opencv::Result<Mat> {
    let mut m = Mat::new_rows_cols_with_default(rows, cols, CV_64F, Scalar::all(0.0))?;
    for (i, v) in values.iter().enumerate() {
        let (r, c) = (i as i32 / cols, i as i32 % cols);
        *m.at_2d_mut::<f64>(r, c)? = *v;
    }
    Ok(m)
}

/// The elements of a matrix of one channel as f64, row-major.
fn mat_values(m: &Mat) -> opencv::Result<Vec<f64>> {
    let mut f = Mat::default();
    m.convert_to(&mut f, CV_64F, 1.0, 0.0)?;
    let mut out = Vec::with_capacity(f.total());
    for r in 0..f.rows() {
        for c in 0..f.cols() {
            out.push(*f.at_2d::<f64>(r, c)?);
        }
    }
    Ok(out)
}

impl Calibration {
    /// The camera matrix as a CV_64F Mat.
    pub fn k(&self) -> opencv::Result<Mat> {
        mat_f64(3, 3, &self.camera_matrix)
    }

    /// The coefficients as a 1xN CV_64F Mat.
    pub fn d(&self) -> opencv::Result<Mat> {
        mat_f64(1, self.dist_coeffs.len() as i32, &self.dist_coeffs)
    }

    /// Reads a calibration file. Every error names the file and [`FILE_KEY`].
    pub fn load(path: &Path) -> Result<Calibration, CalibrationError> {
        let file = path.to_path_buf();
        let read = |why: String| CalibrationError::Read {
            file: file.clone(),
            why,
        };
        match std::fs::metadata(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(read("no such file".into()))
            }
            Err(e) => return Err(read(e.to_string().to_lowercase())),
            Ok(m) if m.is_dir() => return Err(read("is a directory".into())),
            Ok(_) => {}
        }
        let name = path
            .to_str()
            .ok_or_else(|| read("the path is not valid UTF-8".into()))?;
        // OpenCV throws on a file that is not YAML/JSON/XML; its message is long but says where.
        let fs = FileStorage::new(name, FileStorage_Mode::READ as i32, "").map_err(|e| {
            read(format!(
                "not an OpenCV FileStorage YAML/JSON file ({})",
                e.message
            ))
        })?;
        if !fs.is_opened().unwrap_or(false) {
            return Err(read("not an OpenCV FileStorage YAML/JSON file".into()));
        }
        let field = |field: &'static str, why: String| CalibrationError::Field {
            file: file.clone(),
            field,
            why,
        };
        let node = |name: &'static str| -> Result<opencv::core::FileNode, CalibrationError> {
            let n = fs.get(name).map_err(|e| field(name, cv(e)))?;
            if n.is_none().unwrap_or(true) || n.empty().unwrap_or(true) {
                return Err(field(name, "missing".into()));
            }
            Ok(n)
        };
        let read_mat = |name: &'static str| -> Result<Vec<f64>, CalibrationError> {
            let m = node(name)?
                .mat()
                .map_err(|e| field(name, format!("not a matrix ({})", e.message)))?;
            if m.empty() || m.channels() != 1 {
                return Err(field(
                    name,
                    "not a one-channel matrix (!!opencv-matrix)".into(),
                ));
            }
            if name == "camera_matrix" && (m.rows() != 3 || m.cols() != 3) {
                return Err(field(
                    name,
                    format!("must be 3x3, is {}x{}", m.rows(), m.cols()),
                ));
            }
            if name == "dist_coeffs" && m.rows() != 1 && m.cols() != 1 {
                return Err(field(
                    name,
                    format!("must be one row or column, is {}x{}", m.rows(), m.cols()),
                ));
            }
            let v = mat_values(&m).map_err(|e| field(name, cv(e)))?;
            if v.iter().any(|x| !x.is_finite()) {
                return Err(field(
                    name,
                    "holds a value that is not a finite number".into(),
                ));
            }
            Ok(v)
        };
        let read_int = |name: &'static str| -> Result<i32, CalibrationError> {
            let n = node(name)?;
            if !(n.is_int().unwrap_or(false) || n.is_real().unwrap_or(false)) {
                return Err(field(name, "must be a whole number of pixels".into()));
            }
            let v = n.real().map_err(|e| field(name, cv(e)))?;
            if v.fract() != 0.0 || !(1.0..=100_000.0).contains(&v) {
                return Err(field(
                    name,
                    format!("must be a whole number of pixels, is {v}"),
                ));
            }
            Ok(v as i32)
        };
        let k = read_mat("camera_matrix")?;
        let d = read_mat("dist_coeffs")?;
        let image_width = read_int("image_width")?;
        let image_height = read_int("image_height")?;
        let model = match fs.get("model") {
            Ok(n) if n.is_string().unwrap_or(false) => {
                match n.to_string().unwrap_or_default().as_str() {
                    "pinhole" => Some(LensModel::Pinhole),
                    "fisheye" => Some(LensModel::Fisheye),
                    other => {
                        return Err(field(
                            "model",
                            format!("{other:?} is neither \"pinhole\" nor \"fisheye\""),
                        ))
                    }
                }
            }
            _ => None,
        };
        let mut camera_matrix = [0.0; 9];
        camera_matrix.copy_from_slice(&k);
        let (fx, fy) = (camera_matrix[0], camera_matrix[4]);
        if fx <= 0.0 || fy <= 0.0 || camera_matrix[8] != 1.0 {
            return Err(field(
                "camera_matrix",
                format!(
                    "not a camera matrix: needs fx > 0, fy > 0 and a last element of 1 \
                     (fx = {fx}, fy = {fy}, last = {})",
                    camera_matrix[8]
                ),
            ));
        }
        Ok(Calibration {
            camera_matrix,
            dist_coeffs: d,
            image_width,
            image_height,
            model,
        })
    }

    /// Writes the calibration as FileStorage (YAML for `.yaml`/`.yml`, JSON for `.json`),
    /// with `extra` string fields (e.g. the RMS error and the board) after the four the
    /// worker reads.
    pub fn save(&self, path: &Path, extra: &[(&str, String)]) -> Result<(), String> {
        let name = path
            .to_str()
            .ok_or_else(|| format!("{}: the path is not valid UTF-8", path.display()))?;
        let mut fs = FileStorage::new(name, FileStorage_Mode::WRITE as i32, "")
            .map_err(|e| format!("{name}: cannot write it: {}", e.message))?;
        if !fs.is_opened().unwrap_or(false) {
            return Err(format!("{name}: cannot write it"));
        }
        let k = self.k().map_err(cv)?;
        let d = self.d().map_err(cv)?;
        let w = |r: opencv::Result<()>| {
            r.map_err(|e| format!("{name}: cannot write it: {}", e.message))
        };
        w(opencv::core::write_mat(&mut fs, "camera_matrix", &k))?;
        w(opencv::core::write_mat(&mut fs, "dist_coeffs", &d))?;
        w(opencv::core::write_i32(
            &mut fs,
            "image_width",
            self.image_width,
        ))?;
        w(opencv::core::write_i32(
            &mut fs,
            "image_height",
            self.image_height,
        ))?;
        if let Some(m) = self.model {
            w(opencv::core::write_str(&mut fs, "model", &m.to_string()))?;
        }
        for (key, value) in extra {
            w(opencv::core::write_str(&mut fs, key, value))?;
        }
        w(fs.release())
    }

    /// Checks the coefficient count against `model` and the image size against the frames.
    pub fn check(
        &self,
        file: &Path,
        model: LensModel,
        width: i32,
        height: i32,
    ) -> Result<(), CalibrationError> {
        let n = self.dist_coeffs.len();
        let field = |field: &'static str, why: String| CalibrationError::Field {
            file: file.to_path_buf(),
            field,
            why,
        };
        if let Some(m) = self.model {
            if m != model {
                return Err(field(
                    "model",
                    format!(
                        "the file was computed for the {m} model but video.calibration.model = \
                         \"{model}\"; set video.calibration.model = \"{m}\""
                    ),
                ));
            }
        }
        match model {
            LensModel::Pinhole if !PINHOLE_COEFF_COUNTS.contains(&n) => {
                return Err(field(
                    "dist_coeffs",
                    format!(
                        "holds {n} values; the pinhole model takes 4, 5, 8, 12 or 14 \
                         (video.calibration.model = \"pinhole\")"
                    ),
                ))
            }
            LensModel::Fisheye if n != 4 => {
                return Err(field(
                    "dist_coeffs",
                    format!(
                        "holds {n} values; the fisheye model takes 4 (video.calibration.model \
                         = \"fisheye\")"
                    ),
                ))
            }
            _ => {}
        }
        if (self.image_width, self.image_height) != (width, height) {
            return Err(CalibrationError::SizeMismatch {
                file: file.to_path_buf(),
                cal_w: self.image_width,
                cal_h: self.image_height,
                src_w: width,
                src_h: height,
            });
        }
        Ok(())
    }
}

/// A precomputed remap: for each output pixel, where to sample the input.
pub struct Remapper {
    map1: Mat,
    map2: Mat,
    width: i32,
    height: i32,
    /// One matrix header per destination address (the slots), created once.
    dst_headers: Vec<(usize, Mat)>,
    /// The kernel [`Remapper::remap_into`] runs.
    kernel: Kernel,
    /// The maps for [`Kernel::Avx2`], built when that kernel is chosen.
    compact: Option<CompactMap>,
    /// Threads [`Kernel::Avx2`] runs on (1 or 2).
    threads: usize,
}

impl std::fmt::Debug for Remapper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Remapper({}x{}, {})",
            self.width, self.height, self.kernel
        )
    }
}

/// The camera matrix the undistorted frames are rendered with, per `framing`.
pub fn new_camera_matrix(
    cal: &Calibration,
    model: LensModel,
    framing: Framing,
) -> opencv::Result<Mat> {
    let k = cal.k()?;
    let d = cal.d()?;
    let size = Size::new(cal.image_width, cal.image_height);
    let alpha = match framing {
        Framing::Same => return Ok(k),
        Framing::All => 1.0,
        Framing::Valid => 0.0,
    };
    match model {
        LensModel::Pinhole => {
            calib3d::get_optimal_new_camera_matrix(&k, &d, size, alpha, size, None, false)
        }
        LensModel::Fisheye => {
            // balance 1 keeps every pixel, 0 shows only valid ones: the fisheye form of alpha.
            let mut p = Mat::default();
            // cv::fisheye::estimateNewCameraMatrixForUndistortRectify
            calib3d::estimate_new_camera_matrix_for_undistort_rectify(
                &k,
                &d,
                size,
                &Mat::default(),
                &mut p,
                alpha,
                size,
                1.0,
            )?;
            Ok(p)
        }
    }
}

impl Remapper {
    /// The undistortion maps of `cal` for `config.model` and `config.framing`.
    pub fn undistort(
        cal: &Calibration,
        config: &CalibrationConfig,
    ) -> Result<Remapper, CalibrationError> {
        let maps = || -> opencv::Result<(Mat, Mat)> {
            let k = cal.k()?;
            let d = cal.d()?;
            let p = new_camera_matrix(cal, config.model, config.framing)?;
            let size = Size::new(cal.image_width, cal.image_height);
            let (mut map1, mut map2) = (Mat::default(), Mat::default());
            match config.model {
                LensModel::Pinhole => calib3d::init_undistort_rectify_map(
                    &k,
                    &d,
                    &Mat::default(),
                    &p,
                    size,
                    CV_16SC2,
                    &mut map1,
                    &mut map2,
                )?,
                LensModel::Fisheye => calib3d::fisheye_init_undistort_rectify_map(
                    &k,
                    &d,
                    &Mat::default(),
                    &p,
                    size,
                    CV_16SC2,
                    &mut map1,
                    &mut map2,
                )?,
            }
            Ok((map1, map2))
        };
        let (map1, map2) = maps().map_err(|e| CalibrationError::Maps {
            file: PathBuf::from(&config.file),
            why: e.message,
        })?;
        Ok(Remapper::from_maps(
            map1,
            map2,
            cal.image_width,
            cal.image_height,
        ))
    }

    /// The maps that add pinhole distortion `dist` through camera matrix `k` to an ideal
    /// `width` x `height` frame: each output (distorted) pixel samples the ideal frame at its
    /// undistorted position, found with OpenCV's iterative `undistortPoints`.
    pub fn distort(
        k: &[f64; 9],
        dist: &[f64],
        width: i32,
        height: i32,
    ) -> opencv::Result<Remapper> {
        let kmat = mat_f64(3, 3, k)?;
        let dmat = mat_f64(1, dist.len() as i32, dist)?;
        let mut pts = Vector::<Point2f>::with_capacity((width * height) as usize);
        for y in 0..height {
            for x in 0..width {
                pts.push(Point2f::new(x as f32, y as f32));
            }
        }
        let mut ideal = Vector::<Point2f>::new();
        let criteria = TermCriteria::new(
            TermCriteria_Type::COUNT as i32 + TermCriteria_Type::EPS as i32,
            40,
            1e-6,
        )?;
        calib3d::undistort_points_iter(
            &pts,
            &mut ideal,
            &kmat,
            &dmat,
            &Mat::default(),
            &kmat,
            criteria,
        )?;
        let flat = Mat::from_exact_iter(ideal.iter())?;
        let map = flat.reshape(2, height)?.try_clone()?;
        debug_assert_eq!(map.typ(), CV_32FC2);
        let (mut map1, mut map2) = (Mat::default(), Mat::default());
        imgproc::convert_maps(&map, &Mat::default(), &mut map1, &mut map2, CV_16SC2, false)?;
        Ok(Remapper::from_maps(map1, map2, width, height))
    }

    fn from_maps(map1: Mat, map2: Mat, width: i32, height: i32) -> Remapper {
        let mut r = Remapper {
            map1,
            map2,
            width,
            height,
            dst_headers: Vec::new(),
            kernel: Kernel::OpenCv,
            compact: None,
            // One thread meets the wall-time goals (2 ms at 720p, 4 ms at 1080p); a second
            // would only cost CPU, which matters more on the product's two cores.
            threads: 1,
        };
        let best = Kernel::detect();
        if let Err(why) = r.set_kernel(best) {
            // Only frames our kernel does not take (under 3x2, over 32767 wide) get here:
            // OpenCV serves them.
            tracing::debug!(kernel = %best, "remap kernel not used: {why}");
        }
        r
    }

    /// The kernel [`Remapper::remap_into`] runs: [`Kernel::detect`]'s choice unless set.
    pub fn kernel(&self) -> Kernel {
        self.kernel
    }

    /// Threads [`Kernel::Avx2`] runs on: 1 unless set.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Sets the threads [`Kernel::Avx2`] runs on: 1, or 2 (the caller's and one more, started
    /// per frame). OpenCV's kernel keeps OpenCV's own thread pool.
    pub fn set_threads(&mut self, threads: usize) {
        self.threads = threads.clamp(1, 2);
    }

    /// Chooses the kernel (e.g. to compare them, or to force OpenCV's). Errs, keeping the
    /// current kernel, when this CPU cannot run it or the frame size does not suit it.
    pub fn set_kernel(&mut self, kernel: Kernel) -> Result<(), String> {
        if !kernel.available() {
            return Err(format!(
                "the {kernel} remap kernel cannot run on this CPU (it needs AVX2)"
            ));
        }
        if kernel == Kernel::Avx2 && self.compact.is_none() {
            self.compact = Some(self.compact_map()?);
        }
        self.kernel = kernel;
        Ok(())
    }

    /// OpenCV's fixed-point maps in the form of our kernel.
    fn compact_map(&self) -> Result<CompactMap, String> {
        let n = self.width as usize * self.height as usize;
        let bytes = |m: &Mat, what: &str| -> Result<Vec<u8>, String> {
            if m.empty() {
                return Ok(Vec::new());
            }
            let b = m
                .data_bytes()
                .map_err(|e| format!("cannot read the {what} map: {}", e.message))?;
            Ok(b.to_vec())
        };
        let xy_bytes = bytes(&self.map1, "coordinate")?;
        let idx_bytes = bytes(&self.map2, "interpolation")?;
        if self.map1.typ() != CV_16SC2 || xy_bytes.len() != n * 4 {
            return Err(format!(
                "the coordinate map is not {}x{} CV_16SC2",
                self.width, self.height
            ));
        }
        let xy: Vec<[i16; 2]> = xy_bytes
            .chunks_exact(4)
            .map(|c| {
                [
                    i16::from_ne_bytes([c[0], c[1]]),
                    i16::from_ne_bytes([c[2], c[3]]),
                ]
            })
            .collect();
        let idx: Vec<u16> = idx_bytes
            .chunks_exact(2)
            .map(|c| u16::from_ne_bytes([c[0], c[1]]))
            .collect();
        CompactMap::new(&xy, &idx, self.width, self.height)
    }

    /// Frame width.
    pub fn width(&self) -> i32 {
        self.width
    }

    /// Frame height.
    pub fn height(&self) -> i32 {
        self.height
    }

    /// Remaps `src` (a BGR8 frame of this size) into `dst`, a packed BGR8 buffer of exactly
    /// `width * height * 3` bytes (a shared-memory slot), through a matrix header over it:
    /// the remap writes the slot directly, with no copy after it.
    pub fn remap_into(&mut self, src: &Mat, dst: &mut [u8]) -> Result<(), String> {
        let need = self.width as usize * self.height as usize * 3;
        if dst.len() != need {
            return Err(format!(
                "the destination holds {} bytes, a frame needs {need}",
                dst.len()
            ));
        }
        if src.rows() != self.height || src.cols() != self.width || src.typ() != CV_8UC3 {
            return Err(format!(
                "the frame to undistort is {}x{} of type {}, expected {}x{} BGR8",
                src.cols(),
                src.rows(),
                src.typ(),
                self.width,
                self.height
            ));
        }
        let stride = src.mat_step()[0];
        // Rows more than 32767 bytes apart (frames over 10922 pixels wide) go to OpenCV.
        if let (Kernel::Avx2, Some(map), true) =
            (self.kernel, &self.compact, stride <= i16::MAX as usize)
        {
            let len = (self.height as usize - 1) * stride + self.width as usize * 3;
            // SAFETY: `src` is a live height x width BGR8 matrix (checked above) whose rows
            // start `stride` bytes apart from its data pointer, so the `len` bytes up to the
            // end of its last pixel are its own; it is borrowed, so nothing writes them now.
            let bytes = unsafe { std::slice::from_raw_parts(src.data(), len) };
            return map.remap(bytes, stride, dst, self.threads);
        }
        let key = dst.as_mut_ptr() as usize;
        let idx = match self.dst_headers.iter().position(|(k, _)| *k == key) {
            Some(i) => i,
            None => {
                // SAFETY: `dst` is exactly width*height*3 bytes (checked above). The header is
                // used only within this call, while `dst` is borrowed mutably; a later call with
                // the same address passes a live slice of the same length again (slots stay
                // mapped as long as the writer lives).
                let mat = unsafe {
                    Mat::new_rows_cols_with_data_unsafe(
                        self.height,
                        self.width,
                        CV_8UC3,
                        key as *mut c_void,
                        self.width as usize * 3,
                    )
                }
                .map_err(|e| format!("cannot wrap the slot in a matrix: {}", e.message))?;
                self.dst_headers.push((key, mat));
                self.dst_headers.len() - 1
            }
        };
        let dst_mat = &mut self.dst_headers[idx].1;
        let before = dst_mat.data();
        imgproc::remap(
            src,
            dst_mat,
            &self.map1,
            &self.map2,
            imgproc::INTER_LINEAR,
            opencv::core::BORDER_CONSTANT,
            Scalar::all(0.0),
        )
        .map_err(|e| format!("remap failed: {}", e.message))?;
        if dst_mat.data() != before {
            return Err("OpenCV reallocated the slot matrix".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Calibration {
        Calibration {
            camera_matrix: [500.0, 0.0, 159.5, 0.0, 500.0, 119.5, 0.0, 0.0, 1.0],
            dist_coeffs: vec![-0.2, 0.05, 0.0, 0.0, 0.0],
            image_width: 320,
            image_height: 240,
            model: Some(LensModel::Pinhole),
        }
    }

    #[test]
    fn a_saved_calibration_loads_back_in_yaml_and_json() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["cal.yaml", "cal.json"] {
            let path = dir.path().join(name);
            sample().save(&path, &[("rms", "0.1".into())]).unwrap();
            assert_eq!(Calibration::load(&path).unwrap(), sample(), "{name}");
        }
    }

    #[test]
    fn a_missing_file_names_the_file_and_the_key() {
        let e = Calibration::load(Path::new("/nonexistent/cam.yaml"))
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "video.calibration.file = \"/nonexistent/cam.yaml\": cannot read the calibration \
             file: no such file"
        );
    }

    #[test]
    fn a_file_without_the_fields_says_which_is_missing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cal.yaml");
        std::fs::write(&path, "%YAML:1.0\n---\nimage_width: 320\n").unwrap();
        let e = Calibration::load(&path).unwrap_err().to_string();
        assert!(e.contains("camera_matrix: missing"), "{e}");
        std::fs::write(&path, "this is not yaml: [").unwrap();
        let e = Calibration::load(&path).unwrap_err().to_string();
        assert!(e.contains("cannot read the calibration file"), "{e}");
    }

    #[test]
    fn another_size_or_model_is_refused_naming_both() {
        let cal = sample();
        let p = Path::new("cam.yaml");
        let e = cal
            .check(p, LensModel::Pinhole, 1280, 720)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("the calibration is for 320x240 images but the source delivers 1280x720"),
            "{e}"
        );
        let e = cal
            .check(p, LensModel::Fisheye, 320, 240)
            .unwrap_err()
            .to_string();
        assert!(e.contains("video.calibration.model = \"pinhole\""), "{e}");
        let mut odd = sample();
        odd.model = None;
        odd.dist_coeffs = vec![0.1; 6];
        let e = odd
            .check(p, LensModel::Pinhole, 320, 240)
            .unwrap_err()
            .to_string();
        assert!(e.contains("holds 6 values"), "{e}");
        cal.check(p, LensModel::Pinhole, 320, 240).unwrap();
    }

    #[test]
    fn framing_all_zooms_out_and_valid_zooms_in_for_both_models() {
        let pinhole = sample();
        let fisheye = Calibration {
            dist_coeffs: vec![-0.05, 0.01, 0.0, 0.0],
            model: Some(LensModel::Fisheye),
            ..sample()
        };
        for (cal, model) in [(pinhole, LensModel::Pinhole), (fisheye, LensModel::Fisheye)] {
            let f = |framing| {
                let k = new_camera_matrix(&cal, model, framing).unwrap();
                *k.at_2d::<f64>(0, 0).unwrap()
            };
            let (same, all, valid) = (f(Framing::Same), f(Framing::All), f(Framing::Valid));
            assert_eq!(same, cal.camera_matrix[0], "{model}");
            assert!(
                all < valid,
                "{model}: all {all} should zoom out from valid {valid}"
            );
            for framing in [Framing::Same, Framing::All, Framing::Valid] {
                let cfg = CalibrationConfig {
                    file: "x".into(),
                    model,
                    framing,
                };
                let mut r = Remapper::undistort(&cal, &cfg).unwrap();
                let src =
                    Mat::new_rows_cols_with_default(240, 320, CV_8UC3, Scalar::all(200.0)).unwrap();
                let mut out = vec![0u8; 320 * 240 * 3];
                r.remap_into(&src, &mut out).unwrap();
                // The centre of the view stays inside the source frame in every framing.
                let centre = (120 * 320 + 160) * 3;
                assert_eq!(out[centre], 200, "{model} {framing}");
            }
        }
    }

    #[test]
    fn distorting_then_undistorting_gives_back_the_frame() {
        let (w, h) = (320, 240);
        let cal = sample();
        // A smooth pattern so bilinear sampling twice stays close.
        let mut ideal = Mat::new_rows_cols_with_default(h, w, CV_8UC3, Scalar::all(0.0)).unwrap();
        for y in 0..h {
            for x in 0..w {
                let v = ((x as f64 / 12.0).sin() * 100.0 + 128.0) as u8;
                let u = ((y as f64 / 9.0).cos() * 100.0 + 128.0) as u8;
                *ideal.at_2d_mut::<opencv::core::Vec3b>(y, x).unwrap() =
                    opencv::core::Vec3b::from([v, u, 90]);
            }
        }
        let mut distort = Remapper::distort(&cal.camera_matrix, &cal.dist_coeffs, w, h).unwrap();
        let mut distorted = vec![0u8; (w * h * 3) as usize];
        distort.remap_into(&ideal, &mut distorted).unwrap();
        let cfg = CalibrationConfig {
            file: "x".into(),
            ..Default::default()
        };
        let mut undistort = Remapper::undistort(&cal, &cfg).unwrap();
        let src = Mat::from_slice(&distorted)
            .unwrap()
            .reshape(3, h)
            .unwrap()
            .try_clone()
            .unwrap();
        let mut back = vec![0u8; (w * h * 3) as usize];
        undistort.remap_into(&src, &mut back).unwrap();
        let ideal_bytes = ideal.data_bytes().unwrap();
        let diff = |a: &[u8]| {
            let (mut sum, mut n) = (0u64, 0u64);
            // The centre 60%: the corners of a barrel-distorted frame hold no picture.
            for y in (h / 5)..(h * 4 / 5) {
                for x in (w / 5)..(w * 4 / 5) {
                    for c in 0..3 {
                        let i = ((y * w + x) * 3 + c) as usize;
                        sum += (a[i] as i64 - ideal_bytes[i] as i64).unsigned_abs();
                        n += 1;
                    }
                }
            }
            sum as f64 / n as f64
        };
        let before = diff(&distorted);
        let after = diff(&back);
        assert!(after < 2.0, "undistorted differs by {after} on average");
        assert!(
            before > 5.0 * after,
            "distortion changed little: {before} vs {after}"
        );
    }
}
