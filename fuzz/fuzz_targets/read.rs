//! `-r`: a pcap or pcapng file, from its bytes to messages (pcapng blocks,
//! comments, Ethernet frames, USER0 headers, D-Bus packets, reassembly).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sockdump::read::CaptureFileReader;

fuzz_target!(|file: &[u8]| {
    let Ok(mut reader) = CaptureFileReader::new(file) else { return };
    while let Ok(Some(message)) = reader.next_message() {
        let _ = message.event();
    }
    let _ = (reader.lost(), reader.incomplete(), reader.packets());
});
