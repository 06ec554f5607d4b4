//! The kernel's ring buffer records: messages, reads and process records
//! decode or are refused, never panic; a decoded message's pcapng comment
//! parses back to the same details, and its command line is bounded.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sockdump::processes::Processes;
use sockdump_common::meta::{parse_comment, write_comment, Comment, MessageMeta, OwnedMeta};
use sockdump_common::{Event, ProcRecord, ReadRecord};

fuzz_target!(|record: &[u8]| {
    if let Ok(event) = Event::parse(record) {
        let _ = (event.path.to_string(), event.peer_path.to_string(), event.conversation_name());
        let meta = MessageMeta::of(&event);
        let mut comment = String::new();
        write_comment(&mut comment, &meta, None);
        match parse_comment(&comment) {
            Ok(Comment::Message { meta: back, part: None }) => assert_eq!(back, OwnedMeta::of(&meta)),
            other => panic!("{comment:?} parsed as {other:?}"),
        }
    }
    let _ = ReadRecord::parse(record);
    if let Ok(proc_record) = ProcRecord::parse(record) {
        // what the capture does with it: a command line for the pid
        let mut processes = Processes::new();
        processes.record(&proc_record);
    }
});
