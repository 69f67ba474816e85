//! The TCP/TLS framer: `net::framing::frame_len` and `FrameBuffer`, which
//! stream.rs feeds every read. The input is a byte stream and a recipe for
//! cutting it into reads; the frames must not depend on how it was cut.
#![no_main]

use libfuzzer_sys::fuzz_target;
use natbridge::net::framing::{FrameBuffer, MAX_FRAME, frame_len};
use natbridge::turn::wire::{self, CHANNEL_HEADER_LEN, HEADER_LEN, PacketKind};

struct Outcome {
    frames: Vec<Vec<u8>>,
    failed: bool,
    pending: usize,
}

fn feed<'a>(reads: impl Iterator<Item = &'a [u8]>) -> Outcome {
    let mut buffer = FrameBuffer::new();
    let mut frames = Vec::new();
    for read in reads {
        if buffer.push(read, |f| frames.push(f.to_vec())).is_err() {
            return Outcome {
                frames,
                failed: true,
                pending: buffer.pending(),
            };
        }
        assert!(buffer.pending() < MAX_FRAME);
    }
    Outcome {
        frames,
        failed: false,
        pending: buffer.pending(),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&recipe, stream)) = data.split_first() else {
        return;
    };
    let whole = feed(std::iter::once(stream));
    // Reads of 1 to 16 bytes, in a pattern the first byte picks.
    let mut reads = Vec::new();
    let mut at = 0;
    let mut state = u32::from(recipe) | 1;
    while at < stream.len() {
        state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        let n = (1 + (state >> 16) as usize % 16).min(stream.len() - at);
        reads.push(&stream[at..at + n]);
        at += n;
    }
    let pieces = feed(reads.into_iter());
    assert_eq!(whole.frames, pieces.frames, "frames depend on read sizes");
    assert_eq!(whole.failed, pieces.failed);

    let mut offset = 0;
    for frame in &whole.frames {
        assert_eq!(&stream[offset..offset + frame.len()], frame.as_slice());
        offset += frame.len();
        assert_eq!(frame_len(frame), Ok(Some(frame.len())));
        match wire::classify(frame) {
            PacketKind::Stun => {
                assert!(frame.len() >= HEADER_LEN && frame.len() % 4 == 0);
            }
            PacketKind::ChannelData { len, .. } => {
                // Padded to 4 over streams: at most 3 bytes past the payload.
                let end = CHANNEL_HEADER_LEN + len;
                assert!(end <= frame.len() && frame.len() - end < 4);
            }
            PacketKind::Garbage => panic!("garbage passed as a frame"),
        }
    }
    if !whole.failed {
        assert_eq!(offset + whole.pending, stream.len());
    }
});
