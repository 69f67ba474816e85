//! TURN over TLS (`turn.tls_listen` with a `[tls]` certificate made by rcgen):
//! TLS 1.3 and TLS 1.2 handshakes by a rustls client that trusts only the test
//! certificate, STUN and TURN over them, and certificate reload on SIGHUP
//! (established connections keep theirs, new ones get the new certificate, a
//! broken file is refused and changes nothing).

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use crate::common::*;
use rustls::ProtocolVersion;

fn tls_config(files: &TlsFiles) -> Config {
    Config {
        tls_listen: vec![SocketAddr::from((Ipv4Addr::LOCALHOST, 0))],
        extra_toml: files.toml(),
        ..Config::allow_loopback()
    }
}

fn tls_addr(daemon: &Daemon) -> SocketAddr {
    daemon.config.tls_listen[0]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls13_and_tls12_handshakes_carry_binding_and_allocate() {
    let cert = TestCert::new(1);
    let files = TlsFiles::new(&cert);
    let mut daemon = Daemon::start(tls_config(&files));
    let addr = tls_addr(&daemon);
    let echo = EchoPeer::start().await;

    for (version, want) in [
        (&rustls::version::TLS13, ProtocolVersion::TLSv1_3),
        (&rustls::version::TLS12, ProtocolVersion::TLSv1_2),
    ] {
        let tls = tls_connect(addr, client_config(&[&cert], &[version], &[])).await;
        assert_eq!(tls_version(&tls), Some(want), "negotiated TLS version");
        assert_eq!(
            peer_leaf(&tls),
            cert.der,
            "the server presents the configured certificate"
        );
        let local = tls.get_ref().0.local_addr().expect("local addr");
        let mut c = StreamClient::new(tls).with_creds(Creds::valid(&format!("tls-{want:?}")));
        let mapped = c.binding_ok(&format!("Binding over {want:?}")).await;
        assert_eq!(mapped, local, "reflexive address over TLS");

        // A Binding cut across two TLS records.
        let req = binding_request(true);
        c.send_raw(&req.raw[..7]).await;
        // A pause on purpose: the server reads the first part alone.
        tokio::time::sleep(Duration::from_millis(100)).await;
        c.send_raw(&req.raw[7..]).await;
        expect_success(
            &c.response_to(req.transaction_id).await,
            "Binding cut across TLS records",
        );

        c.prime().await;
        let relayed = c.allocate_ok().await;
        let (min, max) = daemon.relay_ports();
        assert!((min..=max).contains(&relayed.port()), "relayed {relayed}");
        expect_success(
            &c.channel_bind(0x4abc, echo.addr).await,
            "ChannelBind over TLS",
        );
        c.send_raw(&channel_data_padded(0x4abc, b"over tls!")).await;
        match c.recv_data_frame(ARRIVE).await {
            Some((Incoming::ChannelData { number, data }, raw)) => {
                assert_eq!(number, 0x4abc);
                assert_eq!(data, b"over tls!");
                assert_eq!(raw.len(), 16, "9 bytes of ChannelData padded to 16");
            }
            other => panic!("expected ChannelData echoed over {want:?}, got {other:?}"),
        }
    }

    // A client that does not trust the certificate fails the handshake, and
    // the listener keeps serving.
    let stranger = TestCert::new(99);
    let refused = try_tls_connect(addr, client_config(&[&stranger], &[], &[])).await;
    assert!(
        refused.is_err(),
        "a client trusting another certificate must not complete the handshake"
    );
    let tls = tls_connect(addr, client_config(&[&cert], &[], &[])).await;
    StreamClient::new(tls)
        .binding_ok("Binding after a failed handshake")
        .await;

    // Plain TCP to the TLS port: the first bytes are not a ClientHello.
    let mut plain = StreamClient::new(tcp_connect(addr).await);
    plain.send_raw(&binding_request(true).raw).await;
    match plain.read_frame(Duration::from_secs(3)).await {
        Ok(f) => panic!("the TLS port answered plain STUN: {:02x?}", f),
        Err(End::Timeout) => panic!("the TLS port neither answered nor closed for plain STUN"),
        Err(End::Eof) | Err(End::Error(_)) => {}
    }
    daemon.assert_alive();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_certificate_for_new_connections_only() {
    let cert_a = TestCert::new(0xA);
    let cert_b = TestCert::new(0xB);
    assert_ne!(cert_a.der, cert_b.der);
    let files = TlsFiles::new(&cert_a);
    let mut daemon = Daemon::start(tls_config(&files));
    let addr = tls_addr(&daemon);
    let trust_both = client_config(&[&cert_a, &cert_b], &[], &[]);

    let old = tls_connect(addr, trust_both.clone()).await;
    assert_eq!(peer_leaf(&old), cert_a.der, "before reload: certificate A");
    let mut old = StreamClient::new(old).with_creds(Creds::valid("reload-old"));
    old.binding_ok("Binding on the old connection before reload")
        .await;
    old.allocate_ok().await;

    files.install(&cert_b);
    send_signal(daemon.pid(), libc::SIGHUP);
    wait_log(&daemon, "configuration reloaded", 1, ARRIVE).await;

    old.binding_ok("Binding on the connection made before the reload")
        .await;
    expect_success(
        &old.create_permission(&[SocketAddr::from((Ipv4Addr::LOCALHOST, 9))])
            .await,
        "CreatePermission on the old connection after reload",
    );
    let new = tls_connect(addr, trust_both.clone()).await;
    assert_eq!(
        peer_leaf(&new),
        cert_b.der,
        "a connection after the reload must see certificate B"
    );
    StreamClient::new(new)
        .binding_ok("Binding on a new connection after reload")
        .await;
    // Only B is trusted: the handshake must succeed against it alone, and a
    // client trusting only A must now fail.
    tls_connect(addr, client_config(&[&cert_b], &[], &[])).await;
    assert!(
        try_tls_connect(addr, client_config(&[&cert_a], &[], &[]))
            .await
            .is_err(),
        "after the reload certificate A must no longer be served"
    );

    // A broken certificate file: the reload is refused, B stays.
    std::fs::write(&files.cert, "-----BEGIN CERTIFICATE-----\nnot base64!\n")
        .expect("write broken cert");
    send_signal(daemon.pid(), libc::SIGHUP);
    wait_log(&daemon, "reload refused", 1, ARRIVE).await;
    let after = tls_connect(addr, trust_both.clone()).await;
    assert_eq!(
        peer_leaf(&after),
        cert_b.der,
        "a refused reload keeps certificate B"
    );
    StreamClient::new(after)
        .binding_ok("Binding after a refused reload")
        .await;

    // A key that does not belong to the certificate: refused too.
    let cert_c = TestCert::new(0xC);
    std::fs::write(&files.cert, &cert_c.cert_pem).expect("write cert C");
    std::fs::write(&files.key, &cert_a.key_pem).expect("write key A");
    send_signal(daemon.pid(), libc::SIGHUP);
    wait_log(&daemon, "reload refused", 2, ARRIVE).await;
    let after = tls_connect(addr, trust_both.clone()).await;
    assert_eq!(
        peer_leaf(&after),
        cert_b.der,
        "a mismatched key is refused and B stays"
    );

    // A missing key file: refused.
    std::fs::remove_file(&files.key).expect("remove key");
    send_signal(daemon.pid(), libc::SIGHUP);
    wait_log(&daemon, "reload refused", 3, ARRIVE).await;
    assert_eq!(
        peer_leaf(&tls_connect(addr, trust_both.clone()).await),
        cert_b.der
    );

    // The old connection from before every reload still relays.
    old.binding_ok("Binding on the first connection at the end")
        .await;
    let log = plain_log(&daemon);
    assert!(
        log.contains("reload refused"),
        "the log says the reload was refused"
    );
    assert_eq!(
        log.matches("configuration reloaded").count(),
        1,
        "only the first reload succeeded"
    );
    daemon.assert_alive();
}
