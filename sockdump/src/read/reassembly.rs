//! Packets back into messages: USER0 packets are one message each, and so
//! are D-Bus packets, whose metadata is in their pcapng comment; Ethernet
//! packets carry their message's metadata in a pcapng comment, and a
//! message split over several packets is joined again.

use std::collections::VecDeque;

use sockdump_common::meta::{self, Comment, OwnedMeta};
use sockdump_common::{abi, user0};

use super::{Message, ReadError};
use crate::file::RawPacket;
use crate::output::framing::{self, LINKTYPE_DBUS, LINKTYPE_ETHERNET, LINKTYPE_USER0};

struct Pending {
    message: Message,
    /// The part index expected next.
    next_part: u32,
    parts: u32,
    /// Some earlier part was missing.
    damaged: bool,
}

#[derive(Default)]
pub(super) struct Reassembly {
    pending: Option<Pending>,
    /// Messages put together, in file order.
    ready: VecDeque<Message>,
    /// Messages some of whose packets were missing from the file.
    incomplete: u64,
}

impl Reassembly {
    /// Adds packet number `number` (1-based, for errors); complete messages
    /// become ready.
    pub(super) fn add(&mut self, number: u64, packet: &RawPacket<'_>) -> Result<(), ReadError> {
        let bad = |reason: String| ReadError::BadPacket { packet: number, reason };
        if packet.linktype == u32::from(LINKTYPE_USER0) {
            let record = user0::parse(packet.data).map_err(|e| bad(e.to_string()))?;
            let mut meta = OwnedMeta::of(&record.meta);
            // the header has no reader; pcapng's comment does
            if let Some(Ok(Comment::Message { meta: commented, .. })) =
                packet.comment.map(meta::parse_comment)
            {
                meta.reader = commented.reader;
            }
            self.push_whole(Message { meta, timestamp_ns: packet.timestamp_ns, data: record.data.to_vec() });
            return Ok(());
        }
        let dbus = packet.linktype == u32::from(LINKTYPE_DBUS);
        if !dbus && packet.linktype != u32::from(LINKTYPE_ETHERNET) {
            return Err(ReadError::LinkType(packet.linktype));
        }
        let comment = packet.comment.ok_or(ReadError::NoComment { packet: number })?;
        let (meta, part) = match meta::parse_comment(comment) {
            Ok(Comment::Synthetic(_)) => return Ok(()),
            Ok(Comment::Message { meta, part }) => (meta, part),
            Err(e) => return Err(bad(e.to_string())),
        };
        if dbus {
            self.push_whole(Message { meta, timestamp_ns: packet.timestamp_ns, data: packet.data.to_vec() });
            return Ok(());
        }
        let payload = framing::parse_frame(packet.data).map_err(|e| bad(e.to_string()))?.payload;
        let (index, count) = part.map_or((1, 1), |p| (p.index, p.count));
        let continues = self
            .pending
            .as_ref()
            .is_some_and(|p| index > 1 && p.next_part == index && p.parts == count && p.message.meta == meta);
        if !continues {
            self.flush_pending();
            self.pending = Some(Pending {
                message: Message {
                    meta,
                    timestamp_ns: packet.timestamp_ns,
                    data: Vec::with_capacity(payload.len()),
                },
                next_part: index,
                parts: count,
                // Parts before this one are not in the file.
                damaged: index > 1,
            });
        }
        if let Some(pending) = &mut self.pending {
            // no capture holds more of a message than --seg-size allows,
            // whatever a crafted file's parts add up to
            let data = &mut pending.message.data;
            let room = (pending.message.meta.captured.min(abi::DATA_MAX) as usize).saturating_sub(data.len());
            pending.damaged |= payload.len() > room;
            data.extend_from_slice(&payload[..payload.len().min(room)]);
            pending.next_part += 1;
            if index == count {
                self.flush_pending();
            }
        }
        Ok(())
    }

    /// The next message put together.
    pub(super) fn pop(&mut self) -> Option<Message> {
        self.ready.pop_front()
    }

    /// At the end of the file: the message being assembled, complete or not.
    pub(super) fn finish(&mut self) -> Option<Message> {
        self.flush_pending();
        self.ready.pop_front()
    }

    pub(super) fn incomplete(&self) -> u64 {
        self.incomplete
    }

    /// A message that is one packet, after the one being assembled.
    fn push_whole(&mut self, message: Message) {
        self.flush_pending();
        self.ready.push_back(message);
    }

    /// Moves the message being assembled, complete or not, to `ready`.
    fn flush_pending(&mut self) {
        if let Some(pending) = self.pending.take() {
            if pending.damaged || pending.next_part <= pending.parts {
                self.incomplete += 1;
            }
            self.ready.push_back(pending.message);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sockdump_common::meta::{write_comment, Direction, MessageMeta};
    use sockdump_common::{Comm, Reader};

    #[test]
    fn a_user0_packet_takes_its_reader_from_the_comment() {
        let big = vec![0u8; 10];
        let event = crate::read::tests::events(&big)[0].clone();
        let mut meta = MessageMeta::of(&event);
        let mut data = Vec::new();
        user0::write_header(&mut data, &meta, Direction::Outbound);
        meta.reader = Reader::Thread {
            pid: 55,
            tid: 56,
            comm: Comm::new(b"worker"),
            others: 0,
            uid: Some(0),
            cgroup_id: 0,
        };
        let mut comment = String::new();
        write_comment(&mut comment, &meta, None);
        let mut reassembly = Reassembly::default();
        for comment in [Some(comment.as_str()), None] {
            let packet = RawPacket { linktype: LINKTYPE_USER0.into(), timestamp_ns: 1, data: &data, comment };
            reassembly.add(1, &packet).expect("a USER0 packet");
        }
        assert_eq!(reassembly.pop().map(|m| m.meta.reader), Some(meta.reader));
        assert_eq!(reassembly.pop().map(|m| m.meta.reader), Some(Reader::Unknown));
    }

    /// Parts whose bytes add up to more than the message's captured length
    /// (only a crafted file has them) are cut there.
    #[test]
    fn parts_never_hold_more_than_was_captured() {
        use crate::output::framing::{Content, Framer, Link, PortMap};
        let data = vec![7u8; 3000];
        let mut event = crate::read::tests::events(&data)[0].clone();
        event.data = &data;
        event.len = 3000;
        let mut framer = Framer::new(Link::Ethernet, PortMap::default());
        let mut packets = Vec::new();
        framer
            .frame(&event, |p| {
                if p.content == (Content::Message { part: None }) {
                    packets.push(p.bytes.to_vec());
                }
                Ok::<(), ()>(())
            })
            .unwrap();
        let mut meta = MessageMeta::of(&event);
        meta.captured = 1000;
        let mut reassembly = Reassembly::default();
        for index in 1..=3 {
            let mut comment = String::new();
            write_comment(&mut comment, &meta, Some(sockdump_common::meta::Part { index, count: 3 }));
            let packet = RawPacket {
                linktype: LINKTYPE_ETHERNET.into(),
                timestamp_ns: 1,
                data: &packets[0],
                comment: Some(&comment),
            };
            reassembly.add(index.into(), &packet).expect("a packet");
        }
        let message = reassembly.finish().expect("the message");
        assert_eq!(message.data.len(), 1000);
        assert_eq!(reassembly.incomplete(), 1, "counted as damaged");
    }
}
