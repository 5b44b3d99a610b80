//! Configuring the inside of a container's network namespace over route netlink, from this
//! process: its interfaces up, an IPv4 address and a default route. A socket opened inside the
//! namespace (by a thread that enters it and ends) stays bound to it, so no `ip` process has
//! to be started in the namespace on the path of every bridge start.

use std::fs::File;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, OwnedFd};

use nix::sched::{setns, CloneFlags};
use nix::sys::socket::{
    recv, send, socket, AddressFamily, MsgFlags, SockFlag, SockProtocol, SockType,
};

const NLMSG_HEADER_BYTES: usize = 16;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;
const RTM_NEWLINK: u16 = 16;
const RTM_NEWADDR: u16 = 20;
const RTM_NEWROUTE: u16 = 24;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const RTA_GATEWAY: u16 = 5;
const RT_TABLE_MAIN: u8 = 254;
const RTPROT_BOOT: u8 = 3;
const RT_SCOPE_UNIVERSE: u8 = 0;
const RTN_UNICAST: u8 = 1;

/// Sockets inside one network namespace: route netlink for changes, a datagram socket for
/// interface indexes.
pub(super) struct Inside {
    netlink: OwnedFd,
    inet: OwnedFd,
    sequence: u32,
}

impl Inside {
    /// Opens the sockets inside the namespace `namespace` (an open `/proc/…/ns/net` or a
    /// descriptor of one); the calling thread stays where it is.
    pub fn open(namespace: &File) -> io::Result<Inside> {
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    setns(namespace, CloneFlags::CLONE_NEWNET)?;
                    let netlink = socket(
                        AddressFamily::Netlink,
                        SockType::Raw,
                        SockFlag::SOCK_CLOEXEC,
                        SockProtocol::NetlinkRoute,
                    )?;
                    let inet = socket(
                        AddressFamily::Inet,
                        SockType::Datagram,
                        SockFlag::SOCK_CLOEXEC,
                        None,
                    )?;
                    Ok(Inside {
                        netlink,
                        inet,
                        sequence: 0,
                    })
                })
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("the namespace thread panicked")))
        })
    }

    /// Sets the interface `name` up.
    pub fn set_up(&mut self, name: &str) -> io::Result<()> {
        let index = self.index_of(name)?;
        let mut message = Vec::with_capacity(16);
        message.extend_from_slice(&[libc::AF_UNSPEC as u8, 0]); // family, padding
        message.extend_from_slice(&0u16.to_ne_bytes()); // device type
        message.extend_from_slice(&index.to_ne_bytes());
        let up = libc::IFF_UP as u32;
        message.extend_from_slice(&up.to_ne_bytes()); // flags
        message.extend_from_slice(&up.to_ne_bytes()); // the flags that change
        self.request(RTM_NEWLINK, 0, &message)
    }

    /// Gives the interface `name` the address `address`/`prefix_length`.
    pub fn add_address(
        &mut self,
        name: &str,
        address: Ipv4Addr,
        prefix_length: u8,
    ) -> io::Result<()> {
        let index = self.index_of(name)?;
        let mut message = vec![libc::AF_INET as u8, prefix_length, 0, RT_SCOPE_UNIVERSE];
        message.extend_from_slice(&index.to_ne_bytes());
        push_attribute(&mut message, IFA_LOCAL, &address.octets());
        push_attribute(&mut message, IFA_ADDRESS, &address.octets());
        self.request(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, &message)
    }

    /// Adds the default route through `gateway`.
    pub fn add_default_route(&mut self, gateway: Ipv4Addr) -> io::Result<()> {
        let mut message = vec![
            libc::AF_INET as u8,
            0, // destination prefix length: the default route
            0, // source prefix length
            0, // type of service
            RT_TABLE_MAIN,
            RTPROT_BOOT,
            RT_SCOPE_UNIVERSE,
            RTN_UNICAST,
        ];
        message.extend_from_slice(&0u32.to_ne_bytes()); // flags
        push_attribute(&mut message, RTA_GATEWAY, &gateway.octets());
        self.request(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL, &message)
    }

    fn index_of(&self, name: &str) -> io::Result<i32> {
        // SAFETY: ifreq is plain data; zeroed, it names no interface.
        let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
        if name.len() >= request.ifr_name.len() {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        }
        for (slot, byte) in request.ifr_name.iter_mut().zip(name.bytes()) {
            *slot = byte as libc::c_char;
        }
        // SAFETY: SIOCGIFINDEX reads the name and writes the index into the ifreq passed,
        // which outlives the call; the socket is open.
        if unsafe { libc::ioctl(self.inet.as_raw_fd(), libc::SIOCGIFINDEX, &mut request) } < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: SIOCGIFINDEX succeeded, so the union holds the index.
        Ok(unsafe { request.ifr_ifru.ifru_ifindex })
    }

    /// Sends one request and waits for the kernel's acknowledgement.
    fn request(&mut self, kind: u16, flags: u16, body: &[u8]) -> io::Result<()> {
        self.sequence += 1;
        let length = NLMSG_HEADER_BYTES + body.len();
        let mut message = Vec::with_capacity(length);
        message.extend_from_slice(&(length as u32).to_ne_bytes());
        message.extend_from_slice(&kind.to_ne_bytes());
        message.extend_from_slice(&(NLM_F_REQUEST | NLM_F_ACK | flags).to_ne_bytes());
        message.extend_from_slice(&self.sequence.to_ne_bytes());
        message.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel fills it in
        message.extend_from_slice(body);
        send(self.netlink.as_raw_fd(), &message, MsgFlags::empty())?;
        let mut answer = [0u8; 4096];
        loop {
            let received = recv(self.netlink.as_raw_fd(), &mut answer, MsgFlags::empty())?;
            if let Some(result) = acknowledgement(&answer[..received], self.sequence) {
                return result;
            }
        }
    }
}

