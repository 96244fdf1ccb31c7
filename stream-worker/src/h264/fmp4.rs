//! A minimal fragmented-MP4 (ISO BMFF) writer for one live H.264 track.
//!
//! The init segment (`ftyp` + `moov`) describes the track: size, and SPS/PPS in `avcC`, with
//! empty sample tables because every sample lives in a fragment. Each frame is then one
//! fragment, `moof` (`mfhd`, `traf` with `tfhd`, `tfdt`, `trun`) + `mdat`, whose sample is the
//! frame's NAL units with 4-byte length prefixes (AVCC), parameter sets excluded. That is the
//! shape Media Source Extensions and FFmpeg's mov demuxer accept for live playback.
//!
//! Crates considered: `mp4` (0.14) writes progressive files (sample tables in `moov`, written
//! at the end) and `muxide` (0.5) targets recordings; neither writes a live fragment per frame,
//! so this module writes the few boxes itself.

/// Time units per second of the track (the usual 90 kHz video clock).
pub const TIMESCALE: u32 = 90_000;

/// The track ID of the only track.
const TRACK_ID: u32 = 1;

/// What the init segment declares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackInfo {
    /// Width in pixels.
    pub width: u16,
    /// Height in pixels.
    pub height: u16,
    /// The sequence parameter set NAL unit, without start code.
    pub sps: Vec<u8>,
    /// The picture parameter set NAL unit, without start code.
    pub pps: Vec<u8>,
}

impl TrackInfo {
    /// The RFC 6381 codec string (`avc1.PPCCLL`) for `MediaSource.isTypeSupported`.
    pub fn codec_string(&self) -> String {
        match self.sps.get(1..4) {
            Some(p) => format!("avc1.{:02X}{:02X}{:02X}", p[0], p[1], p[2]),
            None => "avc1.42E01F".to_string(),
        }
    }
}

/// Writes a box: the size is patched in once `body` has written the content.
fn bx(out: &mut Vec<u8>, kind: &[u8; 4], body: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(kind);
    body(out);
    let size = (out.len() - start) as u32;
    out[start..start + 4].copy_from_slice(&size.to_be_bytes());
}

/// A full box: version and flags come first.
fn full(
    out: &mut Vec<u8>,
    kind: &[u8; 4],
    version: u8,
    flags: u32,
    body: impl FnOnce(&mut Vec<u8>),
) {
    bx(out, kind, |o| {
        o.push(version);
        o.extend_from_slice(&flags.to_be_bytes()[1..]);
        body(o);
    });
}

fn u16b(o: &mut Vec<u8>, v: u16) {
    o.extend_from_slice(&v.to_be_bytes());
}

fn u32b(o: &mut Vec<u8>, v: u32) {
    o.extend_from_slice(&v.to_be_bytes());
}

/// The identity transformation matrix of `mvhd` and `tkhd`.
fn matrix(o: &mut Vec<u8>) {
    for v in [0x0001_0000u32, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000] {
        u32b(o, v);
    }
}

