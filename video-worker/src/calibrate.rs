//! `billiards-video-worker calibrate`: computes a lens calibration from photos of a
//! chessboard and writes it in the format [`crate::calibration`] reads.
//!
//! Steps: find the board's inner corners in each image (`findChessboardCorners`), refine them
//! to sub-pixel accuracy (`cornerSubPix`), then solve for the camera matrix and distortion
//! (`calibrateCamera`, or `fisheye::calibrate`). Bad input (no images, a board that is not
//! seen often enough, images of different sizes) is [`CalibrateError::BadInput`] (exit 2);
//! a solver failure or an unwritable output is [`CalibrateError::Failed`] (exit 1).

use std::path::{Path, PathBuf};

use config::{exit_codes, LensModel};
use opencv::core::{Mat, Point2f, Point3f, Size, TermCriteria, TermCriteria_Type, Vector, CV_64F};
use opencv::prelude::*;
use opencv::{calib3d, imgcodecs, imgproc};
use tracing::{debug, info, warn};

use crate::calibration::Calibration;

/// Fewest images with a detected board that a calibration is computed from. Three is the
/// least for which the intrinsics are determined at all; 10 to 20 give a good one.
pub const MIN_IMAGES: usize = 3;

/// File name endings read as images.
pub const IMAGE_EXTENSIONS: [&str; 9] = [
    "png", "jpg", "jpeg", "bmp", "tif", "tiff", "webp", "pgm", "ppm",
];

/// What `calibrate` was asked to do.
#[derive(Debug, Clone, PartialEq)]
pub struct CalibrateOptions {
    /// Directory of chessboard photos.
    pub images: PathBuf,
    /// Inner corners per row and per column of the board (`COLSxROWS`).
    pub board: Board,
    /// Side of one square, in millimetres.
    pub square_mm: f64,
    /// Lens model to fit.
    pub model: LensModel,
    /// Calibration file to write (`.yaml`, `.yml` or `.json`).
    pub out: PathBuf,
}

/// A chessboard's inner corners: `cols` per row, `rows` per column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Board {
    /// Inner corners along a row.
    pub cols: i32,
    /// Inner corners along a column.
    pub rows: i32,
}

impl std::fmt::Display for Board {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}x{}", self.cols, self.rows)
    }
}

impl std::str::FromStr for Board {
    type Err = String;

    /// `COLSxROWS`, e.g. `9x6`: counts of inner corners, each at least 2.
    fn from_str(s: &str) -> Result<Board, String> {
        let bad = || {
            format!(
                "{s:?} is not COLSxROWS: give the board's inner corners, e.g. 9x6 for a board \
                 of 10 by 7 squares"
            )
        };
        let (c, r) = s.trim().split_once(['x', 'X']).ok_or_else(bad)?;
        let cols: i32 = c.trim().parse().map_err(|_| bad())?;
        let rows: i32 = r.trim().parse().map_err(|_| bad())?;
        if !(2..=100).contains(&cols) || !(2..=100).contains(&rows) {
            return Err(format!(
                "{s:?}: a board needs 2 to 100 inner corners each way"
            ));
        }
        Ok(Board { cols, rows })
    }
}

/// Why `calibrate` did not write a calibration.
#[derive(Debug, thiserror::Error)]
pub enum CalibrateError {
    /// The images or arguments cannot give a calibration; exit code 2.
    #[error("{0}")]
    BadInput(String),
    /// The solver or the output file failed; exit code 1.
    #[error("{0}")]
    Failed(String),
}

impl CalibrateError {
    /// The process exit code.
    pub fn exit_code(&self) -> i32 {
        match self {
            CalibrateError::BadInput(_) => exit_codes::USAGE,
            CalibrateError::Failed(_) => exit_codes::FAILURE,
        }
    }
}

/// The outcome of a calibration.
#[derive(Debug, Clone)]
pub struct Report {
    /// What was written.
    pub calibration: Calibration,
    /// RMS reprojection error over every corner of every used image, in pixels.
    pub rms: f64,
    /// Images in which the board was found.
    pub used: usize,
    /// Images read.
    pub total: usize,
}

fn bad(msg: String) -> CalibrateError {
    CalibrateError::BadInput(msg)
}

/// The image files of `dir`, sorted by name.
fn image_files(dir: &Path) -> Result<Vec<PathBuf>, CalibrateError> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        bad(format!(
            "--images {}: cannot list the directory: {}",
            dir.display(),
            e.to_string().to_lowercase()
        ))
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file()
                && p.extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
        })
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(bad(format!(
            "--images {}: holds no images (files ending in .{})",
            dir.display(),
            IMAGE_EXTENSIONS.join(", .")
        )));
    }
    Ok(files)
}