/// Appends a route attribute (length, type, value, padding to four bytes).
fn push_attribute(message: &mut Vec<u8>, kind: u16, value: &[u8]) {
    let length = 4 + value.len();
    message.extend_from_slice(&(length as u16).to_ne_bytes());
    message.extend_from_slice(&kind.to_ne_bytes());
    message.extend_from_slice(value);
    message.resize(message.len() + (4 - length % 4) % 4, 0);
}

/// The result carried by the acknowledgement of request `sequence` among the messages in
/// `datagram`, if it is there.
fn acknowledgement(datagram: &[u8], sequence: u32) -> Option<io::Result<()>> {
    let mut rest = datagram;
    while rest.len() >= NLMSG_HEADER_BYTES {
        let length = u32::from_ne_bytes(rest[0..4].try_into().ok()?) as usize;
        let kind = u16::from_ne_bytes(rest[4..6].try_into().ok()?);
        let answered = u32::from_ne_bytes(rest[8..12].try_into().ok()?);
        if length < NLMSG_HEADER_BYTES || length > rest.len() {
            return Some(Err(io::Error::from(io::ErrorKind::InvalidData)));
        }
        if kind == NLMSG_ERROR && answered == sequence {
            let code = i32::from_ne_bytes(rest.get(16..20)?.try_into().ok()?);
            return Some(match code {
                0 => Ok(()),
                negative => Err(io::Error::from_raw_os_error(-negative)),
            });
        }
        rest = &rest[(length + 3) & !3..];
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_are_padded_to_four_bytes() {
        let mut message = Vec::new();
        push_attribute(&mut message, RTA_GATEWAY, &[10, 88, 0, 1]);
        assert_eq!(message, [8, 0, 5, 0, 10, 88, 0, 1]);
        push_attribute(&mut message, 9, &[1]);
        assert_eq!(message.len(), 16);
    }

    #[test]
    fn acknowledgements_carry_the_kernel_s_error() {
        let ack = |sequence: u32, code: i32| {
            let mut message = Vec::new();
            message.extend_from_slice(&36u32.to_ne_bytes());
            message.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
            message.extend_from_slice(&0u16.to_ne_bytes());
            message.extend_from_slice(&sequence.to_ne_bytes());
            message.extend_from_slice(&0u32.to_ne_bytes());
            message.extend_from_slice(&code.to_ne_bytes());
            message.resize(36, 0);
            message
        };
        assert!(matches!(acknowledgement(&ack(3, 0), 3), Some(Ok(()))));
        let refused = acknowledgement(&ack(3, -libc::EEXIST), 3).expect("an answer");
        assert_eq!(
            refused.expect_err("an error").raw_os_error(),
            Some(libc::EEXIST)
        );
        assert!(acknowledgement(&ack(2, 0), 3).is_none());
    }
}
