//! The few rtnetlink requests a pod network needs, sent over a `NETLINK_ROUTE` socket: what
//! iproute2's `ip link add … type bridge|veth`, `ip addr replace`, `ip link set … up`,
//! `ip route add default via`, `ip neigh del` and `ip link del` send, without starting `ip`
//! (whose start-up alone costs several milliseconds per run).
//!
//! A socket acts in the network namespace it was opened in; [`Rtnetlink::open_in`] opens one
//! in another namespace. Requests are synchronous: each is acknowledged, and a failure carries
//! the kernel's errno and, where the kernel gives one, its extended-ack message (the text `ip`
//! would print).

use std::fs::File;
use std::io;
use std::mem::size_of;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// `nlmsghdr`: length, type, flags, sequence number, port id.
const HEADER_LEN: usize = 16;
/// `VETH_INFO_PEER` of `<linux/veth.h>`: the peer's `ifinfomsg` and attributes.
const VETH_INFO_PEER: u16 = 1;
/// `NLMSGERR_ATTR_MSG` of `<linux/netlink.h>`: the extended ack's message string.
const NLMSGERR_ATTR_MSG: u16 = 1;
/// Marks an attribute that holds attributes.
const NLA_F_NESTED: u16 = 1 << 15;

/// A `NETLINK_ROUTE` socket.
pub struct Rtnetlink {
    socket: OwnedFd,
    sequence: u32,
}

