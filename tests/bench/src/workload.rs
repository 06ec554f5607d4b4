//! The measured workload: one process, a sender thread writing fixed-size
//! messages on a unix stream socket and a receiver thread reading them.

use std::io::{BufRead, Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use anyhow::{ensure, Result};

pub struct Workload {
    pub size: usize,
    pub count: u64,
    /// Messages per second; None: as fast as possible.
    pub rate: Option<u64>,
}

/// Waits for GO (so a capture can start knowing our pid), sends, and prints
/// `RESULT <messages> <seconds>`.
pub fn run(w: &Workload, wait_for_go: bool) -> Result<()> {
    let mut stdout = std::io::stdout();
    if wait_for_go {
        writeln!(stdout, "READY {}", std::process::id())?;
        stdout.flush()?;
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
    }
    let (mut tx, mut rx) = UnixStream::pair()?;
    let total = w.size as u64 * w.count;
    let receiver = std::thread::spawn(move || -> std::io::Result<u64> {
        let mut buf = vec![0u8; 1 << 16];
        let mut got = 0u64;
        while got < total {
            let n = rx.read(&mut buf)?;
            if n == 0 {
                break;
            }
            got += n as u64;
        }
        Ok(got)
    });
    let message = vec![b'm'; w.size];
    let started = Instant::now();
    for i in 0..w.count {
        if let Some(rate) = w.rate {
            // pace against the schedule, not the previous send: no drift
            let due = Duration::from_nanos(i * 1_000_000_000 / rate);
            while started.elapsed() < due {
                std::hint::spin_loop();
            }
        }
        tx.write_all(&message)?;
    }
    let got = receiver.join().map_err(|_| anyhow::anyhow!("receiver panicked"))??;
    let seconds = started.elapsed().as_secs_f64();
    ensure!(got == total, "received {got} of {total} bytes");
    writeln!(stdout, "RESULT {} {seconds:.6}", w.count)?;
    Ok(())
}
