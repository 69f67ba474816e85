//! TURN requests decoded into typed values before anything acts on them: a
//! handler sees an `AllocateRequest`, never raw attributes, so every shape
//! check lives here and every decision in the handler.

use std::net::SocketAddr;

use stun::attributes::*;
use stun::message::Message;

use super::error::*;
use super::wire::{self, CHANNEL_MAX, CHANNEL_MIN};

/// REQUESTED-TRANSPORT's protocol number for UDP, the one relay transport.
pub const UDP_TRANSPORT: u8 = 17;
/// Address family codes of REQUESTED- and ADDITIONAL-ADDRESS-FAMILY.
pub const FAMILY_IPV4: u8 = 0x01;
pub const FAMILY_IPV6: u8 = 0x02;

/// A LIFETIME attribute as asked, before it is clamped to the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifetime {
    /// No LIFETIME: the default.
    Default,
    /// LIFETIME 0: delete (Refresh), invalid (Allocate).
    Zero,
    Seconds(u32),
}

/// Which relay families an Allocate asks for (RFC 8656 §7.2, RFC 8656 §18.9).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FamilyRequest {
    /// No family attribute, or REQUESTED-ADDRESS-FAMILY IPv4.
    V4,
    /// REQUESTED-ADDRESS-FAMILY IPv6.
    V6,
    /// ADDITIONAL-ADDRESS-FAMILY IPv6: IPv4 and, if we have it, IPv6.
    Dual,
    /// A REQUESTED-ADDRESS-FAMILY we do not know (440).
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllocateRequest {
    /// EVEN-PORT: `Some(reserve_next)` when present.
    pub even_port: Option<bool>,
    pub reservation: Option<[u8; 8]>,
    pub family: FamilyRequest,
    pub lifetime: Lifetime,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshRequest {
    /// REQUESTED-ADDRESS-FAMILY, when present: `None` inside for an unknown
    /// family (440).
    pub family: Option<Option<super::Family>>,
    pub lifetime: Lifetime,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PermissionRequest {
    pub peers: Vec<SocketAddr>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelBindRequest {
    pub number: u16,
    pub peer: SocketAddr,
}

fn lifetime(msg: &Message) -> Result<Lifetime, TurnError> {
    match wire::u32_attr(msg, ATTR_LIFETIME) {
        Ok(None) => Ok(Lifetime::Default),
        Ok(Some(0)) => Ok(Lifetime::Zero),
        Ok(Some(secs)) => Ok(Lifetime::Seconds(secs)),
        Err(_) => Err(BAD_LIFETIME),
    }
}

/// The family byte of a 4-byte family attribute.
fn family_byte(msg: &Message, t: AttrType, bad: TurnError) -> Result<Option<u8>, TurnError> {
    match wire::attr(msg, t) {
        None => Ok(None),
        Some([f, _, _, _]) => Ok(Some(*f)),
        Some(_) => Err(bad),
    }
}

impl AllocateRequest {
    pub fn parse(msg: &Message) -> Result<AllocateRequest, TurnError> {
        match wire::attr(msg, ATTR_REQUESTED_TRANSPORT) {
            None => return Err(MISSING_TRANSPORT),
            Some([UDP_TRANSPORT, _, _, _]) => {}
            Some([_, _, _, _]) => return Err(UNSUPPORTED_TRANSPORT),
            Some(_) => return Err(BAD_TRANSPORT),
        }
        let even_port = match wire::attr(msg, ATTR_EVEN_PORT) {
            None => None,
            Some([b]) => Some(b & 0x80 != 0),
            Some(_) => return Err(BAD_EVEN_PORT),
        };
        let reservation = match wire::attr(msg, ATTR_RESERVATION_TOKEN) {
            None => None,
            Some(&[a, b, c, d, e, f, g, h]) => Some([a, b, c, d, e, f, g, h]),
            Some(_) => return Err(BAD_RESERVATION_TOKEN),
        };
        let requested = family_byte(msg, ATTR_REQUESTED_ADDRESS_FAMILY, BAD_REQUESTED_FAMILY)?;
        let additional = family_byte(
            msg,
            wire::ATTR_ADDITIONAL_ADDRESS_FAMILY,
            BAD_ADDITIONAL_FAMILY,
        )?;
        if reservation.is_some()
            && (even_port.is_some() || requested.is_some() || additional.is_some())
        {
            return Err(CONFLICTING_ATTRIBUTES);
        }
        let family = match (requested, additional) {
            (Some(_), Some(_)) => return Err(CONFLICTING_FAMILIES),
            (None | Some(FAMILY_IPV4), None) => FamilyRequest::V4,
            (Some(FAMILY_IPV6), None) => FamilyRequest::V6,
            (Some(_), None) => FamilyRequest::Unknown,
            (None, Some(FAMILY_IPV6)) => FamilyRequest::Dual,
            (None, Some(_)) => return Err(BAD_ADDITIONAL_FAMILY),
        };
        Ok(AllocateRequest {
            even_port,
            reservation,
            family,
            lifetime: lifetime(msg)?,
        })
    }
}

impl RefreshRequest {
    pub fn parse(msg: &Message) -> Result<RefreshRequest, TurnError> {
        let family = wire::attr(msg, ATTR_REQUESTED_ADDRESS_FAMILY).map(|v| match v.first() {
            Some(&FAMILY_IPV4) => Some(super::Family::V4),
            Some(&FAMILY_IPV6) => Some(super::Family::V6),
            _ => None,
        });
        Ok(RefreshRequest {
            family,
            lifetime: lifetime(msg)?,
        })
    }
}

impl PermissionRequest {
    pub fn parse(msg: &Message) -> Result<PermissionRequest, TurnError> {
        match wire::peer_addresses(msg) {
            Ok(peers) if !peers.is_empty() => Ok(PermissionRequest { peers }),
            _ => Err(BAD_PEER_ADDRESS),
        }
    }
}

impl ChannelBindRequest {
    pub fn parse(msg: &Message) -> Result<ChannelBindRequest, TurnError> {
        let number = match wire::attr(msg, ATTR_CHANNEL_NUMBER) {
            Some(&[a, b, _, _]) => u16::from_be_bytes([a, b]),
            _ => return Err(BAD_CHANNEL_NUMBER),
        };
        if !(CHANNEL_MIN..=CHANNEL_MAX).contains(&number) {
            return Err(CHANNEL_OUT_OF_RANGE);
        }
        let peer = match wire::peer_addresses(msg).as_deref() {
            Ok([peer, ..]) => *peer,
            _ => return Err(BAD_PEER_ADDRESS),
        };
        Ok(ChannelBindRequest { number, peer })
    }
}
