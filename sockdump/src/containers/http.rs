//! Just enough HTTP/1.1 for the Docker Engine API on its unix socket. The
//! engine's bytes are treated as hostile: lines, headers and bodies are
//! bounded, and an engine that stalls times out instead of stalling us.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::socket::{connect, socket, AddressFamily, SockFlag, SockType, UnixAddr};

/// For connecting, and for each read or write.
const TIMEOUT: Duration = Duration::from_secs(1);
/// For a whole request and response, however slowly the engine trickles bytes.
const DEADLINE: Duration = Duration::from_secs(5);
pub const MAX_BODY: usize = 4 << 20;
const MAX_LINE: usize = 8 << 10;
const MAX_HEADERS: usize = 100;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error(transparent)]
    Io(#[from] io::Error),
    #[error("malformed HTTP response: {0}")]
    Malformed(&'static str),
    #[error("HTTP response over {} bytes", MAX_BODY)]
    TooLarge,
    #[error("HTTP status {0}")]
    Status(u16),
}

fn invalid(what: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

/// Connects with a timeout: a unix socket's connect blocks while the
/// listener's backlog is full, which is what a hung engine looks like.
pub fn connect_unix(path: &Path) -> io::Result<UnixStream> {
    let addr = UnixAddr::new(path)?;
    let fd = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    let started = Instant::now();
    loop {
        match connect(fd.as_raw_fd(), &addr) {
            Ok(()) => break,
            Err(Errno::EINTR) => {}
            Err(Errno::EAGAIN) if started.elapsed() < TIMEOUT => thread::sleep(Duration::from_millis(10)),
            Err(Errno::EAGAIN) => {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "the engine accepts no connections"))
            }
            Err(err) => return Err(err.into()),
        }
    }
    let stream = UnixStream::from(fd);
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    Ok(stream)
}

/// The socket, with a deadline for the whole exchange on top of each read's timeout.
pub struct Timed {
    stream: UnixStream,
    deadline: Option<Instant>,
}

impl Read for Timed {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.deadline.is_some_and(|deadline| Instant::now() >= deadline) {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "the engine answers too slowly"));
        }
        self.stream.read(buf)
    }
}

fn send_get(mut stream: UnixStream, target: &str) -> Result<BufReader<Timed>, HttpError> {
    let request = format!(
        "GET {target} HTTP/1.1\r\nHost: docker\r\nUser-Agent: sockdump\r\nAccept: application/json\r\n\
         Connection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes())?;
    Ok(BufReader::new(Timed { stream, deadline: Some(Instant::now() + DEADLINE) }))
}

/// `GET target`: the status and the whole body.
pub fn get(socket: &Path, target: &str) -> Result<(u16, Vec<u8>), HttpError> {
    let mut reader = send_get(connect_unix(socket)?, target)?;
    let head = read_head(&mut reader)?;
    let body = read_body(Body::new(reader, &head))?;
    Ok((head.status, body))
}

/// `GET target` answered with a body that does not end (the events): it
/// is read as it comes, with no timeout once the head is in.
pub fn get_stream(stream: UnixStream, target: &str) -> Result<Body<BufReader<Timed>>, HttpError> {
    let mut reader = send_get(stream, target)?;
    let head = read_head(&mut reader)?;
    if head.status != 200 {
        return Err(HttpError::Status(head.status));
    }
    reader.get_mut().deadline = None;
    reader.get_ref().stream.set_read_timeout(None)?;
    Ok(Body::new(reader, &head))
}

/// A line without its `\n` (or `\r\n`); None at the end of the input, an
/// error when the input ends mid-line or the line is over `limit` bytes.
pub fn read_line(reader: &mut impl BufRead, limit: usize) -> io::Result<Option<Vec<u8>>> {
    let mut line = Vec::new();
    reader.take(limit as u64 + 1).read_until(b'\n', &mut line)?;
    if line.is_empty() {
        return Ok(None);
    }
    if line.pop() != Some(b'\n') {
        return Err(if line.len() >= limit {
            invalid("line too long")
        } else {
            io::Error::new(io::ErrorKind::UnexpectedEof, "the input ends mid-line")
        });
    }
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    Ok(Some(line))
}

fn http_line(reader: &mut impl BufRead) -> io::Result<Vec<u8>> {
    read_line(reader, MAX_LINE)?.ok_or_else(|| io::ErrorKind::UnexpectedEof.into())
}

#[derive(Debug, PartialEq, Eq)]
pub struct Head {
    pub status: u16,
    length: Option<u64>,
    chunked: bool,
}

pub fn read_head(reader: &mut impl BufRead) -> Result<Head, HttpError> {
    let line = http_line(reader)?;
    let line = std::str::from_utf8(&line).map_err(|_| HttpError::Malformed("status line"))?;
    let mut parts = line.splitn(3, ' ');
    let (version, code) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
    if !version.starts_with("HTTP/1.") || code.len() != 3 {
        return Err(HttpError::Malformed("status line"));
    }
    let status = code.parse().map_err(|_| HttpError::Malformed("status code"))?;
    let mut head = Head { status, length: None, chunked: false };
    for _ in 0..=MAX_HEADERS {
        let line = http_line(reader)?;
        if line.is_empty() {
            return Ok(head);
        }
        let line = std::str::from_utf8(&line).map_err(|_| HttpError::Malformed("header"))?;
        let (name, value) = line.split_once(':').ok_or(HttpError::Malformed("header"))?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            let length = value.parse().map_err(|_| HttpError::Malformed("Content-Length"))?;
            if head.length.is_some_and(|l| l != length) {
                return Err(HttpError::Malformed("conflicting Content-Length"));
            }
            head.length = Some(length);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            // we ask for no compression, so chunked is the only coding to expect
            if !value.eq_ignore_ascii_case("chunked") {
                return Err(HttpError::Malformed("Transfer-Encoding"));
            }
            head.chunked = true;
        }
    }
    Err(HttpError::Malformed("too many headers"))
}

