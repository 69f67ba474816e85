//! Writes the fuzz targets' seed corpora (fuzz/seeds/<target>/) from real
//! inputs: the simulator's scripted client runs and the traffic they make,
//! the protocol's example messages, the shipped config file, minted
//! credentials and signed room tokens. Run it after changing a format:
//!
//! ```sh
//! cargo test --lib write_fuzz_seeds -- --ignored
//! ```

use std::path::{Path, PathBuf};

use crate::turn::sim::scripts::{findings, scripted_runs};
use crate::turn::sim::{Sim, codec};
use crate::turn::wire::{self, CHANNEL_HEADER_LEN, PacketKind};

fn seeds_dir(target: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/seeds")
        .join(target);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).unwrap();
    }
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    std::fs::write(dir.join(name), bytes).unwrap();
}

fn shape(bytes: &[u8]) -> Vec<u16> {
    match wire::decode(bytes) {
        Ok(msg) => std::iter::once(msg.typ.value())
            .chain(msg.attributes.0.iter().map(|a| a.typ.0))
            .collect(),
        Err(_) => vec![u16::from(bytes.first().copied().unwrap_or(0) >> 6)],
    }
}

fn turn_seeds() {
    let core = seeds_dir("turn_core");
    let stun = seeds_dir("stun_decode");
    let framing = seeds_dir("stream_framing");
    let mut messages: Vec<Vec<u8>> = Vec::new();
    let mut shapes: Vec<Vec<u16>> = Vec::new();
    for (name, cfg, ops) in scripted_runs() {
        write(&core, name, &codec::encode(&cfg, &ops));
        let mut sim = Sim::new(&cfg);
        sim.record_transcript();
        for op in &ops {
            sim.step(op).unwrap();
        }
        let mut stream = vec![name.len() as u8];
        for (client, bytes) in sim.transcript() {
            // One seed per shape (message type and attribute types) keeps
            // the corpus small without losing a kind of message.
            let shape = shape(bytes);
            if !shapes.contains(&shape) {
                shapes.push(shape);
                messages.push(bytes.clone());
            }
            if client.transport.is_stream() {
                stream.extend_from_slice(bytes);
                // ChannelData travels padded to 4 bytes over streams.
                if let PacketKind::ChannelData { len, .. } = wire::classify(bytes) {
                    let padded = (CHANNEL_HEADER_LEN + len + 3) & !3;
                    stream.resize(stream.len() + padded - bytes.len().min(padded), 0);
                }
            }
        }
        if stream.len() > 1 {
            write(&framing, name, &stream);
        }
    }
    for (i, m) in messages.iter().enumerate() {
        write(&stun, &format!("message_{i:02}"), m);
    }
    for (name, cfg, ops) in findings() {
        write(&core, name, &codec::encode(&cfg, &ops));
    }
    write(
        &framing,
        "tls_client_hello",
        &[0, 0x16, 0x03, 0x01, 0x02, 0x00, 0x01],
    );
}