/// Half the shortest distance between neighbouring corners, less a pixel: the largest
/// `cornerSubPix` window that never reaches the next corner.
fn subpix_window(corners: &Vector<Point2f>, board: Board) -> i32 {
    let mut shortest = f32::MAX;
    for r in 0..board.rows {
        for c in 0..board.cols - 1 {
            let i = (r * board.cols + c) as usize;
            if let (Ok(a), Ok(b)) = (corners.get(i), corners.get(i + 1)) {
                shortest = shortest.min(((a.x - b.x).powi(2) + (a.y - b.y).powi(2)).sqrt());
            }
        }
    }
    ((shortest / 2.0 - 1.0).floor() as i32).clamp(2, 11)
}

/// Finds and refines the board's inner corners in a grey image.
fn find_corners(gray: &Mat, board: Board) -> opencv::Result<Option<Vector<Point2f>>> {
    let mut corners = Vector::<Point2f>::new();
    let found = calib3d::find_chessboard_corners(
        gray,
        Size::new(board.cols, board.rows),
        &mut corners,
        calib3d::CALIB_CB_ADAPTIVE_THRESH | calib3d::CALIB_CB_NORMALIZE_IMAGE,
    )?;
    if !found || corners.len() != (board.cols * board.rows) as usize {
        return Ok(None);
    }
    let win = subpix_window(&corners, board);
    let criteria = TermCriteria::new(
        TermCriteria_Type::COUNT as i32 + TermCriteria_Type::EPS as i32,
        50,
        1e-3,
    )?;
    imgproc::corner_sub_pix(
        gray,
        &mut corners,
        Size::new(win, win),
        Size::new(-1, -1),
        criteria,
    )?;
    Ok(Some(corners))
}

