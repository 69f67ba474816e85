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
    fn garbage() {
        // A TLS ClientHello sent to the plain TCP port.
        assert_eq!(frame_len(&[0x16, 0x03, 0x01, 0x02, 0x00]), Err(Garbage));
        assert_eq!(frame_len(&[0xC0, 0, 0, 0]), Err(Garbage));
        assert_eq!(frame_len(&[0x16, 0x03]), Err(Garbage));
        assert_eq!(frame_len(&[0x00, 0x01, 0x00, 0x03]), Err(Garbage));
        assert_eq!(frame_len(&[0x80]), Err(Garbage));
    }
}
