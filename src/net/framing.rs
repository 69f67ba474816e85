//! Cutting a TCP/TLS byte stream into STUN messages and ChannelData frames
//! (RFC 8656 §12.5). Streams carry no message boundaries and cannot be
//! resynchronised, so anything that is neither closes the connection.

/// Largest frame: a STUN header plus a 16-bit length, padded.
pub const MAX_FRAME: usize = 20 + 65535 + 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Garbage;

/// The length of the frame at the start of `buf`, once `buf` holds all of it;
/// `Ok(None)` when more bytes are needed.
pub fn frame_len(buf: &[u8]) -> Result<Option<usize>, Garbage> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    if buf.len() < 4 {
        return match first {
            0x00..=0x03 | 0x40..=0x7F => Ok(None),
            _ => Err(Garbage),
        };
    }
    let len = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
    let total = match first {
        0x00..=0x03 => {
            if len % 4 != 0 {
                return Err(Garbage);
            }
            20 + len
        }
        // ChannelData is padded to 4 bytes over streams.
        0x40..=0x7F => (4 + len + 3) & !3,
        _ => return Err(Garbage),
    };
    Ok((buf.len() >= total).then_some(total))
}

/// The bytes a stream delivered that are not yet cut into frames.
#[derive(Debug, Default)]
pub struct FrameBuffer {
    pending: Vec<u8>,
}

impl FrameBuffer {
    pub fn new() -> FrameBuffer {
        FrameBuffer {
            pending: Vec::with_capacity(4096),
        }
    }

    /// Appends what a read returned and hands every whole frame to `frame`,
    /// in order. An error means the connection must close: a stream that
    /// stops looking like STUN or ChannelData cannot be resynchronised.
    pub fn push(&mut self, bytes: &[u8], mut frame: impl FnMut(&[u8])) -> Result<(), &'static str> {
        self.pending.extend_from_slice(bytes);
        let mut at = 0;
        loop {
            let len = match frame_len(&self.pending[at..]) {
                Ok(Some(len)) => len,
                Ok(None) => break,
                Err(Garbage) => return Err("not STUN or ChannelData: cannot resynchronise"),
            };
            frame(&self.pending[at..at + len]);
            at += len;
        }
        self.pending.drain(..at);
        if self.pending.len() > MAX_FRAME {
            return Err("frame too large");
        }
        Ok(())
    }

    /// How many bytes wait for the rest of their frame.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stun(attr_len: u16) -> Vec<u8> {
        let mut m = vec![0x00, 0x01];
        m.extend_from_slice(&attr_len.to_be_bytes());
        m.extend_from_slice(&0x2112_A442u32.to_be_bytes());
        m.extend_from_slice(&[7; 12]);
        m.extend(std::iter::repeat_n(0, usize::from(attr_len)));
        m
    }

    #[test]
    fn split_across_reads() {
        let m = stun(8);
        for cut in 0..m.len() {
            assert_eq!(frame_len(&m[..cut]), Ok(None), "cut at {cut}");
        }
        assert_eq!(frame_len(&m), Ok(Some(28)));
    }

    #[test]
    fn coalesced_frames() {
        let mut buf = stun(4);
        buf.extend_from_slice(&[0x40, 0x00, 0x00, 0x05, 1, 2, 3, 4, 5, 0, 0, 0]);
        buf.extend_from_slice(&stun(0));
        let mut at = 0;
        let mut lens = Vec::new();
        while let Ok(Some(n)) = frame_len(&buf[at..]) {
            lens.push(n);
            at += n;
        }
        assert_eq!(lens, vec![24, 12, 20]);
        assert_eq!(at, buf.len());
    }

    #[test]
    fn channel_data_padding() {
        assert_eq!(frame_len(&[0x40, 0x01, 0x00, 0x00]), Ok(Some(4)));
        assert_eq!(frame_len(&[0x40, 0x01, 0x00, 0x01, 9]), Ok(None));
        assert_eq!(
            frame_len(&[0x40, 0x01, 0x00, 0x01, 9, 0, 0, 0]),
            Ok(Some(8))
        );
    }

    #[test]
    fn frame_buffer_cuts_the_same_frames_whatever_the_reads() {
        let mut stream = stun(4);
        stream.extend_from_slice(&[0x40, 0x00, 0x00, 0x05, 1, 2, 3, 4, 5, 0, 0, 0]);
        stream.extend_from_slice(&stun(0));
        for read in [1, 3, 7, stream.len()] {
            let mut buffer = FrameBuffer::new();
            let mut lens = Vec::new();
            for chunk in stream.chunks(read) {
                buffer.push(chunk, |f| lens.push(f.len())).unwrap();
            }
            assert_eq!(lens, vec![24, 12, 20], "reads of {read}");
            assert_eq!(buffer.pending(), 0);
        }
        let mut buffer = FrameBuffer::new();
        assert!(buffer.push(&[0x16, 0x03, 0x01], |_| {}).is_err());
    }

    #[test]
    fn garbage() {
        // A TLS ClientHello sent to the plain TCP port.
        assert_eq!(frame_len(&[0x16, 0x03, 0x01, 0x02, 0x00]), Err(Garbage));
        assert_eq!(frame_len(&[0xC0, 0, 0, 0]), Err(Garbage));
        assert_eq!(frame_len(&[0x16, 0x03]), Err(Garbage));
        assert_eq!(frame_len(&[0x00, 0x01, 0x00, 0x03]), Err(Garbage));
        assert_eq!(frame_len(&[0x80]), Err(Garbage));
    }
}