impl Rtnetlink {
    /// Opens a socket acting in this thread's network namespace.
    pub fn open() -> io::Result<Self> {
        // SAFETY: plain socket calls; the descriptor is owned right away.
        let socket = unsafe {
            let fd = libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            );
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            OwnedFd::from_raw_fd(fd)
        };
        // Errors come with the kernel's message, and without a copy of the request.
        for option in [libc::NETLINK_EXT_ACK, libc::NETLINK_CAP_ACK] {
            let on: libc::c_int = 1;
            // SAFETY: `on` outlives the call and its size is passed.
            unsafe {
                libc::setsockopt(
                    socket.as_raw_fd(),
                    libc::SOL_NETLINK,
                    option,
                    (&raw const on).cast(),
                    size_of::<libc::c_int>() as libc::socklen_t,
                );
            }
        }
        Ok(Self {
            socket,
            sequence: 0,
        })
    }

    /// Opens a socket acting in the network namespace `netns` (an open `/proc/PID/ns/net` or
    /// `/var/run/netns/NAME`).
    pub fn open_in(netns: &File) -> io::Result<Self> {
        super::netns::run_in(netns, Self::open)
    }

    /// The index of the interface called `name`.
    pub fn link_index(&mut self, name: &str) -> io::Result<u32> {
        let mut request = Request::new(libc::RTM_GETLINK, 0, &link_header(0, 0));
        request.attr(libc::IFLA_IFNAME, &c_name(name)?);
        let reply = self.send(request, &format!("finding link {name}"))?;
        // The reply is an RTM_NEWLINK whose ifinfomsg holds the index at bytes 4..8.
        reply
            .get(HEADER_LEN + 4..HEADER_LEN + 8)
            .map(|index| u32::from_ne_bytes(index.try_into().expect("four bytes")))
            .ok_or_else(|| io::Error::other(format!("no reply describing link {name}")))
    }

    /// Creates a bridge called `name`; Ok when it exists already.
    pub fn add_bridge(&mut self, name: &str) -> io::Result<()> {
        let mut request = Request::new(libc::RTM_NEWLINK, CREATE_EXCL, &link_header(0, 0));
        request.attr(libc::IFLA_IFNAME, &c_name(name)?);
        let info = request.begin_nested(libc::IFLA_LINKINFO);
        request.attr(libc::IFLA_INFO_KIND, b"bridge");
        request.end_nested(info);
        self.send_unless(request, &format!("adding bridge {name}"), libc::EEXIST)
            .map(drop)
    }

    /// Creates a veth pair: `name` here, up and attached to the bridge with index `master`;
    /// its peer `peer_name` in the network namespace `peer_netns`, down.
    pub fn add_veth(
        &mut self,
        name: &str,
        master: u32,
        peer_name: &str,
        peer_netns: &File,
    ) -> io::Result<()> {
        let up = libc::IFF_UP as u32;
        let mut request = Request::new(libc::RTM_NEWLINK, CREATE_EXCL, &link_header(up, up));
        request.attr(libc::IFLA_IFNAME, &c_name(name)?);
        request.attr(libc::IFLA_MASTER, &master.to_ne_bytes());
        let info = request.begin_nested(libc::IFLA_LINKINFO);
        request.attr(libc::IFLA_INFO_KIND, b"veth");
        let data = request.begin_nested(libc::IFLA_INFO_DATA);
        let peer = request.begin_nested(VETH_INFO_PEER);
        request.bytes(&link_header(0, 0));
        request.attr(libc::IFLA_IFNAME, &c_name(peer_name)?);
        request.attr(libc::IFLA_NET_NS_FD, &peer_netns.as_raw_fd().to_ne_bytes());
        request.end_nested(peer);
        request.end_nested(data);
        request.end_nested(info);
        self.send(request, &format!("adding veth {name} (peer {peer_name})"))
            .map(drop)
    }

    /// Deletes the interface called `name` (both ends of a veth); Ok(false) when there is
    /// none.
    pub fn delete_link(&mut self, name: &str) -> io::Result<bool> {
        let mut request = Request::new(libc::RTM_DELLINK, 0, &link_header(0, 0));
        request.attr(libc::IFLA_IFNAME, &c_name(name)?);
        self.send_unless(request, &format!("deleting link {name}"), libc::ENODEV)
            .map(|deleted| deleted.is_some())
    }

    /// Sets the interface with index `index` up.
    pub fn set_up(&mut self, index: u32) -> io::Result<()> {
        let up = libc::IFF_UP as u32;
        let mut header = link_header(up, up);
        header[4..8].copy_from_slice(&index.to_ne_bytes());
        let request = Request::new(libc::RTM_NEWLINK, 0, &header);
        self.send(request, &format!("setting link {index} up"))
            .map(drop)
    }

    /// Gives the interface with index `index` the address `address/prefix`, replacing it if
    /// it has it (as `ip addr replace`).
    pub fn replace_address(&mut self, index: u32, address: Ipv4Addr, prefix: u8) -> io::Result<()> {
        // ifaddrmsg: family, prefix length, flags, scope, interface index.
        let mut header = vec![libc::AF_INET as u8, prefix, 0, libc::RT_SCOPE_UNIVERSE];
        header.extend_from_slice(&index.to_ne_bytes());
        let flags = (libc::NLM_F_CREATE | libc::NLM_F_REPLACE) as u16;
        let mut request = Request::new(libc::RTM_NEWADDR, flags, &header);
        request.attr(libc::IFA_LOCAL, &address.octets());
        request.attr(libc::IFA_ADDRESS, &address.octets());
        self.send(request, &format!("adding address {address}/{prefix}"))
            .map(drop)
    }

    /// Adds a default route via `gateway` out of the interface with index `index`.
    pub fn add_default_route(&mut self, gateway: Ipv4Addr, index: u32) -> io::Result<()> {
        // rtmsg: family, destination and source prefix lengths, TOS, table, protocol (as `ip
        // route add`), scope, type; flags.
        let mut header = vec![
            libc::AF_INET as u8,
            0,
            0,
            0,
            libc::RT_TABLE_MAIN,
            libc::RTPROT_BOOT,
            libc::RT_SCOPE_UNIVERSE,
            libc::RTN_UNICAST,
        ];
        header.extend_from_slice(&0u32.to_ne_bytes());
        let mut request = Request::new(libc::RTM_NEWROUTE, CREATE_EXCL, &header);
        request.attr(libc::RTA_GATEWAY, &gateway.octets());
        request.attr(libc::RTA_OIF, &index.to_ne_bytes());
        self.send(request, &format!("adding default route via {gateway}"))
            .map(drop)
    }

    /// Forgets the neighbour (ARP) entry of `address` on the interface with index `index`;
    /// Ok when there is none.
    pub fn delete_neighbour(&mut self, index: u32, address: Ipv4Addr) -> io::Result<()> {
        // ndmsg: family, three pad bytes, interface index, state (u16), flags, type.
        let mut header = vec![libc::AF_INET as u8, 0, 0, 0];
        header.extend_from_slice(&index.to_ne_bytes());
        header.extend_from_slice(&[0; 4]);
        let mut request = Request::new(libc::RTM_DELNEIGH, 0, &header);
        request.attr(libc::NDA_DST, &address.octets());
        self.send_unless(
            request,
            &format!("deleting neighbour {address}"),
            libc::ENOENT,
        )
        .map(drop)
    }

    /// Sends `request` and reads until its acknowledgement; returns the reply that came
    /// before it (empty for requests that only change things). `what` names the request in
    /// errors.
    fn send(&mut self, request: Request, what: &str) -> io::Result<Vec<u8>> {
        self.send_unless(request, what, 0)
            .map(Option::unwrap_or_default)
    }

    /// [`Self::send`], but Ok(None) when the kernel refuses the request with errno
    /// `tolerated` (such as EEXIST for a create that need not happen).
    fn send_unless(
        &mut self,
        request: Request,
        what: &str,
        tolerated: i32,
    ) -> io::Result<Option<Vec<u8>>> {
        match self.exchange(request)? {
            Ok(reply) => Ok(Some(reply)),
            Err((errno, _)) if errno == tolerated => Ok(None),
            Err((errno, text)) => {
                let os = io::Error::from_raw_os_error(errno);
                let message = match text {
                    Some(text) => format!("{what}: {text} ({os})"),
                    None => format!("{what}: {os}"),
                };
                Err(io::Error::new(os.kind(), message))
            }
        }
    }

    /// Sends `request` and reads until its acknowledgement: the reply before it, or the
    /// kernel's errno and message.
    fn exchange(&mut self, request: Request) -> io::Result<Result<Vec<u8>, Refusal>> {
        self.sequence = self.sequence.wrapping_add(1);
        let message = request.finish(self.sequence);
        // SAFETY: the buffer outlives the call; the kernel is the default destination.
        let sent = unsafe {
            libc::send(
                self.socket.as_raw_fd(),
                message.as_ptr().cast(),
                message.len(),
                0,
            )
        };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut reply = Vec::new();
        let mut buffer = vec![0u8; 32 * 1024];
        loop {
            // SAFETY: the kernel writes at most `buffer.len()` bytes into the buffer.
            let received = unsafe {
                libc::recv(
                    self.socket.as_raw_fd(),
                    buffer.as_mut_ptr().cast(),
                    buffer.len(),
                    0,
                )
            };
            if received < 0 {
                let err = io::Error::last_os_error();
                if err.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(err);
            }
            for message in Messages(&buffer[..received as usize]) {
                if message.sequence != self.sequence {
                    continue; // a late answer to an earlier request
                }
                if message.kind != libc::NLMSG_ERROR as u16 {
                    reply = message.bytes.to_vec();
                    continue;
                }
                return Ok(acknowledgement(message.bytes).map(|()| reply));
            }
        }
    }
}