/// A response's body, as its head frames it.
pub enum Body<R> {
    Length { reader: R, left: u64 },
    Chunked { reader: R, left: u64, started: bool, done: bool },
    UntilClose(R),
}

impl<R: BufRead> Body<R> {
    pub fn new(reader: R, head: &Head) -> Body<R> {
        // chunked wins over a Content-Length (RFC 9112 6.3)
        match (head.chunked, head.length) {
            (true, _) => Body::Chunked { reader, left: 0, started: false, done: false },
            (false, Some(left)) => Body::Length { reader, left },
            (false, None) => Body::UntilClose(reader),
        }
    }
}

fn chunk_size(line: &[u8]) -> io::Result<u64> {
    let size = line.split(|&b| b == b';').next().unwrap_or_default();
    let size = std::str::from_utf8(size).map_err(|_| invalid("chunk size"))?.trim();
    if size.is_empty() || size.len() > 15 {
        return Err(invalid("chunk size"));
    }
    u64::from_str_radix(size, 16).map_err(|_| invalid("chunk size"))
}

fn read_some(reader: &mut impl Read, buf: &mut [u8], left: &mut u64) -> io::Result<usize> {
    let want = buf.len().min(usize::try_from(*left).unwrap_or(usize::MAX));
    let got = reader.read(&mut buf[..want])?;
    if got == 0 && want > 0 {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the body ends early"));
    }
    *left -= got as u64;
    Ok(got)
}

impl<R: BufRead> Read for Body<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Body::Length { reader, left } => {
                if *left == 0 {
                    return Ok(0);
                }
                read_some(reader, buf, left)
            }
            Body::UntilClose(reader) => reader.read(buf),
            Body::Chunked { reader, left, started, done } => {
                if *done || buf.is_empty() {
                    return Ok(0);
                }
                if *left == 0 {
                    // each chunk's data ends with CRLF before the next size line
                    if *started && !http_line(reader)?.is_empty() {
                        return Err(invalid("chunk without CRLF"));
                    }
                    *started = true;
                    *left = chunk_size(&http_line(reader)?)?;
                    if *left == 0 {
                        for _ in 0..=MAX_HEADERS {
                            if http_line(reader)?.is_empty() {
                                *done = true;
                                return Ok(0);
                            }
                        }
                        return Err(invalid("too many trailers"));
                    }
                }
                read_some(reader, buf, left)
            }
        }
    }
}

