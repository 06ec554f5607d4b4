//! The payload of one of sockdump's Ethernet frames, for `-r`.

use sockdump_common::bytes::{u16_at, BigEndian};

use super::packet::{ETH_LEN, IPV4_LEN, TCP_LEN, UDP_LEN};

/// Why a frame is not one of sockdump's Ethernet/IPv4 packets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("the frame is shorter than its headers")]
    Short,
    #[error("the frame is not IPv4 over Ethernet")]
    NotIpv4,
    #[error("the IPv4 packet carries protocol {0}, not TCP or UDP")]
    Protocol(u8),
}

/// A parsed sockdump Ethernet frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParsedFrame<'a> {
    /// The captured payload bytes.
    pub payload: &'a [u8],
}

/// Finds the TCP or UDP payload in an Ethernet frame (as `-r` needs).
pub fn parse_frame(frame: &[u8]) -> Result<ParsedFrame<'_>, FrameError> {
    let ethertype = frame.get(12..14).ok_or(FrameError::Short)?;
    if ethertype != [0x08, 0x00] {
        return Err(FrameError::NotIpv4);
    }
    let ip = &frame[ETH_LEN..];
    let first = *ip.first().ok_or(FrameError::Short)?;
    if first >> 4 != 4 {
        return Err(FrameError::NotIpv4);
    }
    let ihl = usize::from(first & 15) * 4;
    if ihl < IPV4_LEN || ip.len() < ihl {
        return Err(FrameError::Short);
    }
    let total = usize::from(u16_at::<BigEndian>(ip, 2).ok_or(FrameError::Short)?);
    // Ethernet may pad short frames: the IP length says where data ends.
    let ip = &ip[..ip.len().min(total.max(ihl))];
    let transport = &ip[ihl..];
    match ip[9] {
        6 => {
            let offset = usize::from(*transport.get(12).ok_or(FrameError::Short)? >> 4) * 4;
            if offset < TCP_LEN || transport.len() < offset {
                return Err(FrameError::Short);
            }
            Ok(ParsedFrame { payload: &transport[offset..] })
        }
        17 => Ok(ParsedFrame { payload: transport.get(UDP_LEN..).ok_or(FrameError::Short)? }),
        other => Err(FrameError::Protocol(other)),
    }
}
