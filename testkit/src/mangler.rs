//! A proxy that damages one frame on the way: it forwards a mux connection
//! unchanged except that the type byte of one DATA frame, in one direction,
//! becomes an unknown type. Receivers ignore unknown frame types (spec §4.4),
//! so the frame's bytes vanish from its stream without a trace on the wire:
//! what a corrupted type byte does on a path whose checksums missed it. The
//! tests use it to show that a body with a declared length cannot lose bytes
//! silently (`spec/patterns.md` §1.8).

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};

use mux_core::frame::{FrameType, HEADER_LEN};
use mux_core::preface::PREFACE_LEN;

/// The type a damaged frame gets: one no version of the spec defines.
pub const DAMAGED_TYPE: u8 = 0xee;

/// Which direction the damaged frame travels in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// From the client to the server (a request body).
    ToServer,
    /// From the server to the client (a response body).
    ToClient,
}

/// Starts a proxy on loopback port 0 to `target` that damages the
/// `nth` (from 0) non-empty DATA frame travelling in `direction`, on every
/// connection it carries. Returns its address.
pub fn damage_one_data_frame(
    target: SocketAddr,
    direction: Direction,
    nth: usize,
) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(crate::any_local_address())?;
    let addr = listener.local_addr()?;
    std::thread::Builder::new()
        .name("mangler-accept".into())
        .spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(target) else {
                    continue;
                };
                let (damaged_from, clean_from) = match direction {
                    Direction::ToServer => (&client, &server),
                    Direction::ToClient => (&server, &client),
                };
                let pairs = [
                    (damaged_from.try_clone(), clean_from.try_clone(), Some(nth)),
                    (clean_from.try_clone(), damaged_from.try_clone(), None),
                ];
                for (from, to, damage) in pairs {
                    if let (Ok(from), Ok(to)) = (from, to) {
                        let _ = std::thread::Builder::new()
                            .name("mangler-carry".into())
                            .spawn(move || carry(from, to, damage));
                    }
                }
            }
        })?;
    Ok(addr)
}

/// Copies `from` to `to`; with `damage`, frame by frame, changing the type
/// of that DATA frame.
fn carry(mut from: TcpStream, mut to: TcpStream, damage: Option<usize>) {
    let result = match damage {
        None => std::io::copy(&mut from, &mut to).map(drop),
        Some(nth) => copy_damaging(&mut from, &mut to, nth),
    };
    let _ = result;
    let _ = to.shutdown(Shutdown::Write);
    let _ = from.shutdown(Shutdown::Read);
}

fn copy_damaging(from: &mut TcpStream, to: &mut TcpStream, nth: usize) -> std::io::Result<()> {
    let mut preface = [0u8; PREFACE_LEN];
    from.read_exact(&mut preface)?;
    to.write_all(&preface)?;
    let mut data_frames = 0;
    let mut payload = Vec::new();
    loop {
        let mut header = [0u8; HEADER_LEN];
        from.read_exact(&mut header)?;
        let len = u32::from_be_bytes([0, header[0], header[1], header[2]]) as usize;
        payload.resize(len, 0);
        from.read_exact(&mut payload)?;
        if header[3] == FrameType::DATA.0 && len > 0 {
            if data_frames == nth {
                header[3] = DAMAGED_TYPE;
            }
            data_frames += 1;
        }
        to.write_all(&header)?;
        to.write_all(&payload)?;
    }
}
