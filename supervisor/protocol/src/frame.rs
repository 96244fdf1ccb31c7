//! The framing of every message: a 4-byte big-endian length, then that many bytes of JSON, at
//! most [`MAX_MESSAGE_BYTES`]. A length above the cap is refused before anything is allocated.

use std::io::{self, Read, Write};

/// Largest message (either direction) in bytes, not counting the 4-byte length.
pub const MAX_MESSAGE_BYTES: usize = 1 << 20;

/// A message could not be framed or unframed.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The length prefix announces more than [`MAX_MESSAGE_BYTES`].
    #[error("message of {len} bytes is larger than the limit of {MAX_MESSAGE_BYTES} bytes")]
    TooLarge {
        /// The announced (or attempted) length.
        len: usize,
    },
    /// The peer closed the connection before a whole message arrived.
    #[error("connection closed before a whole message arrived")]
    Closed,
    /// Reading or writing failed.
    #[error("{0}")]
    Io(#[from] io::Error),
}

pub(crate) fn check_len(len: usize) -> Result<(), FrameError> {
    if len > MAX_MESSAGE_BYTES {
        Err(FrameError::TooLarge { len })
    } else {
        Ok(())
    }
}

/// Writes one framed message.
pub fn write_frame(w: &mut impl Write, payload: &[u8]) -> Result<(), FrameError> {
    check_len(payload.len())?;
    let mut buf = Vec::with_capacity(4 + payload.len());
    buf.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    buf.extend_from_slice(payload);
    w.write_all(&buf)?;
    w.flush()?;
    Ok(())
}

/// Reads one framed message; refuses a length above the cap before allocating.
pub fn read_frame(r: &mut impl Read) -> Result<Vec<u8>, FrameError> {
    let mut len = [0u8; 4];
    read_exact_or_closed(r, &mut len)?;
    let len = u32::from_be_bytes(len) as usize;
    check_len(len)?;
    let mut payload = vec![0u8; len];
    read_exact_or_closed(r, &mut payload)?;
    Ok(payload)
}

fn read_exact_or_closed(r: &mut impl Read, buf: &mut [u8]) -> Result<(), FrameError> {
    r.read_exact(buf).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => FrameError::Closed,
        _ => FrameError::Io(e),
    })
}

/// Async framing, for the supervisor's server and async clients.
#[cfg(feature = "tokio")]
pub mod async_frame {
    use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

    use super::{check_len, FrameError};

    /// Writes one framed message.
    pub async fn write_frame(
        w: &mut (impl AsyncWrite + Unpin),
        payload: &[u8],
    ) -> Result<(), FrameError> {
        check_len(payload.len())?;
        let mut buf = Vec::with_capacity(4 + payload.len());
        buf.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        buf.extend_from_slice(payload);
        w.write_all(&buf).await?;
        w.flush().await?;
        Ok(())
    }

    /// Reads one framed message; refuses a length above the cap before allocating.
    pub async fn read_frame(r: &mut (impl AsyncRead + Unpin)) -> Result<Vec<u8>, FrameError> {
        let mut len = [0u8; 4];
        read_exact(r, &mut len).await?;
        let len = u32::from_be_bytes(len) as usize;
        check_len(len)?;
        let mut payload = vec![0u8; len];
        read_exact(r, &mut payload).await?;
        Ok(payload)
    }

    async fn read_exact(
        r: &mut (impl AsyncRead + Unpin),
        buf: &mut [u8],
    ) -> Result<(), FrameError> {
        match r.read_exact(buf).await {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(FrameError::Closed),
            Err(e) => Err(FrameError::Io(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framing_round_trips_and_caps_the_size() {
        let mut buf = Vec::new();
        write_frame(&mut buf, b"{\"cmd\":\"ping\"}").unwrap();
        assert_eq!(&buf[..4], &[0, 0, 0, 14]);
        let mut r = &buf[..];
        assert_eq!(read_frame(&mut r).unwrap(), b"{\"cmd\":\"ping\"}");

        // A hostile length is refused before anything is allocated.
        let mut r: &[u8] = &[0xff, 0xff, 0xff, 0xff];
        assert!(
            matches!(read_frame(&mut r), Err(FrameError::TooLarge { len }) if len == u32::MAX as usize)
        );
        let big = vec![b' '; MAX_MESSAGE_BYTES + 1];
        assert!(matches!(
            write_frame(&mut Vec::new(), &big),
            Err(FrameError::TooLarge { .. })
        ));

        // Exactly the cap is allowed.
        let max = vec![b' '; MAX_MESSAGE_BYTES];
        let mut buf = Vec::new();
        write_frame(&mut buf, &max).unwrap();
        assert_eq!(read_frame(&mut &buf[..]).unwrap().len(), MAX_MESSAGE_BYTES);

        // Truncated input is an error, not a hang or a panic.
        let mut r: &[u8] = &[0, 0, 0, 9, b'{'];
        assert!(matches!(read_frame(&mut r), Err(FrameError::Closed)));
        let mut r: &[u8] = &[0, 0];
        assert!(matches!(read_frame(&mut r), Err(FrameError::Closed)));
    }
}
