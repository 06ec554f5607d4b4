//! Ethernet, IPv4, TCP and UDP headers around a payload, with checksums.

use super::network::Endpoint;

pub(super) const ETH_LEN: usize = 14;
pub(super) const IPV4_LEN: usize = 20;
pub(super) const TCP_LEN: usize = 20;
pub(super) const UDP_LEN: usize = 8;
/// The largest TCP payload an IPv4 packet holds (total length is 16 bits).
pub const TCP_MAX_PAYLOAD: usize = 0xffff - IPV4_LEN - TCP_LEN;
/// The largest UDP payload an IPv4 packet holds.
pub const UDP_MAX_PAYLOAD: usize = 0xffff - IPV4_LEN - UDP_LEN;

pub(super) mod tcp_flags {
    pub const SYN: u8 = 0x02;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
}

/// TCP options of the synthetic SYN and SYN-ACK: the MSS our split size
/// gives, then NOP and window scale 14, so the 65535 window of every later
/// segment means 1 GiB and no segment looks like it overruns the receiver.
pub(super) const SYN_OPTIONS: [u8; 8] =
    [2, 4, (TCP_MAX_PAYLOAD >> 8) as u8, TCP_MAX_PAYLOAD as u8, 1, 3, 3, 14];

/// The Internet checksum (RFC 1071) of `parts` joined, whatever their
/// lengths.
pub(super) fn checksum(parts: &[&[u8]]) -> u16 {
    let mut sum: u32 = 0;
    let mut odd = false;
    for part in parts {
        let part_sum = ones_sum(part);
        // A part starting at an odd offset has its bytes in the other half
        // of each word: its sum is byte-swapped (RFC 1071, section 2.B).
        sum += u32::from(if odd { part_sum.swap_bytes() } else { part_sum });
        odd ^= part.len() % 2 == 1;
    }
    !fold(u64::from(sum))
}

/// The 16-bit one's complement sum of `bytes` as big-endian words, a last
/// odd byte padded with zero.
fn ones_sum(bytes: &[u8]) -> u16 {
    // Native-order 32-bit words added into 64 bits cannot overflow below
    // 16 GiB and vectorise; the folded sum is then in native byte order.
    let word = |b: &[u8]| u64::from(u32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
    let mut lanes = [0u64; 8];
    let mut blocks = bytes.chunks_exact(32);
    for block in &mut blocks {
        for (lane, w) in lanes.iter_mut().zip(block.chunks_exact(4)) {
            *lane += word(w);
        }
    }
    let mut sum: u64 = lanes.iter().sum();
    let mut words = blocks.remainder().chunks_exact(4);
    for w in &mut words {
        sum += word(w);
    }
    let mut tail = [0u8; 4];
    tail[..words.remainder().len()].copy_from_slice(words.remainder());
    sum += word(&tail);
    u16::from_be(fold(sum))
}

/// Folds a sum of 16-bit words to 16 bits, carries added back in.
fn fold(mut sum: u64) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

fn push_ethernet(buf: &mut Vec<u8>, src: &Endpoint, dst: &Endpoint) {
    buf.extend_from_slice(&dst.mac());
    buf.extend_from_slice(&src.mac());
    buf.extend_from_slice(&0x0800u16.to_be_bytes());
}

/// `payload_len` counts the transport header and every sent byte.
fn push_ipv4(buf: &mut Vec<u8>, src: &Endpoint, dst: &Endpoint, protocol: u8, payload_len: usize) {
    let start = buf.len();
    // Callers keep payload_len <= 65515.
    let total = (IPV4_LEN + payload_len) as u16;
    buf.extend_from_slice(&[0x45, 0]);
    buf.extend_from_slice(&total.to_be_bytes());
    // id 0, don't fragment, TTL 64
    buf.extend_from_slice(&[0, 0, 0x40, 0, 64, protocol, 0, 0]);
    buf.extend_from_slice(&src.ip);
    buf.extend_from_slice(&dst.ip);
    let sum = checksum(&[&buf[start..]]);
    buf[start + 10..start + 12].copy_from_slice(&sum.to_be_bytes());
}

pub(super) fn pseudo_header(src: &Endpoint, dst: &Endpoint, protocol: u8, len: usize) -> [u8; 12] {
    let [a, b, c, d] = src.ip;
    let [e, f, g, h] = dst.ip;
    // len <= 65515 (checked by the callers' split sizes)
    let [l1, l2] = (len as u16).to_be_bytes();
    [a, b, c, d, e, f, g, h, 0, protocol, l1, l2]
}

pub(super) struct TcpSegment<'o> {
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub options: &'o [u8],
}