/// The whole body, at most [`MAX_BODY`] bytes.
pub fn read_body(mut body: Body<impl BufRead>) -> Result<Vec<u8>, HttpError> {
    if let Body::Length { left, .. } = body {
        if left > MAX_BODY as u64 {
            return Err(HttpError::TooLarge);
        }
    }
    let mut bytes = Vec::new();
    (&mut body).take(MAX_BODY as u64 + 1).read_to_end(&mut bytes)?;
    if bytes.len() > MAX_BODY {
        return Err(HttpError::TooLarge);
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn parse(response: &[u8]) -> Result<(u16, Vec<u8>), HttpError> {
        let mut reader = Cursor::new(response);
        let head = read_head(&mut reader)?;
        Ok((head.status, read_body(Body::new(reader, &head))?))
    }

    #[test]
    fn content_length() {
        let response =
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 5\r\n\r\n[1,2]extra";
        assert_eq!(parse(response).unwrap(), (200, b"[1,2]".to_vec()));
        let empty = b"HTTP/1.0 204 No Content\r\ncontent-length:0\r\n\r\n";
        assert_eq!(parse(empty).unwrap(), (204, vec![]));
        // bare LF line ends
        assert_eq!(parse(b"HTTP/1.1 404 Not Found\nContent-Length: 2\n\n{}").unwrap(), (404, b"{}".to_vec()));
    }

    #[test]
    fn chunked() {
        let response = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 99\r\n\r\n\
                         4\r\n[1,2\r\na;ext=1\r\n,3,4,5,6,7\r\n1\r\n]\r\n0\r\nX-Trailer: 1\r\n\r\n";
        assert_eq!(parse(response).unwrap(), (200, b"[1,2,3,4,5,6,7]".to_vec()));
    }

    #[test]
    fn until_close() {
        assert_eq!(parse(b"HTTP/1.1 200 OK\r\n\r\nall of it").unwrap(), (200, b"all of it".to_vec()));
    }

    #[test]
    fn oversized() {
        let declared = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", MAX_BODY + 1);
        assert!(matches!(parse(declared.as_bytes()), Err(HttpError::TooLarge)));
        let mut chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        for _ in 0..5 {
            chunked.extend_from_slice(format!("{:x}\r\n", 1 << 20).as_bytes());
            chunked.extend(std::iter::repeat_n(b'x', 1 << 20));
            chunked.extend_from_slice(b"\r\n");
        }
        chunked.extend_from_slice(b"0\r\n\r\n");
        assert!(matches!(parse(&chunked), Err(HttpError::TooLarge)));
        let mut close = b"HTTP/1.1 200 OK\r\n\r\n".to_vec();
        close.resize(close.len() + MAX_BODY + 1, b'x');
        assert!(matches!(parse(&close), Err(HttpError::TooLarge)));
        let long_header = format!("HTTP/1.1 200 OK\r\nX: {}\r\n\r\n", "y".repeat(MAX_LINE));
        assert!(parse(long_header.as_bytes()).is_err());
        let many_headers = format!("HTTP/1.1 200 OK\r\n{}\r\n", "X: 1\r\n".repeat(MAX_HEADERS + 1));
        assert!(matches!(parse(many_headers.as_bytes()), Err(HttpError::Malformed("too many headers"))));
        let huge_chunk = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\n";
        assert!(parse(huge_chunk).is_err());
    }

    #[test]
    fn garbage_is_an_error() {
        for response in [
            &b""[..],
            b"\r\n\r\n",
            b"garbage\r\n\r\n",
            b"HTTP/1.1\r\n\r\n",
            b"HTTP/1.1 2000 OK\r\n\r\n",
            b"HTTP/1.1 abc OK\r\n\r\n",
            b"SSH-2.0-OpenSSH\r\n",
            b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nabc",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n",
            b"HTTP/1.1 200 \xff\xfe\r\nX: \xff\r\n\r\n",
        ] {
            assert!(parse(response).is_err(), "{:?}", String::from_utf8_lossy(response));
        }
    }

    #[test]
    fn lines() {
        let mut input = Cursor::new(&b"one\r\ntwo\n\nlong line\npartial"[..]);
        assert_eq!(read_line(&mut input, 10).unwrap(), Some(b"one".to_vec()));
        assert_eq!(read_line(&mut input, 10).unwrap(), Some(b"two".to_vec()));
        assert_eq!(read_line(&mut input, 10).unwrap(), Some(vec![]));
        assert_eq!(read_line(&mut input, 9).unwrap(), Some(b"long line".to_vec()));
        assert_eq!(read_line(&mut input, 10).unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
        assert_eq!(read_line(&mut input, 10).unwrap(), None);
        let mut long = Cursor::new(&b"0123456789abc\n"[..]);
        assert_eq!(read_line(&mut long, 10).unwrap_err().kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn a_missing_socket_fails_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let started = Instant::now();
        assert!(get(&dir.path().join("absent.sock"), "/").is_err());
        assert!(started.elapsed() < TIMEOUT);
    }

    #[test]
    fn an_engine_that_accepts_no_connections_times_out() {
        use nix::sys::socket::{bind, listen, Backlog};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("full.sock");
        let listener = socket(AddressFamily::Unix, SockType::Stream, SockFlag::SOCK_CLOEXEC, None).unwrap();
        bind(listener.as_raw_fd(), &UnixAddr::new(&path).unwrap()).unwrap();
        // a backlog of one pending connection, which the first connect fills
        listen(&listener, Backlog::new(0).unwrap()).unwrap();
        let _pending = connect_unix(&path).unwrap();
        let started = Instant::now();
        let err = connect_unix(&path).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() >= TIMEOUT && started.elapsed() < DEADLINE);
    }

    #[test]
    fn an_engine_that_never_answers_times_out() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hung.sock");
        let _listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let started = Instant::now();
        let err = get(&path, "/").unwrap_err();
        assert!(
            matches!(&err, HttpError::Io(e) if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::TimedOut),
            "{err}"
        );
        assert!(started.elapsed() < DEADLINE);
    }
}
