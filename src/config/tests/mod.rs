use super::values::parse_cidr;
use super::*;
use ipnet::IpNet;
use std::collections::BTreeSet;
use std::net::Ipv6Addr;

fn addr(text: &str) -> SocketAddr {
    text.parse().unwrap()
}

fn net(text: &str) -> IpNet {
    text.parse().unwrap()
}

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, "config.toml")
}

fn error_of(text: &str) -> ConfigError {
    match parse(text) {
        Ok(config) => panic!("expected an error, got {config:?}\nfrom:\n{text}"),
        Err(e) => e,
    }
}

/// Asserts the error's key and line, and that its message contains `fragment`.
#[track_caller]
fn assert_error(text: &str, key: &str, line: usize, fragment: &str) {
    let e = error_of(text);
    assert_eq!(e.key.as_deref(), Some(key), "key of {e}");
    assert_eq!(e.line, Some(line), "line of {e}");
    assert!(e.message.contains(fragment), "{e:?} lacks {fragment:?}");
    assert_eq!(e.origin, "config.toml");
}

/// A [turn] section whose line 5 is `line5`, with ordinary lines around it.
fn turn_with_line5(line5: &str) -> String {
    format!(
        "# test\n[turn]\nrealm = \"example.org\"\nworkers = 2\n{line5}\nuser_quota = 5\n\n[log]\nlevel = \"debug\"\n"
    )
}

fn auth_with_line5(line5: &str) -> String {
    format!("# test\n\n[auth]\ncredential_ttl = 3600\n{line5}\nexpiry_grace = 5\n")
}

fn http_with_line5(line5: &str) -> String {
    format!("# test\n[http]\napi_requests_per_minute = 30\n\n{line5}\n")
}

fn expected_defaults() -> Config {
    Config {
        turn: TurnSection {
            listen: vec![addr("0.0.0.0:3478")],
            realm: "natbridge".into(),
            relay_ip: IpSetting::Auto,
            relay_ipv6: IpSetting::None,
            external_ip: IpSetting::Auto,
            external_ipv6: IpSetting::Auto,
            relay_port_min: 49152,
            relay_port_max: 65535,
            workers: 0,
            batch_delay_us: 1000,
            xdp: crate::xdp::XdpSetting::Auto,
            xdp_interface: String::new(),
            default_lifetime: 600,
            max_lifetime: 3600,
            nonce_lifetime: 600,
            user_quota: 10,
            max_allocations: 10000,
            max_permissions: 64,
            max_channels: 128,
            unauth_replies_per_ip: 100,
            max_bps: 0,
            user_max_bps: 0,
            bps_capacity: 0,
            tcp: true,
            tls_listen: vec![],
            max_stream_connections: 10000,
            max_stream_connections_per_ip: 64,
            tls_handshake_timeout: 10,
            stream_idle_timeout: 30,
            stream_send_queue: 512,
            stream_send_queue_bytes: 524288,
            alternate_servers: vec![],
        },
        auth: AuthSection {
            secrets: None,
            credential_ttl: 86400,
            expiry_grace: 0,
            open_credential_ttl: 3600,
            max_ttl: 0,
        },
        peers: PeerSection {
            allow: vec![],
            deny: vec![],
            allow_lan: false,
        },
        log: LogSection {
            level: "info".into(),
            format: LogFormat::Text,
        },
        http: HttpSection {
            listen: addr("0.0.0.0:8080"),
            public_host: "auto".into(),
            api_keys: vec![],
            admin_token: String::new(),
            admin_listen: String::new(),
            api_requests_per_minute: 60,
            tls: false,
            redirect_listen: String::new(),
            header_read_timeout_ms: 10000,
            keepalive_idle_timeout_ms: 5000,
            max_header_bytes: 16384,
            max_connections: 4096,
            max_connections_per_ip: 64,
            trusted_proxies: vec![],
            proxy_header: ProxyHeader::XForwardedFor,
        },
        tls: TlsSection {
            cert: String::new(),
            key: String::new(),
        },
        signaling: SignalingSection {
            room_capacity: 8,
            jwt_secret: String::new(),
            jwt_max_lifetime: 86400,
            allowed_origins: vec![],
            max_message_bytes: 65536,
            messages_per_second: 50,
            burst: 100,
            max_connections: 10000,
            max_connections_per_ip: 100,
            join_timeout: 10,
            heartbeat_interval: 20,
            resume_grace: 20,
            send_queue: 256,
            peer_queue_bytes: 1048576,
            total_queue_bytes: 67108864,
        },
        service: ServiceSection { drain_timeout: 30 },
        metrics: MetricsSection {
            listen: "http".into(),
            allow: vec![net("127.0.0.0/8"), net("::1/128")],
        },
        cluster: ClusterSection {
            redis_url: String::new(),
            redis_ca_file: String::new(),
            node_id: "auto".into(),
            key_prefix: "natbridge".into(),
            heartbeat_ms: 1000,
            node_timeout_ms: 3000,
        },
        webhooks: WebhooksSection {
            urls: vec![],
            secret: String::new(),
            timeout_ms: 5000,
            queue_bytes: 4194304,
            max_attempts: 5,
            backoff_base_ms: 500,
            backoff_max_ms: 30000,
            flush_timeout_ms: 5000,
        },
    }
}