fn mat_to_vec(m: &Mat) -> opencv::Result<Vec<f64>> {
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

/// Runs the calibration and writes `opts.out`.
pub fn run(opts: &CalibrateOptions) -> Result<Report, CalibrateError> {
    if !(opts.square_mm.is_finite() && opts.square_mm > 0.0) {
        return Err(bad(format!(
            "--square-mm {}: must be a length greater than 0",
            opts.square_mm
        )));
    }
    let ext = opts
        .out
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    if !matches!(ext.as_deref(), Some("yaml" | "yml" | "json")) {
        return Err(bad(format!(
            "--out {}: must end in .yaml, .yml or .json (the format is chosen by the ending)",
            opts.out.display()
        )));
    }
    let files = image_files(&opts.images)?;
    let board = opts.board;
    let object: Vector<Point3f> = (0..board.rows)
        .flat_map(|r| {
            (0..board.cols).map(move |c| {
                Point3f::new(
                    (c as f64 * opts.square_mm) as f32,
                    (r as f64 * opts.square_mm) as f32,
                    0.0,
                )
            })
        })
        .collect();
    let mut object_points = Vector::<Vector<Point3f>>::new();
    let mut image_points = Vector::<Vector<Point2f>>::new();
    let mut size: Option<(Size, PathBuf)> = None;
    let mut unreadable = 0usize;
    for file in &files {
        let name = file.to_string_lossy();
        let gray = imgcodecs::imread(file, imgcodecs::IMREAD_GRAYSCALE).map_err(|e| {
            CalibrateError::Failed(format!("{name}: cannot read it: {}", e.message))
        })?;
        if gray.empty() {
            warn!(image = %name, "not an image OpenCV can read; skipped");
            unreadable += 1;
            continue;
        }
        let this = Size::new(gray.cols(), gray.rows());
        match &size {
            None => size = Some((this, file.clone())),
            Some((first, first_file)) if *first != this => {
                return Err(bad(format!(
                    "{name} is {}x{} but {} is {}x{}: every image must come from the camera \
                     at the size it will run at",
                    this.width,
                    this.height,
                    first_file.display(),
                    first.width,
                    first.height
                )))
            }
            Some(_) => {}
        }
        match find_corners(&gray, board).map_err(|e| {
            CalibrateError::Failed(format!("{name}: corner detection failed: {}", e.message))
        })? {
            Some(corners) => {
                debug!(image = %name, "board found");
                image_points.push(corners);
                object_points.push(object.clone());
            }
            None => info!(image = %name, board = %board, "no board found; image skipped"),
        }
    }
    let total = files.len() - unreadable;
    let used = image_points.len();
    let Some((size, _)) = size else {
        return Err(bad(format!(
            "--images {}: none of the {} files could be read as an image",
            opts.images.display(),
            files.len()
        )));
    };
    if used < MIN_IMAGES {
        return Err(bad(format!(
            "only {used} of {total} images show the {board} board (inner corners); at least \
             {MIN_IMAGES} are needed, 10 to 20 from different angles and positions give a good \
             calibration (check --board: it counts inner corners, not squares)"
        )));
    }
    let mut k = Mat::default();
    let mut d = Mat::default();
    let mut rvecs = Vector::<Mat>::new();
    let mut tvecs = Vector::<Mat>::new();
    let criteria = TermCriteria::new(
        TermCriteria_Type::COUNT as i32 + TermCriteria_Type::EPS as i32,
        100,
        1e-9,
    )
    .map_err(|e| CalibrateError::Failed(e.message))?;
    let solved = match opts.model {
        LensModel::Pinhole => calib3d::calibrate_camera(
            &object_points,
            &image_points,
            size,
            &mut k,
            &mut d,
            &mut rvecs,
            &mut tvecs,
            0,
            criteria,
        ),
        // cv::fisheye::calibrate
        LensModel::Fisheye => calib3d::calibrate(
            &object_points,
            &image_points,
            size,
            &mut k,
            &mut d,
            &mut rvecs,
            &mut tvecs,
            calib3d::Fisheye_CALIB_RECOMPUTE_EXTRINSIC | calib3d::Fisheye_CALIB_FIX_SKEW,
            criteria,
        ),
    };
    let rms = solved.map_err(|e| {
        CalibrateError::Failed(format!(
            "the {} calibration did not converge: {} (use more images, with the board at \
             different angles and in the corners of the view)",
            opts.model, e.message
        ))
    })?;
    let k = mat_to_vec(&k).map_err(|e| CalibrateError::Failed(e.message))?;
    let d = mat_to_vec(&d).map_err(|e| CalibrateError::Failed(e.message))?;
    if k.len() != 9
        || k.iter().chain(&d).any(|x| !x.is_finite())
        || k[0] <= 0.0
        || k[4] <= 0.0
        || !rms.is_finite()
    {
        return Err(CalibrateError::Failed(format!(
            "the {} calibration gave no usable camera (camera matrix {k:?}, coefficients {d:?})",
            opts.model
        )));
    }
    let mut camera_matrix = [0.0; 9];
    camera_matrix.copy_from_slice(&k);
    let calibration = Calibration {
        camera_matrix,
        dist_coeffs: d,
        image_width: size.width,
        image_height: size.height,
        model: Some(opts.model),
    };
    calibration
        .save(
            &opts.out,
            &[
                ("rms_reprojection_error_px", format!("{rms:.6}")),
                ("images_used", format!("{used} of {total}")),
                (
                    "board",
                    format!("{board} inner corners, {} mm squares", opts.square_mm),
                ),
            ],
        )
        .map_err(CalibrateError::Failed)?;
    Ok(Report {
        calibration,
        rms,
        used,
        total,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boards_parse_as_inner_corners() {
        assert_eq!("9x6".parse::<Board>(), Ok(Board { cols: 9, rows: 6 }));
        assert_eq!("7X5".parse::<Board>(), Ok(Board { cols: 7, rows: 5 }));
        assert!("9".parse::<Board>().unwrap_err().contains("not COLSxROWS"));
        assert!("1x6".parse::<Board>().unwrap_err().contains("2 to 100"));
        assert!("ax6".parse::<Board>().is_err());
    }

    #[test]
    fn bad_arguments_are_bad_input() {
        let dir = tempfile::tempdir().unwrap();
        let opts = CalibrateOptions {
            images: dir.path().to_path_buf(),
            board: Board { cols: 9, rows: 6 },
            square_mm: 25.0,
            model: LensModel::Pinhole,
            out: dir.path().join("cal.yaml"),
        };
        let e = run(&opts).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("holds no images"), "{e}");
        let e = run(&CalibrateOptions {
            out: dir.path().join("cal.txt"),
            ..opts.clone()
        })
        .unwrap_err();
        assert!(e.to_string().contains("must end in .yaml"), "{e}");
        let e = run(&CalibrateOptions {
            square_mm: 0.0,
            ..opts
        })
        .unwrap_err();
        assert!(e.to_string().contains("--square-mm 0"), "{e}");
    }
}
