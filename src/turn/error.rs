//! The error answers the core gives, by name. A handler returns one of these;
//! the code and reason phrase live here once instead of at every refusal.

/// A STUN error response: its code and reason phrase (RFC 8489 §14.8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TurnError {
    pub code: u16,
    pub reason: &'static str,
}

const fn e(code: u16, reason: &'static str) -> TurnError {
    TurnError { code, reason }
}

pub const MISSING_TRANSPORT: TurnError = e(400, "Missing REQUESTED-TRANSPORT");
pub const BAD_TRANSPORT: TurnError = e(400, "Bad REQUESTED-TRANSPORT");
pub const BAD_EVEN_PORT: TurnError = e(400, "Bad EVEN-PORT");
pub const BAD_RESERVATION_TOKEN: TurnError = e(400, "Bad RESERVATION-TOKEN");
pub const BAD_REQUESTED_FAMILY: TurnError = e(400, "Bad REQUESTED-ADDRESS-FAMILY");
pub const BAD_ADDITIONAL_FAMILY: TurnError = e(400, "Bad ADDITIONAL-ADDRESS-FAMILY");
pub const CONFLICTING_ATTRIBUTES: TurnError = e(400, "Conflicting attributes");
pub const CONFLICTING_FAMILIES: TurnError = e(400, "Conflicting address family attributes");
pub const BAD_LIFETIME: TurnError = e(400, "Bad LIFETIME");
pub const BAD_PEER_ADDRESS: TurnError = e(400, "Missing or bad XOR-PEER-ADDRESS");
pub const BAD_CHANNEL_NUMBER: TurnError = e(400, "Missing or bad CHANNEL-NUMBER");
pub const CHANNEL_OUT_OF_RANGE: TurnError = e(400, "Channel number out of range");
pub const CHANNEL_CONFLICT: TurnError = e(400, "Channel already bound differently");
pub const FORBIDDEN: TurnError = e(403, "Forbidden");
pub const ALLOCATION_MISMATCH: TurnError = e(437, "Allocation Mismatch");
pub const FAMILY_NOT_SUPPORTED: TurnError = e(440, "Address Family not Supported");
pub const WRONG_CREDENTIALS: TurnError = e(441, "Wrong Credentials");
pub const UNSUPPORTED_TRANSPORT: TurnError = e(442, "Unsupported Transport Protocol");
pub const PEER_FAMILY_MISMATCH: TurnError = e(443, "Peer Address Family Mismatch");
pub const QUOTA_REACHED: TurnError = e(486, "Allocation Quota Reached");
/// RFC 8489 §14.8's reason phrase; sent with ALTERNATE-SERVER.
pub const TRY_ALTERNATE: TurnError = e(300, "Try Alternate");
pub const SERVER_ERROR: TurnError = e(500, "Server Error");
pub const INSUFFICIENT_CAPACITY: TurnError = e(508, "Insufficient Capacity");
pub const SHUTTING_DOWN: TurnError = e(508, "Server Shutting Down");
pub const UNKNOWN_RESERVATION: TurnError = e(508, "Unknown Reservation Token");
pub const TOO_MANY_PERMISSIONS: TurnError = e(508, "Too Many Permissions");
pub const TOO_MANY_CHANNELS: TurnError = e(508, "Too Many Channels");