/// A whole Ethernet/IPv4/TCP packet. `captured` may hold fewer bytes than
/// the `sent` ones the headers describe; the checksum is then left 0, as
/// it cannot be computed (Wireshark does not check TCP checksums by default).
pub(super) fn push_tcp_packet(
    buf: &mut Vec<u8>,
    src: &Endpoint,
    dst: &Endpoint,
    segment: &TcpSegment<'_>,
    captured: &[u8],
    sent: usize,
) {
    let header_len = TCP_LEN + segment.options.len();
    push_ethernet(buf, src, dst);
    push_ipv4(buf, src, dst, 6, header_len + sent);
    let start = buf.len();
    buf.extend_from_slice(&src.port.to_be_bytes());
    buf.extend_from_slice(&dst.port.to_be_bytes());
    buf.extend_from_slice(&segment.seq.to_be_bytes());
    buf.extend_from_slice(&segment.ack.to_be_bytes());
    // header_len is 20 or 28: the data offset in 32-bit words.
    buf.push(((header_len / 4) as u8) << 4);
    buf.push(segment.flags);
    buf.extend_from_slice(&0xffffu16.to_be_bytes());
    buf.extend_from_slice(&[0, 0, 0, 0]);
    buf.extend_from_slice(segment.options);
    buf.extend_from_slice(captured);
    if captured.len() == sent {
        let pseudo = pseudo_header(src, dst, 6, header_len + sent);
        let sum = checksum(&[&pseudo, &buf[start..]]);
        buf[start + 16..start + 18].copy_from_slice(&sum.to_be_bytes());
    }
}

/// A whole Ethernet/IPv4/UDP packet; as for TCP, a cut-short payload has
/// no checksum (0 means none in UDP).
pub(super) fn push_udp_packet(
    buf: &mut Vec<u8>,
    src: &Endpoint,
    dst: &Endpoint,
    captured: &[u8],
    sent: usize,
) {
    push_ethernet(buf, src, dst);
    push_ipv4(buf, src, dst, 17, UDP_LEN + sent);
    let start = buf.len();
    buf.extend_from_slice(&src.port.to_be_bytes());
    buf.extend_from_slice(&dst.port.to_be_bytes());
    // sent <= UDP_MAX_PAYLOAD
    buf.extend_from_slice(&((UDP_LEN + sent) as u16).to_be_bytes());
    buf.extend_from_slice(&[0, 0]);
    buf.extend_from_slice(captured);
    if captured.len() == sent {
        let pseudo = pseudo_header(src, dst, 17, UDP_LEN + sent);
        let sum = match checksum(&[&pseudo, &buf[start..]]) {
            // A computed 0 is sent as all ones (RFC 768).
            0 => 0xffff,
            sum => sum,
        };
        buf[start + 6..start + 8].copy_from_slice(&sum.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 1071, one 16-bit word at a time, over the parts joined.
    fn reference_checksum(parts: &[&[u8]]) -> u16 {
        let mut bytes: Vec<u8> = parts.concat();
        if bytes.len() % 2 == 1 {
            bytes.push(0);
        }
        let mut sum: u32 = bytes.chunks(2).map(|w| u32::from(u16::from_be_bytes([w[0], w[1]]))).sum();
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        !(sum as u16)
    }

    #[test]
    fn checksum_matches_rfc_1071_for_any_split() {
        let data: Vec<u8> = (0..301u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        for cut in [0, 1, 7, 8, 13, 150, 300, 301] {
            for second in [cut, (cut + 3).min(301), 301] {
                let parts = [&data[..cut], &data[cut..second], &data[second..]];
                assert_eq!(checksum(&parts), reference_checksum(&parts), "cut {cut} {second}");
            }
        }
        assert_eq!(checksum(&[&[0xff; 64]]), reference_checksum(&[&[0xff; 64]]));
    }

    #[test]
    fn checksum_matches_reference_on_random_data_and_splits() {
        // xorshift64: reproducible pseudo-random lengths, bytes and cuts
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..2000 {
            let len = (next() % 3000) as usize;
            let data: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            let mut cuts: Vec<usize> =
                (0..next() % 5).map(|_| (next() % (len as u64 + 1)) as usize).collect();
            cuts.sort_unstable();
            let mut parts = Vec::new();
            let mut from = 0;
            for cut in cuts.into_iter().chain([len]) {
                parts.push(&data[from..cut]);
                from = cut;
            }
            assert_eq!(checksum(&parts), reference_checksum(&parts), "len {len}");
        }
    }

    #[test]
    fn internet_checksum_matches_rfc1071_example() {
        // RFC 1071 section 3: the sum of these words is 0xddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(checksum(&[&data]), !0xddf2);
        assert_eq!(checksum(&[&data[..3], &data[3..]]), !0xddf2);
        // A known IPv4 header (Wikipedia's example): checksum 0xb861.
        let mut header = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8, 0x00, 0x01,
            0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(checksum(&[&header]), 0xb861);
        header[10..12].copy_from_slice(&0xb861u16.to_be_bytes());
        assert_eq!(checksum(&[&header]), 0);
    }
}