/// The init segment: `ftyp` + `moov` for one H.264 track.
pub fn init_segment(track: &TrackInfo) -> Vec<u8> {
    let mut out = Vec::with_capacity(768);
    bx(&mut out, b"ftyp", |o| {
        o.extend_from_slice(b"isom");
        u32b(o, 0x200);
        for brand in [b"isom", b"iso6", b"avc1", b"mp41"] {
            o.extend_from_slice(brand);
        }
    });
    bx(&mut out, b"moov", |o| {
        full(o, b"mvhd", 0, 0, |o| {
            u32b(o, 0); // creation time
            u32b(o, 0); // modification time
            u32b(o, 1000); // movie timescale
            u32b(o, 0); // duration: unknown (live)
            u32b(o, 0x0001_0000); // rate 1.0
            u16b(o, 0x0100); // volume 1.0
            o.extend_from_slice(&[0; 10]);
            matrix(o);
            o.extend_from_slice(&[0; 24]); // pre_defined
            u32b(o, TRACK_ID + 1); // next track ID
        });
        bx(o, b"trak", |o| {
            // Flags: track enabled, in movie.
            full(o, b"tkhd", 0, 0x3, |o| {
                u32b(o, 0);
                u32b(o, 0);
                u32b(o, TRACK_ID);
                u32b(o, 0); // reserved
                u32b(o, 0); // duration
                o.extend_from_slice(&[0; 8]);
                u16b(o, 0); // layer
                u16b(o, 0); // alternate group
                u16b(o, 0); // volume: 0 for video
                u16b(o, 0);
                matrix(o);
                u32b(o, u32::from(track.width) << 16);
                u32b(o, u32::from(track.height) << 16);
            });
            bx(o, b"mdia", |o| {
                full(o, b"mdhd", 0, 0, |o| {
                    u32b(o, 0);
                    u32b(o, 0);
                    u32b(o, TIMESCALE);
                    u32b(o, 0);
                    u16b(o, 0x55c4); // language "und"
                    u16b(o, 0);
                });
                full(o, b"hdlr", 0, 0, |o| {
                    u32b(o, 0);
                    o.extend_from_slice(b"vide");
                    o.extend_from_slice(&[0; 12]);
                    o.extend_from_slice(b"billiards video\0");
                });
                bx(o, b"minf", |o| {
                    full(o, b"vmhd", 0, 1, |o| o.extend_from_slice(&[0; 8]));
                    bx(o, b"dinf", |o| {
                        full(o, b"dref", 0, 0, |o| {
                            u32b(o, 1);
                            // Flag 1: the media is in this file.
                            full(o, b"url ", 0, 1, |_| {});
                        });
                    });
                    bx(o, b"stbl", |o| {
                        full(o, b"stsd", 0, 0, |o| {
                            u32b(o, 1);
                            avc1(o, track);
                        });
                        full(o, b"stts", 0, 0, |o| u32b(o, 0));
                        full(o, b"stsc", 0, 0, |o| u32b(o, 0));
                        full(o, b"stsz", 0, 0, |o| {
                            u32b(o, 0);
                            u32b(o, 0);
                        });
                        full(o, b"stco", 0, 0, |o| u32b(o, 0));
                    });
                });
            });
        });
        bx(o, b"mvex", |o| {
            full(o, b"trex", 0, 0, |o| {
                u32b(o, TRACK_ID);
                u32b(o, 1); // sample description index
                u32b(o, 0); // default duration
                u32b(o, 0); // default size
                u32b(o, 0); // default flags
            });
        });
    });
    out
}

fn avc1(o: &mut Vec<u8>, track: &TrackInfo) {
    bx(o, b"avc1", |o| {
        o.extend_from_slice(&[0; 6]);
        u16b(o, 1); // data reference index
        o.extend_from_slice(&[0; 16]); // pre_defined, reserved
        u16b(o, track.width);
        u16b(o, track.height);
        u32b(o, 0x0048_0000); // 72 dpi
        u32b(o, 0x0048_0000);
        u32b(o, 0);
        u16b(o, 1); // frame count per sample
        o.extend_from_slice(&[0; 32]); // compressor name
        u16b(o, 0x0018); // depth
        u16b(o, 0xffff); // pre_defined = -1
        bx(o, b"avcC", |o| {
            let profile = track.sps.get(1..4).unwrap_or(&[66, 0xe0, 31]);
            o.push(1); // configuration version
            o.extend_from_slice(profile);
            o.push(0xff); // 4-byte NAL lengths
            o.push(0xe1); // one SPS
            u16b(o, track.sps.len() as u16);
            o.extend_from_slice(&track.sps);
            o.push(1); // one PPS
            u16b(o, track.pps.len() as u16);
            o.extend_from_slice(&track.pps);
        });
    });
}

/// One sample's timing, for [`fragment`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SampleTiming {
    /// Decode (= presentation) time of the sample, in [`TIMESCALE`] units.
    pub decode_time: u64,
    /// How long it is shown, in [`TIMESCALE`] units.
    pub duration: u32,
}

