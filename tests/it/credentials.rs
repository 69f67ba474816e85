//! TURN REST API credentials on the wire: which usernames and passwords the
//! daemon accepts (valid, signed with an older secret still in the list, within
//! the expiry grace) and which it refuses with 401 carrying REALM and NONCE
//! (expired, wrong password, unknown secret, malformed username). Also: a
//! credential minted by `natbridge creds` from the same config is accepted.

use std::time::Duration;

use crate::common::*;
use stun::attributes::*;
use stun::message::*;

/// An Allocate with `creds`; returns the final response (after the 401 dance).
async fn allocate_with(daemon: &Daemon, creds: Creds) -> (UdpClient, Message) {
    let mut c = daemon.client().await.with_creds(creds);
    let res = c.allocate().await;
    (c, res)
}

#[track_caller]
fn expect_401(res: &Message, what: &str) {
    expect_error(res, 401, what);
    assert_eq!(
        text_attr(res, ATTR_REALM).as_deref(),
        Some(REALM),
        "{what}: a 401 must carry REALM: {}",
        describe(res)
    );
    assert!(
        text_attr(res, ATTR_NONCE).is_some_and(|n| !n.is_empty()),
        "{what}: a 401 must carry a NONCE: {}",
        describe(res)
    );
    assert!(
        !res.contains(ATTR_XOR_RELAYED_ADDRESS),
        "{what}: no relay on a 401"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valid_credential_is_accepted_and_response_is_signed() {
    let daemon = Daemon::start(Config::default());
    let creds = Creds::valid("alice");
    let (c, res) = allocate_with(&daemon, creds.clone()).await;
    expect_success(&res, "Allocate with a valid REST credential");
    assert!(
        integrity_ok(&res, &creds, REALM),
        "response MESSAGE-INTEGRITY must use MD5(username:realm:password)"
    );
    // The same user may hold several allocations (quota 10 by default).
    drop(c);
    let (_c2, res) = allocate_with(&daemon, Creds::valid("alice")).await;
    expect_success(&res, "second allocation of the same user");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_credential_is_401() {
    let daemon = Daemon::start(Config::default());
    let creds = Creds::rest(SECRET, "alice", now_unix() - 10);
    let (_c, res) = allocate_with(&daemon, creds).await;
    expect_401(&res, "Allocate with a credential that expired 10 s ago");
}

/// Issue 11, finding 16: with `auth.max_ttl`, a credential (correctly
/// signed) whose expiry lies further ahead than that is refused, and the log
/// says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credential_beyond_max_ttl_is_401() {
    let daemon = Daemon::start(Config {
        credential_ttl: Some(3600),
        max_ttl: Some(7200),
        ..Config::default()
    });
    let creds = Creds::rest(SECRET, "alice", now_unix() + 30 * 86400);
    let (_c, res) = allocate_with(&daemon, creds).await;
    expect_401(&res, "Allocate with a credential valid for 30 days");
    wait_log(&daemon, "ttl_too_long", 1, Duration::from_secs(5)).await;
    assert!(
        daemon.log().contains("ttl_too_long"),
        "the 401 is logged with reason ttl_too_long:\n{}",
        daemon.log()
    );
    let creds = Creds::rest(SECRET, "alice", now_unix() + 3600);
    let (_c, res) = allocate_with(&daemon, creds).await;
    expect_success(&res, "Allocate with a credential within max_ttl");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_is_401() {
    let daemon = Daemon::start(Config::default());
    let mut creds = Creds::valid("alice");
    creds.password = rest_password(SECRET, "some-other-username");
    let (_c, res) = allocate_with(&daemon, creds).await;
    expect_401(&res, "Allocate with a wrong password");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_secret_still_in_the_list_is_accepted() {
    let daemon = Daemon::start(Config::default());
    let creds = Creds::rest(OLD_SECRET, "alice", now_unix() + 600);
    let (_c, res) = allocate_with(&daemon, creds.clone()).await;
    expect_success(&res, "Allocate signed with the second secret in the list");
    assert!(
        integrity_ok(&res, &creds, REALM),
        "the response must be signed with the key of the password that verified"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_secret_is_401() {
    let daemon = Daemon::start(Config::default());
    let creds = Creds::rest("a-secret-the-daemon-never-had", "alice", now_unix() + 600);
    let (_c, res) = allocate_with(&daemon, creds).await;
    expect_401(&res, "Allocate signed with a secret not in the list");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_usernames_are_401() {
    let daemon = Daemon::start(Config::default());
    let ms = (now_unix() + 600) * 1000;
    for username in [
        "alice".to_string(),
        format!("{}", now_unix() + 600),
        format!("{ms}:alice"),
        format!(":{}", "alice"),
        format!("{}:", now_unix() + 600),
        format!("12ab:{}", "alice"),
    ] {
        let password = rest_password(SECRET, &username);
        let (_c, res) = allocate_with(
            &daemon,
            Creds {
                username: username.clone(),
                password,
            },
        )
        .await;
        expect_401(
            &res,
            &format!("Allocate with malformed username {username:?}"),
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiry_grace_accepts_recently_expired_credentials() {
    let daemon = Daemon::start(Config {
        expiry_grace: Some(60),
        ..Config::default()
    });
    let (_c, res) = allocate_with(&daemon, Creds::rest(SECRET, "alice", now_unix() - 10)).await;
    expect_success(&res, "credential expired 10 s ago with expiry_grace = 60");
    let (_c, res) = allocate_with(&daemon, Creds::rest(SECRET, "alice", now_unix() - 300)).await;
    expect_401(&res, "credential expired 300 s ago with expiry_grace = 60");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_on_an_allocation_need_the_same_username() {
    // RFC 8656 section 5: later requests on an allocation must use the same
    // username as the Allocate.
    let daemon = Daemon::start(Config::default());
    let (mut c, res) = allocate_with(&daemon, Creds::valid("alice")).await;
    expect_success(&res, "Allocate as alice");
    c.creds = Some(Creds::valid("mallory"));
    let res = c.refresh(Some(600)).await;
    assert_eq!(
        res.typ.class,
        CLASS_ERROR_RESPONSE,
        "Refresh with another user's valid credential must fail: {}",
        describe(&res)
    );
    assert!(
        matches!(error_code(&res), Some(401) | Some(441)),
        "expected 401 or 441 (wrong credentials), got {}",
        describe(&res)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credential_from_creds_command_is_accepted_by_the_daemon() {
    let daemon = Daemon::start(Config::default());
    let out = run_cli(
        &[
            "creds",
            "--config",
            path_str(&daemon.config_path),
            "--user",
            "from-cli",
            "--ttl",
            "600",
        ],
        Duration::from_secs(20),
    );
    assert!(
        out.status.success(),
        "natbridge creds failed: {}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "creds output is not JSON ({e}):\n{}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    let creds = Creds {
        username: json["username"]
            .as_str()
            .expect("username string")
            .to_string(),
        password: json["credential"]
            .as_str()
            .expect("credential string")
            .to_string(),
    };
    let (_c, res) = allocate_with(&daemon, creds).await;
    expect_success(&res, "Allocate with a credential from `natbridge creds`");
}
