//! rc_cycle: a leak through a reference cycle of `Rc`s.
//!
//! For each connection (200 a second for SECONDS), `connect_pair` makes two `Session`s
//! (`new_session`: an `Rc` holding a 2 KiB buffer) and makes each the other's peer with
//! strong `Rc`s. When the pair goes out of scope each count is still 1, held by the other:
//! neither is ever dropped. (A `Weak` peer link would be the fix.)
//!
//! What it leaks: per connection, two `Rc<Session>` boxes (64 B each) and two 2048-byte
//! buffers, from __rust_alloc <- new_session <- connect_pair <- main.
//! `new_session` and `connect_pair` are `#[inline(never)]` so that they stay in the stack.
//! A correct report: the first candidate is a `leak` of 2048-byte blocks whose frames include
//! new_session and connect_pair, growing until the end; the Rc boxes are a second `leak`.
//!
//! Usage: rc_cycle [SECONDS]   (default 2)

use std::cell::RefCell;
use std::hint::black_box;
use std::rc::Rc;

struct Session {
    id: u64,
    buffer: Vec<u8>,
    peer: RefCell<Option<Rc<Session>>>,
}

#[inline(never)]
fn new_session(id: u64) -> Rc<Session> {
    let mut buffer = Vec::with_capacity(2048);
    buffer.resize(2048, (id % 251) as u8);
    Rc::new(Session {
        id,
        buffer,
        peer: RefCell::new(None),
    })
}

/// The bug: both peer links are strong, so the pair keeps itself alive.
#[inline(never)]
fn connect_pair(id: u64) -> u64 {
    let client = new_session(2 * id);
    let server = new_session(2 * id + 1);
    *client.peer.borrow_mut() = Some(Rc::clone(&server));
    *server.peer.borrow_mut() = Some(Rc::clone(&client));
    let peer_id = client.peer.borrow().as_ref().map_or(0, |p| p.id);
    peer_id + u64::from(server.buffer[0])
}

fn main() {
    let mut checksum = 0u64;
    memtrail_rust_leaks::paced(memtrail_rust_leaks::seconds_from_args(), 200, |i| {
        checksum = checksum.wrapping_add(black_box(connect_pair(i)));
    });
    println!("checksum {checksum}");
}