/// One fragment (`moof` + `mdat`) holding one sample. `sequence` counts fragments from 1;
/// `sample` is AVCC (length-prefixed NAL units).
pub fn fragment(sequence: u32, timing: SampleTiming, keyframe: bool, sample: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(sample.len() + 128);
    let mut data_offset_at = 0;
    bx(&mut out, b"moof", |o| {
        full(o, b"mfhd", 0, 0, |o| u32b(o, sequence));
        bx(o, b"traf", |o| {
            // default-base-is-moof: data offsets count from this moof's first byte.
            full(o, b"tfhd", 0, 0x02_0000, |o| u32b(o, TRACK_ID));
            full(o, b"tfdt", 1, 0, |o| {
                o.extend_from_slice(&timing.decode_time.to_be_bytes())
            });
            // Flags: data offset, sample duration, size and flags present.
            full(o, b"trun", 0, 0x0001 | 0x0100 | 0x0200 | 0x0400, |o| {
                u32b(o, 1);
                data_offset_at = o.len();
                u32b(o, 0); // patched below
                u32b(o, timing.duration);
                u32b(o, sample.len() as u32);
                // Sync sample: depends on no other; else depends on others and is not sync.
                u32b(o, if keyframe { 0x0200_0000 } else { 0x0101_0000 });
            });
        });
    });
    let data_offset = (out.len() + 8) as u32;
    out[data_offset_at..data_offset_at + 4].copy_from_slice(&data_offset.to_be_bytes());
    u32b(&mut out, (sample.len() + 8) as u32);
    out.extend_from_slice(b"mdat");
    out.extend_from_slice(sample);
    out
}

/// NAL unit type of an H.264 NAL unit (without start code).
pub fn nal_type(nal: &[u8]) -> Option<u8> {
    nal.first().map(|b| b & 0x1f)
}

