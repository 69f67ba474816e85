//! STUN/TURN message decoding (`turn::wire`) and every attribute accessor
//! the core uses, on arbitrary bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use natbridge::turn::wire::{self, DecodeError, PacketKind, Reply};
use stun::attributes::*;

const TEXT_ATTRS: [AttrType; 4] = [ATTR_USERNAME, ATTR_REALM, ATTR_NONCE, ATTR_SOFTWARE];
const U32_ATTRS: [AttrType; 3] = [ATTR_LIFETIME, ATTR_REQUESTED_TRANSPORT, ATTR_CHANNEL_NUMBER];

fuzz_target!(|data: &[u8]| {
    match wire::classify(data) {
        PacketKind::ChannelData { channel, len } => {
            assert!((0x4000..=0x7FFF).contains(&channel));
            assert!(len <= usize::from(u16::MAX));
        }
        PacketKind::Stun | PacketKind::Garbage => {}
    }
    let found = wire::find_attr(data, ATTR_DATA);
    if let Some((start, len)) = found {
        assert!(start + len <= data.len());
    }
    match wire::decode(data) {
        Ok(mut msg) => {
            // Decoding cost stays linear: the attribute count is capped.
            assert!(msg.attributes.0.len() <= wire::MAX_ATTRIBUTES);
            let _ = wire::has_fingerprint(&msg);
            assert!(wire::covered_attributes(&msg).count() <= msg.attributes.0.len());
            let unknown = wire::unknown_required(&msg, &[ATTR_USERNAME]);
            assert!(unknown.iter().all(|t| t.0 < 0x8000 && *t != ATTR_USERNAME));
            for t in TEXT_ATTRS {
                if let Ok(Some(text)) = wire::text_attr(&msg, t, 763) {
                    assert!(text.len() <= 763);
                }
            }
            for t in U32_ATTRS {
                let _ = wire::u32_attr(&msg, t);
            }
            let _ = wire::peer_addresses(&msg);
            for a in &msg.attributes.0 {
                let _ = wire::xor_addr_value(&msg, &a.value);
            }
            // The zero-copy DATA lookup a Send indication relays from must
            // agree with the decoder on which bytes DATA holds.
            let decoded = msg
                .attributes
                .0
                .iter()
                .find(|a| a.typ == ATTR_DATA)
                .map(|a| a.value.as_slice());
            let raw = found.map(|(start, len)| &data[start..start + len]);
            assert_eq!(decoded, raw, "find_attr and the decoder disagree on DATA");
            let _ = wire::integrity_ok(&mut msg, b"fuzz key");
            // Whatever arrived, an answer to it is valid STUN.
            let answer = Reply::error(msg.typ.method, &msg, 400, "Bad Request")
                .finish(Some(b"fuzz key"), wire::has_fingerprint(&msg));
            assert!(wire::decode(&answer).is_ok());
        }
        Err(DecodeError::BadAttributes) => {
            // The core answers these with a 400 built from the header alone.
            if let Some(head) = wire::header_only(data) {
                let answer = Reply::error(head.typ.method, &head, 400, "Malformed attributes")
                    .finish(None, false);
                assert!(wire::decode(&answer).is_ok());
            }
        }
        Err(DecodeError::NotStun | DecodeError::BadFingerprint) => {
            let _ = wire::header_only(data);
        }
    }
});
