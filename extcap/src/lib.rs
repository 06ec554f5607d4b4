//! Wireshark extcap support (see issue 5).