/// A request the kernel refused: its errno and extended-ack message, if any.
type Refusal = (i32, Option<String>);

/// Flags of requests that create something that must not exist yet.
const CREATE_EXCL: u16 = (libc::NLM_F_CREATE | libc::NLM_F_EXCL) as u16;

/// An `ifinfomsg` for family AF_UNSPEC and index 0 with `flags` (under the mask `change`).
fn link_header(flags: u32, change: u32) -> [u8; 16] {
    let mut header = [0u8; 16];
    header[8..12].copy_from_slice(&flags.to_ne_bytes());
    header[12..16].copy_from_slice(&change.to_ne_bytes());
    header
}

/// An interface name as the kernel takes it: NUL-terminated, at most 15 bytes.
fn c_name(name: &str) -> io::Result<Vec<u8>> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.contains(['\0', '/']) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{name:?} is not an interface name"),
        ));
    }
    Ok([name.as_bytes(), b"\0"].concat())
}

/// A netlink message being built: header, fixed part, attributes.
struct Request {
    buffer: Vec<u8>,
}

impl Request {
    /// A request of `kind` with `flags` (besides request and ack) and fixed part `header`.
    fn new(kind: u16, flags: u16, header: &[u8]) -> Self {
        let mut buffer = vec![0u8; HEADER_LEN];
        buffer[4..6].copy_from_slice(&kind.to_ne_bytes());
        let flags = flags | (libc::NLM_F_REQUEST | libc::NLM_F_ACK) as u16;
        buffer[6..8].copy_from_slice(&flags.to_ne_bytes());
        let mut request = Self { buffer };
        request.bytes(header);
        request
    }

