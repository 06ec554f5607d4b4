//! The socket family (`sock:sock_send_length`, Linux 6.3+) sees what the
//! syscall tracepoints cannot: every message of a long `sendmmsg`, and
//! sends whose bytes are not in the syscall's registers (`sendfile`,
//! `splice`), recorded with their length and flagged unreadable.

mod common;

use std::process::{Command, Stdio};

use common::{skip_unless_root, Sockdump};

/// Whether this kernel must have the socket-layer tracepoint.
fn kernel_has_socket_tracepoint() -> bool {
    let release = nix::sys::utsname::uname().unwrap().release().to_string_lossy().into_owned();
    let mut numbers = release.split(|c: char| !c.is_ascii_digit()).filter_map(|n| n.parse::<u32>().ok());
    (numbers.next().unwrap_or(0), numbers.next().unwrap_or(0)) >= (6, 3)
}

/// Captures `--hook socket` text output of python3 running `script`.
fn capture(script: &str, count: usize) -> String {
    let count = count.to_string();
    let mut running = Sockdump::start_with(
        &["--hook", "socket", "--format", "string", "--comm", "python3", "-c", &count],
        Stdio::piped(),
    );
    let stdout = running.stdout().unwrap();
    assert!(Command::new("python3").args(["-c", script]).status().unwrap().success());
    running.wait();
    String::from_utf8_lossy(&common::read_all(stdout)).into_owned()
}

#[test]
fn every_message_of_a_long_sendmmsg_and_unreadable_sends_are_recorded() {
    if skip_unless_root("every_message_of_a_long_sendmmsg_and_unreadable_sends_are_recorded") {
        return;
    }
    if !kernel_has_socket_tracepoint() {
        eprintln!("SKIPPED: this kernel is older than 6.3 and has no sock_send_length tracepoint");
        return;
    }
    // sendmmsg as python does it: 20 datagrams through libc
    let mmsg = "import ctypes,socket\n\
        libc=ctypes.CDLL(None,use_errno=True)\n\
        class iovec(ctypes.Structure): _fields_=[('base',ctypes.c_void_p),('len',ctypes.c_size_t)]\n\
        class msghdr(ctypes.Structure): _fields_=[('name',ctypes.c_void_p),('namelen',ctypes.c_uint),\
        ('iov',ctypes.POINTER(iovec)),('iovlen',ctypes.c_size_t),('control',ctypes.c_void_p),\
        ('controllen',ctypes.c_size_t),('flags',ctypes.c_int)]\n\
        class mmsghdr(ctypes.Structure): _fields_=[('hdr',msghdr),('len',ctypes.c_uint)]\n\
        a,b=socket.socketpair(socket.AF_UNIX,socket.SOCK_DGRAM)\n\
        bufs=[ctypes.create_string_buffer(b'mmsg-%02d' % i, 7) for i in range(20)]\n\
        iovs=[iovec(ctypes.addressof(x),7) for x in bufs]\n\
        msgs=(mmsghdr*20)()\n\
        for i in range(20): msgs[i].hdr.iov=ctypes.pointer(iovs[i]); msgs[i].hdr.iovlen=1\n\
        assert libc.sendmmsg(a.fileno(),msgs,20,0)==20\n";
    let printed = capture(mmsg, 20);
    for i in 0..20 {
        assert_eq!(printed.matches(&format!("mmsg-{i:02}")).count(), 1, "message {i}:\n{printed}");
    }

    let unreadable = "import os,socket,tempfile\n\
        f=tempfile.TemporaryFile(); f.write(b'x'*140); f.flush()\n\
        a,b=socket.socketpair()\n\
        assert os.sendfile(a.fileno(),f.fileno(),0,140)==140; b.recv(1000)\n\
        r,w=os.pipe(); os.write(w,b'spliced!')\n\
        assert os.splice(r,a.fileno(),8)==8; b.recv(100)\n";
    let printed = capture(unreadable, 2);
    assert!(printed.contains("len 0(140) [bytes not readable]"), "sendfile:\n{printed}");
    assert!(printed.contains("len 0(8) [bytes not readable]"), "splice:\n{printed}");
}
