//! The `turn` crate's client, an independent TURN implementation to test the
//! daemon against.

use std::net::Ipv4Addr;
use std::sync::Arc;

use tokio::net::UdpSocket;
use turn::client::{Client, ClientConfig};

use super::{Creds, Daemon};

/// A `turn` crate client of `daemon` with `creds`, listening (its read loop
/// started) on a fresh loopback socket.
pub async fn turn_client(daemon: &Daemon, creds: &Creds) -> Client {
    let conn = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("bind turn client socket");
    let server = daemon.addr.to_string();
    let client = Client::new(ClientConfig {
        stun_serv_addr: server.clone(),
        turn_serv_addr: server,
        username: creds.username.clone(),
        password: creds.password.clone(),
        realm: String::new(),
        software: String::new(),
        rto_in_ms: 0,
        conn: Arc::new(conn),
        vnet: None,
    })
    .await
    .expect("create turn client");
    client.listen().await.expect("turn client listen");
    client
}