    /// Appends raw bytes, padded to 4.
    fn bytes(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
        self.pad();
    }

    /// Appends attribute `kind` holding `payload`.
    fn attr(&mut self, kind: u16, payload: &[u8]) {
        let len = u16::try_from(4 + payload.len()).expect("attributes are small");
        self.buffer.extend_from_slice(&len.to_ne_bytes());
        self.buffer.extend_from_slice(&kind.to_ne_bytes());
        self.bytes(payload);
    }

    /// Starts attribute `kind` holding the attributes appended until [`Self::end_nested`].
    fn begin_nested(&mut self, kind: u16) -> usize {
        let start = self.buffer.len();
        self.buffer.extend_from_slice(&[0, 0]);
        self.buffer
            .extend_from_slice(&(kind | NLA_F_NESTED).to_ne_bytes());
        start
    }

    /// Ends the nested attribute started at `start`, writing its length.
    fn end_nested(&mut self, start: usize) {
        let len = u16::try_from(self.buffer.len() - start).expect("attributes are small");
        self.buffer[start..start + 2].copy_from_slice(&len.to_ne_bytes());
    }

    fn pad(&mut self) {
        self.buffer.resize(self.buffer.len().next_multiple_of(4), 0);
    }

    /// The message, with its length and sequence number `sequence` filled in.
    fn finish(mut self, sequence: u32) -> Vec<u8> {
        let len = u32::try_from(self.buffer.len()).expect("requests are small");
        self.buffer[0..4].copy_from_slice(&len.to_ne_bytes());
        self.buffer[8..12].copy_from_slice(&sequence.to_ne_bytes());
        self.buffer
    }
}

/// One received netlink message.
struct Message<'a> {
    kind: u16,
    sequence: u32,
    /// The whole message, header included.
    bytes: &'a [u8],
}

/// The messages in one datagram.
struct Messages<'a>(&'a [u8]);

impl<'a> Iterator for Messages<'a> {
    type Item = Message<'a>;

    fn next(&mut self) -> Option<Message<'a>> {
        let header = self.0.get(..HEADER_LEN)?;
        let len = u32::from_ne_bytes(header[0..4].try_into().ok()?) as usize;
        if len < HEADER_LEN || len > self.0.len() {
            self.0 = &[];
            return None;
        }
        let message = Message {
            kind: u16::from_ne_bytes(header[4..6].try_into().ok()?),
            sequence: u32::from_ne_bytes(header[8..12].try_into().ok()?),
            bytes: &self.0[..len],
        };
        self.0 = &self.0[len.next_multiple_of(4).min(self.0.len())..];
        Some(message)
    }
}

