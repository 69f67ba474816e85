//! Values written in the file as strings: address settings, socket addresses
//! and CIDR ranges. Each parser names the bad value and says what was
//! expected, because serde's own messages ("invalid IP address syntax") do not.

use ipnet::IpNet;
use serde::de::Visitor;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::marker::PhantomData;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

/// An address setting written in TOML as a string: "auto", "none", or an IP
/// address literal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpSetting {
    Auto,
    None,
    Ip(IpAddr),
}

impl fmt::Display for IpSetting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IpSetting::Auto => f.write_str("auto"),
            IpSetting::None => f.write_str("none"),
            IpSetting::Ip(ip) => ip.fmt(f),
        }
    }
}

impl FromStr for IpSetting {
    type Err = String;

    fn from_str(text: &str) -> Result<IpSetting, String> {
        if text.eq_ignore_ascii_case("auto") {
            return Ok(IpSetting::Auto);
        }
        if text.eq_ignore_ascii_case("none") {
            return Ok(IpSetting::None);
        }
        text.parse::<IpAddr>().map(IpSetting::Ip).map_err(|_| {
            format!(r#"invalid address "{text}" (expected "auto", "none" or an IP address)"#)
        })
    }
}

impl Serialize for IpSetting {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for IpSetting {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<IpSetting, D::Error> {
        deserialize_config_string(deserializer)
    }
}

pub(super) fn parse_socket_addr(text: &str) -> Result<SocketAddr, String> {
    text.parse().map_err(|_| {
        format!(
            r#"invalid address "{text}" (expected IP:PORT such as "0.0.0.0:3478" or "[::]:3478")"#
        )
    })
}

/// Parses "a.b.c.d/len", "x::/len", or a bare address meaning a single host.
/// Host bits after the prefix are refused: "10.0.0.5/8" is more likely a
/// typo for "10.0.0.5/32" than a way to write "10.0.0.0/8", and guessing
/// wrong in an allow list opens a whole network.
pub(super) fn parse_cidr(text: &str) -> Result<IpNet, String> {
    let invalid = |reason: &str| format!(r#"invalid CIDR "{text}": {reason}"#);
    let Some((addr, prefix)) = text.split_once('/') else {
        return text
            .parse::<IpAddr>()
            .map(IpNet::from)
            .map_err(|_| invalid("not an IP address or ADDRESS/PREFIX"));
    };
    let addr: IpAddr = addr
        .parse()
        .map_err(|_| invalid(&format!(r#""{addr}" is not an IP address"#)))?;
    let max_prefix = if addr.is_ipv4() { 32 } else { 128 };
    let prefix: u8 = prefix
        .parse()
        .ok()
        .filter(|&len| len <= max_prefix)
        .ok_or_else(|| invalid(&format!("prefix length must be 0 to {max_prefix}")))?;
    let net = IpNet::new(addr, prefix).map_err(|e| invalid(&e.to_string()))?;
    if net.network() != addr {
        return Err(invalid(&format!(
            r#"address has bits set after the prefix (did you mean "{}" or "{addr}"?)"#,
            net.trunc()
        )));
    }
    Ok(net)
}

/// One `SocketAddr` as a string, with the same message as in a list.
pub(super) mod socket_addr {
    use super::*;

    pub fn serialize<S: Serializer>(addr: &SocketAddr, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(addr)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<SocketAddr, D::Error> {
        Element::<SocketAddr>::deserialize(deserializer).map(|e| e.0)
    }
}

/// `Vec<SocketAddr>` as an array of strings.
pub(super) mod socket_addr_list {
    use super::*;

    pub fn serialize<S: Serializer>(list: &[SocketAddr], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(list.iter().map(ToString::to_string))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<SocketAddr>, D::Error> {
        Vec::<Element<SocketAddr>>::deserialize(deserializer)
            .map(|list| list.into_iter().map(|e| e.0).collect())
    }
}

/// `Vec<IpNet>` as an array of strings.
pub(super) mod cidr_list {
    use super::*;

    pub fn serialize<S: Serializer>(list: &[IpNet], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(list.iter().map(ToString::to_string))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<IpNet>, D::Error> {
        Vec::<Element<IpNet>>::deserialize(deserializer)
            .map(|list| list.into_iter().map(|e| e.0).collect())
    }
}

/// One array element. Each is parsed inside the TOML deserializer's visit of
/// its string, so that an error gets the element's span (and thus its line)
/// rather than the whole array's.
struct Element<T>(T);

/// A value written in the file as a string with its own syntax.
trait ConfigString: Sized {
    fn parse_config_string(text: &str) -> Result<Self, String>;
}

impl ConfigString for SocketAddr {
    fn parse_config_string(text: &str) -> Result<SocketAddr, String> {
        parse_socket_addr(text)
    }
}

impl ConfigString for IpNet {
    fn parse_config_string(text: &str) -> Result<IpNet, String> {
        parse_cidr(text)
    }
}

impl ConfigString for IpSetting {
    fn parse_config_string(text: &str) -> Result<IpSetting, String> {
        text.parse()
    }
}

struct ConfigStringVisitor<T>(PhantomData<T>);

impl<T: ConfigString> Visitor<'_> for ConfigStringVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<T, E> {
        T::parse_config_string(text).map_err(E::custom)
    }
}

fn deserialize_config_string<'de, D: Deserializer<'de>, T: ConfigString>(
    deserializer: D,
) -> Result<T, D::Error> {
    deserializer.deserialize_str(ConfigStringVisitor(PhantomData))
}

impl<'de, T: ConfigString> Deserialize<'de> for Element<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Element<T>, D::Error> {
        deserialize_config_string(deserializer).map(Element)
    }
}
