//! pcapng packet comments: parsed or refused, never a panic; what parses
//! writes back to a comment that parses to the same thing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sockdump_common::meta::{parse_comment, write_comment, Comment};

fuzz_target!(|comment: &[u8]| {
    let Ok(comment) = std::str::from_utf8(comment) else { return };
    let Ok(Comment::Message { meta, part }) = parse_comment(comment) else { return };
    let mut again = String::new();
    write_comment(&mut again, &meta.borrow(), part);
    match parse_comment(&again) {
        Ok(Comment::Message { meta: back, part: back_part }) => assert_eq!((back, back_part), (meta, part)),
        other => panic!("{again:?} parsed as {other:?}"),
    }
});