fn signal_seeds() {
    let parse = seeds_dir("signal_parse");
    let messages = [
        r#"{"v":1,"type":"join","id":1,"room":"standup","name":"Ada"}"#,
        r#"{"type":"join","id":"j2","room":"standup","resume":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}"#,
        r#"{"type":"join","room":"standup","token":"eyJhbGciOiJIUzI1NiJ9.e30.x"}"#,
        r#"{"type":"signal","id":2,"to":"p1","kind":"offer","payload":{"type":"offer","sdp":"v=0\r\n"}}"#,
        r#"{"type":"signal","to":"p1","kind":"candidate","payload":{"candidate":"candidate:1 1 udp 2122260223 192.0.2.1 54400 typ host","sdpMid":"0"}}"#,
        r#"{"type":"state","audio":true,"video":false}"#,
        r#"{"type":"ping","t":12345}"#,
        r#"{"type":"ice.refresh","id":9}"#,
        r#"{"type":"leave"}"#,
        r#"{"type":"signal","to":"p1","kind":"nope"}"#,
        r#"{"type":"ping","v":2}"#,
        "[1,2,3]",
    ];
    for (i, m) in messages.iter().enumerate() {
        write(&parse, &format!("message_{i:02}"), m.as_bytes());
    }
    // What signal_parse found: escaping made a cut reason long again.
    let escapes = format!(
        r#"{{"type":"{}ffer","payload":{{"ype":"offer","sdp":"v=0\r\n"}}}}"#,
        "\u{7f}".repeat(54)
    );
    write(&parse, "finding_escaped_reason", escapes.as_bytes());
    // signal_registry reads 4-byte steps: op, a, b, c.
    let registry = seeds_dir("signal_registry");
    let join = |room: u8| [0, room, 3, 0];
    let scripts: [(&str, Vec<[u8; 4]>); 3] = [
        (
            "join_signal_leave",
            vec![
                join(0),
                join(0),
                [5, 0, 1, 10],
                [5, 1, 0, 3],
                [2, 0, 1, 0],
                [8, 0, 0, 0],
            ],
        ),
        (
            "detach_resume_expire",
            vec![
                join(1),
                join(1),
                [3, 0, 1, 0],
                [5, 1, 0, 7],
                [1, 0, 0, 1],
                [3, 1, 1, 0],
                [4, 1, 0, 0],
            ],
        ),
        (
            "takeover_and_full_room",
            vec![
                join(2),
                [1, 0, 0, 1],
                [0, 2, 0, 0],
                [0, 2, 0, 0],
                [7, 0, 0, 0],
                [9, 1, 0, 0],
            ],
        ),
    ];
    for (name, steps) in scripts {
        write(&registry, name, &steps.concat());
    }
}

fn config_seeds() {
    let dir = seeds_dir("config_parse");
    let shipped = include_str!("../config.toml");
    write(&dir, "shipped_config", shipped.as_bytes());
    let tour = "[turn]\nlisten = [\"0.0.0.0:3478\"]\nexternal_ip = \"203.0.113.10\"\n\n[auth]\nsecrets = [\"a-long-random-string\"]\n\n[peers]\nallow = [\"127.0.0.0/8\"]\n";
    write(&dir, "readme_tour", tour.as_bytes());
    write(&dir, "empty", b"");
}

fn credential_seeds() {
    let dir = seeds_dir("rest_creds");
    let now = 1_800_000_000u64.to_be_bytes();
    for (name, username) in [
        ("room_peer", "1800003600:standup/p1"),
        ("milliseconds", "1800003600000:alice"),
        ("expired", "1700000000:alice"),
        ("no_colon", "alice"),
        ("colons_in_user", "1800003600:a:b:c"),
    ] {
        let mut seed = now.to_vec();
        // One minute of grace; a maximum TTL of a day.
        seed.extend([1, 24]);
        seed.extend_from_slice(username.as_bytes());
        write(&dir, name, &seed);
    }
    let dir = seeds_dir("jwt_verify");
    let claims = br#"{"room":"standup","exp":4102444800,"name":"Ada"}"#;
    let mut seed = vec![0u8];
    seed.extend_from_slice(claims);
    write(&dir, "signed_claims", &seed);
    let mut seed = vec![5u8];
    seed.extend_from_slice(br#"{"alg":"HS256","typ":"JWT"}"#);
    seed.push(0);
    seed.extend_from_slice(br#"{"room":"other","exp":1}"#);
    write(&dir, "header_and_claims", &seed);
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &serde_json::json!({"room": "standup", "exp": 4_102_444_800u64}),
        &jsonwebtoken::EncodingKey::from_secret(b"0123456789abcdef-fuzz"),
    )
    .unwrap();
    let mut seed = vec![6u8];
    seed.extend_from_slice(token.as_bytes());
    write(&dir, "raw_token", &seed);
}

#[test]
#[ignore = "writes fuzz/seeds; run by hand after changing an input format"]
fn write_fuzz_seeds() {
    turn_seeds();
    signal_seeds();
    config_seeds();
    credential_seeds();
}
