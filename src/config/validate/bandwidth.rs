//! `turn.max_bps`, `turn.user_max_bps` and `turn.bps_capacity`.

use super::{Checked, Problem, TurnSection};

/// The lowest cap that carries a voice call (G.729's 8 kbit/s). A lower
/// value is far more likely a unit mistake (kbit/s for bit/s) than a wish
/// to relay nothing usable.
const MIN_BPS: u64 = 8000;

pub(super) fn check_bandwidth(turn: &TurnSection) -> Checked {
    for (key, value) in [
        ("turn.max_bps", turn.max_bps),
        ("turn.user_max_bps", turn.user_max_bps),
        ("turn.bps_capacity", turn.bps_capacity),
    ] {
        if value != 0 && value < MIN_BPS {
            let name = key.rsplit('.').next().unwrap_or(key);
            return Err(Problem::new(
                key,
                format!(
                    "{name} ({value}) is in bits per second, too few to relay media: \
                     0 (off) or at least {MIN_BPS}, e.g. 2500000 for 2.5 Mbit/s"
                ),
            ));
        }
    }
    Ok(())
}
