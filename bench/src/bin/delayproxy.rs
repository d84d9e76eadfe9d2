//! A TCP relay that delays every byte by a fixed time each way, to run a remote client and
//! `gpupool serve` as if a network lay between them (this machine has no traffic shaping).
//! Each round trip through it takes at least twice the delay.
//!
//! `gpupool-delayproxy LISTEN_ADDR TARGET_ADDR DELAY_US`: prints `listening on ADDR`, then
//! relays every connection to TARGET_ADDR until killed.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Copies `from` to `to`, each piece no sooner than `delay` after it was read.
fn relay(mut from: TcpStream, mut to: TcpStream, delay: Duration) {
    let (tx, rx) = mpsc::channel::<(Instant, Vec<u8>)>();
    let reader = std::thread::spawn(move || {
        let mut buf = vec![0u8; 1 << 16];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0
                || tx
                    .send((Instant::now() + delay, buf[..n].to_vec()))
                    .is_err()
            {
                break;
            }
        }
    });
    for (due, piece) in rx {
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        if to.write_all(&piece).is_err() {
            break;
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Both);
    let _ = reader.join();
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [listen, target, delay_us] = args.as_slice() else {
        eprintln!("usage: gpupool-delayproxy LISTEN_ADDR TARGET_ADDR DELAY_US");
        std::process::exit(2);
    };
    let Ok(delay_us) = delay_us.parse::<u64>() else {
        eprintln!("gpupool-delayproxy: DELAY_US {delay_us:?} is not a whole number of µs");
        std::process::exit(2);
    };
    let delay = Duration::from_micros(delay_us);
    let listener = TcpListener::bind(listen).unwrap_or_else(|e| {
        eprintln!("gpupool-delayproxy: cannot listen on {listen}: {e}");
        std::process::exit(1);
    });
    match listener.local_addr() {
        Ok(a) => println!("listening on {a}"),
        Err(e) => eprintln!("gpupool-delayproxy: {e}"),
    }
    for client in listener.incoming().flatten() {
        let server = match TcpStream::connect(target) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("gpupool-delayproxy: cannot reach {target}: {e}");
                continue;
            }
        };
        let _ = client.set_nodelay(true);
        let _ = server.set_nodelay(true);
        let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) else {
            continue;
        };
        std::thread::spawn(move || relay(client, server, delay));
        std::thread::spawn(move || relay(s2, c2, delay));
    }
}