/// Every field different from its default.
fn everything_changed() -> Config {
    Config {
        turn: TurnSection {
            listen: vec![addr("192.0.2.10:3478"), addr("[2001:db8::1]:3479")],
            realm: "example.org".into(),
            relay_ip: IpSetting::Ip("192.0.2.10".parse().unwrap()),
            relay_ipv6: IpSetting::Auto,
            external_ip: IpSetting::Ip("198.51.100.7".parse().unwrap()),
            external_ipv6: IpSetting::Ip("2001:db8::7".parse().unwrap()),
            relay_port_min: 40000,
            relay_port_max: 40999,
            workers: 4,
            batch_delay_us: 250,
            xdp: crate::xdp::XdpSetting::Off,
            xdp_interface: "eth1".into(),
            default_lifetime: 300,
            max_lifetime: 7200,
            nonce_lifetime: 120,
            user_quota: 3,
            max_allocations: 500,
            max_permissions: 16,
            max_channels: 4096,
            unauth_replies_per_ip: 100,
            max_bps: 2_000_000,
            user_max_bps: 3_000_000,
            bps_capacity: 900_000_000,
            tcp: false,
            tls_listen: vec![addr("0.0.0.0:5349"), addr("[::]:443")],
            max_stream_connections: 100,
            max_stream_connections_per_ip: 100,
            tls_handshake_timeout: 120,
            stream_idle_timeout: 3600,
            stream_send_queue: 8,
            stream_send_queue_bytes: 262144,
            alternate_servers: vec![addr("192.0.2.11:3478"), addr("[2001:db8::2]:3478")],
        },
        auth: AuthSection {
            secrets: Some(vec!["new \"quoted\" secret".into(), "old-secret".into()]),
            credential_ttl: 600,
            expiry_grace: 30,
            open_credential_ttl: 60,
            max_ttl: 900,
        },
        peers: PeerSection {
            allow: vec![net("10.1.2.3/32"), net("fd00::/8")],
            deny: vec![net("203.0.113.0/24")],
            allow_lan: true,
        },
        log: LogSection {
            level: "natbridge=trace,warn".into(),
            format: LogFormat::Json,
        },
        http: HttpSection {
            listen: addr("[::]:8443"),
            public_host: "turn.example.com".into(),
            api_keys: vec!["app-key-one".into(), "app-key-two".into()],
            admin_token: "admin-token-0123456789".into(),
            admin_listen: "127.0.0.1:8081".into(),
            api_requests_per_minute: 120,
            tls: true,
            redirect_listen: "0.0.0.0:80".into(),
            header_read_timeout_ms: 2000,
            keepalive_idle_timeout_ms: 2000,
            max_header_bytes: 1024,
            max_connections: 100,
            max_connections_per_ip: 100,
            trusted_proxies: vec![net("10.0.0.0/8"), net("::1/128")],
            proxy_header: ProxyHeader::Forwarded,
        },
        tls: TlsSection {
            cert: "/etc/letsencrypt/live/turn.example.com/fullchain.pem".into(),
            key: "/etc/natbridge/key \"quoted\".pem".into(),
        },
        signaling: SignalingSection {
            room_capacity: 2,
            jwt_secret: "jwt \"secret\" 0123456789".into(),
            jwt_max_lifetime: 60,
            allowed_origins: vec![
                "https://meet.example.com".into(),
                "http://localhost:3000".into(),
            ],
            max_message_bytes: 256,
            messages_per_second: 10,
            burst: 1,
            max_connections: 500,
            max_connections_per_ip: 500,
            join_timeout: 3600,
            heartbeat_interval: 300,
            resume_grace: 0,
            send_queue: 8,
            peer_queue_bytes: 1024,
            total_queue_bytes: 1 << 40,
        },
        service: ServiceSection { drain_timeout: 0 },
        metrics: MetricsSection {
            listen: "127.0.0.1:9100".into(),
            allow: vec![net("192.0.2.0/24")],
        },
        cluster: ClusterSection {
            redis_url: "rediss://:redis-pass-4242@127.0.0.1:6390/2".into(),
            redis_ca_file: "/etc/natbridge/redis-ca.pem".into(),
            node_id: "edge-1".into(),
            key_prefix: "nb-test".into(),
            heartbeat_ms: 500,
            node_timeout_ms: 2000,
        },
        webhooks: WebhooksSection {
            urls: vec![
                "https://hooks.example.com/natbridge".into(),
                "http://127.0.0.1:9000/in?x=1".into(),
            ],
            secret: "webhook-secret-0123456789".into(),
            timeout_ms: 100,
            queue_bytes: 4096,
            max_attempts: 1,
            backoff_base_ms: 1,
            backoff_max_ms: 3_600_000,
            flush_timeout_ms: 0,
        },
    }
}

mod bandwidth;
mod cluster;
mod exposure_keys;
mod file;
mod queues;
mod semantics;
mod streams;
mod web;
mod webhooks;