/// A NAL unit without its Annex B start code (`00 00 01` or `00 00 00 01`).
pub fn strip_start_code(nal: &[u8]) -> &[u8] {
    if let Some(rest) = nal.strip_prefix(&[0, 0, 0, 1]) {
        rest
    } else if let Some(rest) = nal.strip_prefix(&[0, 0, 1]) {
        rest
    } else {
        nal
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A parsed box: type, payload range within the buffer it came from.
    #[derive(Debug)]
    pub(crate) struct Box4 {
        pub kind: [u8; 4],
        pub start: usize,
        pub end: usize,
    }

    /// Splits `buf[from..to]` into boxes, checking that sizes tile the range exactly.
    pub(crate) fn boxes(buf: &[u8], from: usize, to: usize) -> Vec<Box4> {
        let mut out = Vec::new();
        let mut at = from;
        while at < to {
            let size = u32::from_be_bytes(buf[at..at + 4].try_into().unwrap()) as usize;
            assert!(size >= 8 && at + size <= to, "bad box size {size} at {at}");
            out.push(Box4 {
                kind: buf[at + 4..at + 8].try_into().unwrap(),
                start: at + 8,
                end: at + size,
            });
            at += size;
        }
        assert_eq!(at, to);
        out
    }

    fn kinds(v: &[Box4]) -> Vec<&str> {
        v.iter()
            .map(|b| std::str::from_utf8(&b.kind).unwrap())
            .collect()
    }

    fn child<'a>(v: &'a [Box4], kind: &[u8; 4]) -> &'a Box4 {
        v.iter().find(|b| &b.kind == kind).expect("missing box")
    }

    fn track() -> TrackInfo {
        TrackInfo {
            width: 1280,
            height: 720,
            sps: vec![0x67, 0x42, 0xc0, 0x1f, 0xda, 0x01],
            pps: vec![0x68, 0xce, 0x3c, 0x80],
        }
    }

    #[test]
    fn init_segment_has_the_box_tree_mse_expects() {
        let init = init_segment(&track());
        let top = boxes(&init, 0, init.len());
        assert_eq!(kinds(&top), ["ftyp", "moov"]);
        let moov = child(&top, b"moov");
        let inner = boxes(&init, moov.start, moov.end);
        assert_eq!(kinds(&inner), ["mvhd", "trak", "mvex"]);
        let trak = child(&inner, b"trak");
        let t = boxes(&init, trak.start, trak.end);
        assert_eq!(kinds(&t), ["tkhd", "mdia"]);
        let tkhd = child(&t, b"tkhd");
        // Width and height are the last two 16.16 fields of tkhd.
        let wh = &init[tkhd.end - 8..tkhd.end];
        assert_eq!(wh, [0x05, 0x00, 0, 0, 0x02, 0xd0, 0, 0]);
        let mdia = child(&t, b"mdia");
        let m = boxes(&init, mdia.start, mdia.end);
        assert_eq!(kinds(&m), ["mdhd", "hdlr", "minf"]);
        let mdhd = child(&m, b"mdhd");
        assert_eq!(
            u32::from_be_bytes(init[mdhd.start + 12..mdhd.start + 16].try_into().unwrap()),
            TIMESCALE
        );
        let minf = child(&m, b"minf");
        let mi = boxes(&init, minf.start, minf.end);
        assert_eq!(kinds(&mi), ["vmhd", "dinf", "stbl"]);
        let stbl = child(&mi, b"stbl");
        let s = boxes(&init, stbl.start, stbl.end);
        assert_eq!(kinds(&s), ["stsd", "stts", "stsc", "stsz", "stco"]);
        let stsd = child(&s, b"stsd");
        let entries = boxes(&init, stsd.start + 8, stsd.end);
        assert_eq!(kinds(&entries), ["avc1"]);
        let avc1 = &entries[0];
        let sub = boxes(&init, avc1.start + 78, avc1.end);
        assert_eq!(kinds(&sub), ["avcC"]);
        let avcc = &init[sub[0].start..sub[0].end];
        let t = track();
        let mut want = vec![1, 0x42, 0xc0, 0x1f, 0xff, 0xe1, 0, 6];
        want.extend_from_slice(&t.sps);
        want.extend_from_slice(&[1, 0, 4]);
        want.extend_from_slice(&t.pps);
        assert_eq!(avcc, want.as_slice());
        assert_eq!(t.codec_string(), "avc1.42C01F");
    }

    #[test]
    fn a_fragment_points_its_sample_into_its_mdat() {
        let sample = [0, 0, 0, 3, 0x65, 1, 2];
        let timing = SampleTiming {
            decode_time: 0x1_0000_0002,
            duration: 3000,
        };
        let frag = fragment(7, timing, true, &sample);
        let top = boxes(&frag, 0, frag.len());
        assert_eq!(kinds(&top), ["moof", "mdat"]);
        let mdat = child(&top, b"mdat");
        assert_eq!(&frag[mdat.start..mdat.end], &sample);
        let moof = child(&top, b"moof");
        let m = boxes(&frag, moof.start, moof.end);
        assert_eq!(kinds(&m), ["mfhd", "traf"]);
        assert_eq!(&frag[m[0].start + 4..m[0].end], &7u32.to_be_bytes());
        let traf = boxes(&frag, m[1].start, m[1].end);
        assert_eq!(kinds(&traf), ["tfhd", "tfdt", "trun"]);
        assert_eq!(
            &frag[traf[1].start + 4..traf[1].end],
            &0x1_0000_0002u64.to_be_bytes()
        );
        let trun = &frag[traf[2].start..traf[2].end];
        let field = |i: usize| u32::from_be_bytes(trun[4 + 4 * i..8 + 4 * i].try_into().unwrap());
        assert_eq!(field(0), 1, "one sample");
        // The data offset counts from the moof's first byte (default-base-is-moof).
        assert_eq!(field(1) as usize, mdat.start - (moof.start - 8));
        assert_eq!((field(2), field(3)), (3000, sample.len() as u32));
        assert_eq!(field(4), 0x0200_0000);
        let p = fragment(8, timing, false, &sample);
        assert_eq!(
            &p[p.len() - sample.len() - 12..p.len() - sample.len() - 8],
            &0x0101_0000u32.to_be_bytes()
        );
    }

    #[test]
    fn start_codes_and_nal_types() {
        assert_eq!(strip_start_code(&[0, 0, 0, 1, 0x67, 1]), &[0x67, 1]);
        assert_eq!(strip_start_code(&[0, 0, 1, 0x68]), &[0x68]);
        assert_eq!(strip_start_code(&[0x65, 0]), &[0x65, 0]);
        assert_eq!(nal_type(&[0x67]), Some(7));
        assert_eq!(nal_type(&[0x65]), Some(5));
        assert_eq!(nal_type(&[]), None);
    }
}
