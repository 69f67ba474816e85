//! `turn.max_bps`, `turn.user_max_bps` and `turn.bps_capacity`.

use super::*;

const KEYS: [&str; 3] = ["max_bps", "user_max_bps", "bps_capacity"];

#[test]
fn caps_are_off_by_default_and_take_bits_per_second() {
    let t = Config::default().turn;
    assert_eq!((t.max_bps, t.user_max_bps, t.bps_capacity), (0, 0, 0));
    let t = parse("[turn]\nmax_bps = 2500000\nuser_max_bps = 8000\nbps_capacity = 0\n")
        .unwrap()
        .turn;
    assert_eq!(
        (t.max_bps, t.user_max_bps, t.bps_capacity),
        (2_500_000, 8000, 0)
    );
}

#[test]
fn negative_or_fractional_caps_name_key_and_line() {
    for key in KEYS {
        assert_error(
            &turn_with_line5(&format!("{key} = -1")),
            &format!("turn.{key}"),
            5,
            "expected a non-negative integer",
        );
        let e = error_of(&turn_with_line5(&format!("{key} = 1.5")));
        assert_eq!(e.key.as_deref(), Some(format!("turn.{key}").as_str()));
        assert_eq!(e.line, Some(5), "{e}");
        assert!(e.message.contains("integer"), "{e}");
        let e = error_of(&turn_with_line5(&format!("{key} = \"1M\"")));
        assert_eq!(e.key.as_deref(), Some(format!("turn.{key}").as_str()));
        assert_eq!(e.line, Some(5), "{e}");
    }
}

#[test]
fn caps_below_8000_are_unit_mistakes() {
    for key in KEYS {
        assert_error(
            &turn_with_line5(&format!("{key} = 800")),
            &format!("turn.{key}"),
            5,
            "0 (off) or at least 8000",
        );
        parse(&format!("[turn]\n{key} = 8000\n")).unwrap();
    }
}
