//! Who a request comes from behind a reverse proxy, sans IO.
//!
//! A proxy in `portal.web_proxies` appends the address it took the request
//! from to `X-Forwarded-For`, so the list's right end is written by proxies
//! the operator trusts and its left by whoever sent the request first,
//! who may have written anything. The client is the right-most address
//! that is not itself a listed proxy: everything to its left is only its
//! word. From a peer that is not listed the header is not read at all.

use std::net::{IpAddr, SocketAddr};

use ev::cidr::Cidr;

/// Whether `ip` is one of the proxies.
pub fn trusted(ip: IpAddr, proxies: &[Cidr]) -> bool {
    proxies.iter().any(|p| p.contains(ip))
}

/// The client's address for a request from `peer` carrying the
/// `X-Forwarded-For` header values `headers` (in order; several headers
/// are one list). Err says why the list cannot be read.
pub fn client<'a>(
    peer: IpAddr,
    headers: impl IntoIterator<Item = &'a [u8]>,
    proxies: &[Cidr],
) -> Result<IpAddr, String> {
    if !trusted(peer, proxies) {
        return Ok(peer.to_canonical());
    }
    let mut entries: Vec<&str> = Vec::new();
    for value in headers {
        let value =
            std::str::from_utf8(value).map_err(|_| "X-Forwarded-For is not text".to_string())?;
        entries.extend(value.split(',').map(str::trim).filter(|e| !e.is_empty()));
    }
    let mut client = peer.to_canonical();
    for entry in entries.iter().rev() {
        let ip = parse(entry)
            .ok_or_else(|| format!("X-Forwarded-For holds {entry:?}, which is no IP address"))?;
        client = ip;
        if !trusted(ip, proxies) {
            break;
        }
    }
    Ok(client)
}

/// One entry: an address, perhaps with a port (`192.0.2.1:4711`,
/// `[2001:db8::1]:4711`) or in brackets, as proxies write them.
fn parse(entry: &str) -> Option<IpAddr> {
    let ip = entry
        .parse::<IpAddr>()
        .or_else(|_| entry.parse::<SocketAddr>().map(|a| a.ip()))
        .or_else(|_| {
            entry
                .strip_prefix('[')
                .and_then(|e| e.strip_suffix(']'))
                .unwrap_or(entry)
                .parse::<IpAddr>()
        })
        .ok()?;
    Some(ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn proxies(list: &[&str]) -> Vec<Cidr> {
        list.iter().map(|p| p.parse().unwrap()).collect()
    }

    fn from(peer: &str, headers: &[&str], list: &[&str]) -> Result<IpAddr, String> {
        client(
            ip(peer),
            headers.iter().map(|h| h.as_bytes()),
            &proxies(list),
        )
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_writes() {
        assert_eq!(from("192.0.2.7", &["10.0.0.1"], &[]), Ok(ip("192.0.2.7")));
        assert_eq!(
            from("192.0.2.7", &["not even an address"], &["10.0.0.0/8"]),
            Ok(ip("192.0.2.7"))
        );
    }

    #[test]
    fn behind_a_proxy_the_right_most_address_not_a_proxy_is_the_client() {
        let list = ["127.0.0.1", "10.0.0.0/8"];
        assert_eq!(
            from("127.0.0.1", &["198.51.100.4"], &list),
            Ok(ip("198.51.100.4"))
        );
        // A chain of proxies: the client is left of them.
        assert_eq!(
            from("127.0.0.1", &["198.51.100.4, 10.1.1.1"], &list),
            Ok(ip("198.51.100.4"))
        );
        // What the client wrote itself, left of the address the proxy saw,
        // is not believed.
        assert_eq!(
            from("127.0.0.1", &["6.6.6.6, 198.51.100.4"], &list),
            Ok(ip("198.51.100.4"))
        );
        // Several headers are one list, in order.
        assert_eq!(
            from("127.0.0.1", &["6.6.6.6", "198.51.100.4, 10.0.0.2"], &list),
            Ok(ip("198.51.100.4"))
        );
        // No header: the proxy itself asks (a health check).
        assert_eq!(from("127.0.0.1", &[], &list), Ok(ip("127.0.0.1")));
        // Nothing but proxies: the farthest of them.
        assert_eq!(
            from("127.0.0.1", &["10.0.0.9, 10.0.0.8"], &list),
            Ok(ip("10.0.0.9"))
        );
    }

    #[test]
    fn ports_brackets_and_ipv4_in_ipv6_are_read() {
        let list = ["::1"];
        assert_eq!(
            from("::1", &["[2001:db8::1]:4711"], &list),
            Ok(ip("2001:db8::1"))
        );
        assert_eq!(
            from("::1", &["[2001:db8::2]"], &list),
            Ok(ip("2001:db8::2"))
        );
        assert_eq!(from("::1", &["192.0.2.1:80"], &list), Ok(ip("192.0.2.1")));
        assert_eq!(
            from("::1", &["::ffff:192.0.2.9"], &list),
            Ok(ip("192.0.2.9"))
        );
    }

    #[test]
    fn a_list_that_cannot_be_read_is_refused_with_the_entry() {
        let err = from("127.0.0.1", &["198.51.100.4, unknown"], &["127.0.0.1"]).unwrap_err();
        assert!(err.contains("unknown"), "{err}");
        let err = client(ip("127.0.0.1"), [&b"\xff"[..]], &proxies(&["127.0.0.1"])).unwrap_err();
        assert!(err.contains("not text"), "{err}");
    }
}