/// Reads an `NLMSG_ERROR` message: Ok for an acknowledgement, else the errno and the
/// extended-ack message when there is one.
fn acknowledgement(message: &[u8]) -> Result<(), Refusal> {
    let errno = message
        .get(HEADER_LEN..HEADER_LEN + 4)
        .map_or(libc::EPROTO, |code| {
            -i32::from_ne_bytes(code.try_into().expect("four bytes"))
        });
    if errno == 0 {
        return Ok(());
    }
    // With NETLINK_CAP_ACK the error code is followed by the request's header only, then
    // the extended-ack attributes.
    let mut attributes = message.get(HEADER_LEN + 4 + HEADER_LEN..).unwrap_or(&[]);
    let mut text = None;
    while attributes.len() >= 4 {
        let len = usize::from(u16::from_ne_bytes([attributes[0], attributes[1]]));
        let kind = u16::from_ne_bytes([attributes[2], attributes[3]]);
        if len < 4 || len > attributes.len() {
            break;
        }
        if kind == NLMSGERR_ATTR_MSG {
            let payload = &attributes[4..len];
            let end = payload
                .iter()
                .position(|&b| b == 0)
                .unwrap_or(payload.len());
            text = Some(String::from_utf8_lossy(&payload[..end]).into_owned());
        }
        attributes = &attributes[len.next_multiple_of(4).min(attributes.len())..];
    }
    Err((errno, text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_padded_and_nested_attributes_measured() {
        let mut request = Request::new(libc::RTM_NEWLINK, CREATE_EXCL, &link_header(1, 1));
        request.attr(libc::IFLA_IFNAME, b"br\0");
        let info = request.begin_nested(libc::IFLA_LINKINFO);
        request.attr(libc::IFLA_INFO_KIND, b"bridge");
        request.end_nested(info);
        let message = request.finish(7);
        // header 16 + ifinfomsg 16 + "br\0" attr 8 + linkinfo (4 + kind attr 12) 16.
        assert_eq!(message.len(), 56);
        assert_eq!(u32::from_ne_bytes(message[0..4].try_into().unwrap()), 56);
        assert_eq!(u32::from_ne_bytes(message[8..12].try_into().unwrap()), 7);
        let flags = u16::from_ne_bytes(message[6..8].try_into().unwrap());
        assert_eq!(flags, 0x1 | 0x4 | 0x200 | 0x400);
        assert_eq!(&message[32..40], &[7, 0, 3, 0, b'b', b'r', 0, 0]);
        assert_eq!(u16::from_ne_bytes(message[40..42].try_into().unwrap()), 16);
        assert_eq!(
            u16::from_ne_bytes(message[42..44].try_into().unwrap()),
            libc::IFLA_LINKINFO | NLA_F_NESTED
        );
        assert_eq!(&message[44..56], b"\x0a\x00\x01\x00bridge\0\0");
    }

    #[test]
    fn acknowledgements_carry_the_errno_and_the_kernels_message() {
        let mut error = vec![0u8; HEADER_LEN];
        error.extend_from_slice(&(-libc::EEXIST).to_ne_bytes());
        error.extend_from_slice(&[0u8; HEADER_LEN]);
        let text = b"File exists here\0";
        error.extend_from_slice(&(4 + text.len() as u16).to_ne_bytes());
        error.extend_from_slice(&NLMSGERR_ATTR_MSG.to_ne_bytes());
        error.extend_from_slice(text);
        assert_eq!(
            acknowledgement(&error),
            Err((libc::EEXIST, Some("File exists here".into())))
        );
        let mut ack = vec![0u8; HEADER_LEN];
        ack.extend_from_slice(&0i32.to_ne_bytes());
        assert_eq!(acknowledgement(&ack), Ok(()));
    }

    #[test]
    fn refusals_name_the_request_and_the_kernels_reason() {
        // Looking links up needs no privilege.
        let mut socket = Rtnetlink::open().unwrap();
        assert_eq!(socket.link_index("lo").unwrap(), 1);
        let err = socket.link_index("skiff-absent").unwrap_err();
        assert_eq!(err.raw_os_error(), None);
        let message = err.to_string();
        assert!(
            message.starts_with("finding link skiff-absent: "),
            "{message}"
        );
        assert!(message.contains("No such device"), "{message}");
    }

    #[test]
    fn interface_names_are_checked() {
        assert_eq!(c_name("eth0").unwrap(), b"eth0\0");
        for bad in ["", "sixteen-letters!", "a/b", "nul\0"] {
            assert_eq!(c_name(bad).unwrap_err().kind(), io::ErrorKind::InvalidInput);
        }
    }
}
