//! Spreading accepted connections over the loops that share a listener.
//!
//! Every loop of a server polls the same listening socket and the first to
//! accept a connection wins it, so a loop that happens to wake first takes
//! a whole burst: of 101 connections opened one after another (a benchmark's
//! subscribers and their publisher), one of a server's two loops accepted
//! 92, 97, 95 and 71 in four runs, and did the fan-out to them alone while
//! the other loop's core served a few. With a [`Balance`], a loop that
//! accepts a connection while another loop holds fewer hands it over to
//! that loop, which adopts it as if it had accepted it: whoever wins the
//! accepts, new connections go to the least loaded loop, and loops that
//! take connections in a burst end within one of each other. A connection
//! is never moved once a loop serves it, so connections that end can leave
//! the loops uneven until new ones arrive.
//!
//! A loop's load is the connections it holds plus those handed to it and
//! not yet adopted; it publishes it whenever the connections it holds
//! changed (looked at after every accept and adoption and at the end of
//! every pass), and a loop that hands a connection over counts it for the
//! receiver at once, so a burst spreads before the receiver has woken. A
//! loop that no longer accepts (shutting down) takes no more, and closes
//! any handed to it as it stopped, as its listener would have left them
//! unaccepted; a hand-off that finds no room (a full queue, a stopped loop)
//! leaves the connection with the loop that accepted it.
//!
//! Implements no rule of the spec.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};
use mio::net::TcpStream;
use mio::Waker;

use super::handle::LoopHandle;

/// Connections handed to a loop and not yet adopted, at most.
const HANDOFF_QUEUE: usize = 1024;

/// The loops that share a listener, and how many connections each holds.
#[derive(Debug)]
pub struct Balance {
    members: Vec<Member>,
    /// A loop above this many connections takes no more.
    max_connections: usize,
}

#[derive(Debug)]
struct Member {
    load: AtomicUsize,
    /// The loop still accepts connections.
    open: AtomicBool,
    handoffs: Sender<TcpStream>,
    waker: Arc<Waker>,
    sleeping: Arc<AtomicBool>,
}

/// One loop's place in a [`Balance`], given to it with
/// [`EventLoop::share_connections`](super::EventLoop::share_connections).
#[derive(Debug)]
pub struct BalanceSeat {
    balance: Arc<Balance>,
    index: usize,
    handoffs: Receiver<TcpStream>,
    /// The connections held when the load was last published: a pass that
    /// changed nothing publishes nothing.
    published: Cell<Option<usize>>,
}

impl Balance {
    /// A balance of the loops behind `handles`, each taking at most
    /// `max_connections`; the seats, in the order of `handles`.
    pub fn of<C>(handles: &[LoopHandle<C>], max_connections: usize) -> Vec<BalanceSeat> {
        let (members, receivers): (Vec<_>, Vec<_>) = handles
            .iter()
            .map(|handle| {
                let (sender, receiver) = crossbeam_channel::bounded(HANDOFF_QUEUE);
                let member = Member {
                    load: AtomicUsize::new(0),
                    open: AtomicBool::new(true),
                    handoffs: sender,
                    waker: Arc::clone(&handle.waker),
                    sleeping: Arc::clone(&handle.sleeping),
                };
                (member, receiver)
            })
            .unzip();
        let balance = Arc::new(Self {
            members,
            max_connections,
        });
        receivers
            .into_iter()
            .enumerate()
            .map(|(index, handoffs)| BalanceSeat {
                balance: Arc::clone(&balance),
                index,
                handoffs,
                published: Cell::new(None),
            })
            .collect()
    }

    /// The loop a connection accepted by loop `from`, which holds `own`,
    /// should go to: the least loaded other loop that still accepts and
    /// holds fewer, if there is one.
    fn destination(&self, from: usize, own: usize) -> Option<usize> {
        self.members
            .iter()
            .enumerate()
            .filter(|&(index, member)| index != from && member.open.load(Ordering::Acquire))
            .map(|(index, member)| (member.load.load(Ordering::Acquire), index))
            .filter(|&(load, _)| load < own && load < self.max_connections)
            .min()
            .map(|(_, index)| index)
    }

    /// The connections each loop holds (with those handed to it and not
    /// yet adopted), as last published.
    pub fn loads(&self) -> Vec<usize> {
        self.members
            .iter()
            .map(|member| member.load.load(Ordering::Acquire))
            .collect()
    }
}

impl BalanceSeat {
    /// The balance this seat is part of.
    pub fn balance(&self) -> &Arc<Balance> {
        &self.balance
    }

    /// Hands `stream`, just accepted by this loop (which holds `held`
    /// connections), to a less loaded loop; gives it back if it stays here.
    pub(super) fn hand_off(&self, stream: TcpStream, held: usize) -> Option<TcpStream> {
        let own = held + self.handoffs.len();
        let Some(to) = self.balance.destination(self.index, own) else {
            return Some(stream);
        };
        let Some(member) = self.balance.members.get(to) else {
            return Some(stream);
        };
        if let Err(err) = member.handoffs.try_send(stream) {
            return Some(err.into_inner());
        }
        member.load.fetch_add(1, Ordering::AcqRel);
        // Pairs with the loop's check of its hand-offs after it sets
        // `sleeping`, as a command's send does.
        if member.sleeping.load(Ordering::SeqCst) {
            let _ = member.waker.wake();
        }
        None
    }

    /// The next connection handed to this loop.
    pub(super) fn adopt(&self) -> Option<TcpStream> {
        self.handoffs.try_recv().ok()
    }

    pub(super) fn has_handoffs(&self) -> bool {
        !self.handoffs.is_empty()
    }

    /// Publishes this loop's load, `held` connections and those handed to it
    /// and not yet adopted, unless `held` is what it was last time (a
    /// hand-off to this loop is counted by the loop that made it).
    pub(super) fn publish(&self, held: usize) {
        if self.published.replace(Some(held)) == Some(held) {
            return;
        }
        if let Some(member) = self.balance.members.get(self.index) {
            let load = held + self.handoffs.len();
            member.load.store(load, Ordering::Release);
        }
    }

    /// This loop takes no more connections (it stopped accepting).
    pub(super) fn close(&self) {
        if let Some(member) = self.balance.members.get(self.index) {
            member.open.store(false, Ordering::Release);
        }
    }
}

impl Drop for BalanceSeat {
    fn drop(&mut self) {
        self.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event_loop::{App, ConnKey, Ctx, EventLoop, LoopConfig, LoopError};
    use mux_core::Event;
    use std::sync::atomic::AtomicUsize;

    struct Idle;

    impl App for Idle {
        type Command = ();
        fn on_event(&mut self, _: &mut Ctx<'_>, _: ConnKey, _: Event) {}
        fn on_closed(&mut self, _: &mut Ctx<'_>, _: ConnKey, _: Option<LoopError>) {}
        fn on_command(&mut self, _: &mut Ctx<'_>, (): ()) {}
        fn is_done(&self, _: &Ctx<'_>) -> bool {
            true
        }
    }

    /// A balance of `loops` loops that are never run.
    fn balance_of(loops: usize, max_connections: usize) -> Vec<BalanceSeat> {
        let handles: Vec<_> = (0..loops)
            .map(|_| {
                EventLoop::new(Idle, LoopConfig::default(), None, 1)
                    .expect("a loop")
                    .1
            })
            .collect();
        Balance::of(&handles, max_connections)
    }

    #[test]
    fn a_connection_goes_to_the_least_loaded_loop_that_holds_fewer() {
        let seats = balance_of(3, 100);
        let balance = seats[0].balance();
        seats[0].publish(6);
        seats[1].publish(4);
        seats[2].publish(2);
        assert_eq!(balance.destination(0, 6), Some(2), "the least loaded");
        assert_eq!(balance.destination(1, 4), Some(2));
        assert_eq!(balance.destination(0, 2), None, "a tie stays");
        assert_eq!(balance.destination(2, 2), None, "the least loaded keeps it");
        assert_eq!(balance.loads(), vec![6, 4, 2]);
    }

    #[test]
    fn a_loop_that_stopped_accepting_or_is_full_takes_none() {
        let seats = balance_of(2, 3);
        let balance = seats[0].balance();
        seats[1].publish(3);
        assert_eq!(balance.destination(0, 10), None, "full");
        seats[1].publish(1);
        assert_eq!(balance.destination(0, 10), Some(1));
        seats[1].close();
        assert_eq!(balance.destination(0, 10), None, "stopped");
    }

    /// Stops accepting at its first command; done at its second.
    struct Stopping {
        opened: Arc<AtomicUsize>,
        commands: usize,
    }

    impl App for Stopping {
        type Command = ();
        fn on_event(&mut self, _: &mut Ctx<'_>, _: ConnKey, _: Event) {}
        fn on_open(&mut self, _: &mut Ctx<'_>, _: ConnKey) {
            self.opened.fetch_add(1, Ordering::SeqCst);
        }
        fn on_closed(&mut self, _: &mut Ctx<'_>, _: ConnKey, _: Option<LoopError>) {}
        fn on_command(&mut self, ctx: &mut Ctx<'_>, (): ()) {
            self.commands += 1;
            ctx.stop_accepting();
        }
        fn is_done(&self, _: &Ctx<'_>) -> bool {
            self.commands >= 2
        }
    }

    #[test]
    fn a_connection_handed_over_as_its_loop_stopped_accepting_is_closed() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a listener");
        listener.set_nonblocking(true).expect("non-blocking");
        let opened = Arc::new(AtomicUsize::new(0));
        let app = Stopping {
            opened: Arc::clone(&opened),
            commands: 0,
        };
        let listener = mio::net::TcpListener::from_std(listener);
        let (mut event_loop, handle) =
            EventLoop::new(app, LoopConfig::default(), Some(listener), 4).expect("a loop");
        let seat = Balance::of(std::slice::from_ref(&handle), 100)
            .pop()
            .expect("a seat");
        let balance = Arc::clone(seat.balance());
        let handoffs = balance.members[0].handoffs.clone();
        event_loop.share_connections(seat);
        let running = std::thread::spawn(move || event_loop.run());
        handle.send(()).expect("stop accepting");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while balance.members[0].open.load(Ordering::Acquire) {
            assert!(
                std::time::Instant::now() < deadline,
                "the loop never closed its seat"
            );
            std::thread::yield_now();
        }
        // What a loop that chose this one just before it closed could
        // still have queued.
        let (stream, mut peer) = connected();
        assert!(handoffs.try_send(stream).is_ok(), "the queue has room");
        handle.nudge();
        peer.set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .expect("a timeout");
        let mut byte = [0u8; 1];
        let read = std::io::Read::read(&mut peer, &mut byte).expect("end of stream, not a timeout");
        assert_eq!(read, 0, "the handed-over connection is closed");
        assert_eq!(opened.load(Ordering::SeqCst), 0, "and never opened");
        handle.send(()).expect("done");
        running
            .join()
            .expect("the loop's thread")
            .expect("the loop ends");
    }

    /// One end of a loopback connection (the other end is returned to keep
    /// it open).
    fn connected() -> (TcpStream, std::net::TcpStream) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a listener");
        let addr = listener.local_addr().expect("an address");
        let stream = std::net::TcpStream::connect(addr).expect("a connection");
        let (peer, _) = listener.accept().expect("accepted");
        (TcpStream::from_std(stream), peer)
    }

    #[test]
    fn a_handed_connection_counts_at_once_and_its_loop_adopts_it() {
        let mut seats = balance_of(2, 100);
        let (stream, _peer) = connected();
        assert!(seats[0].hand_off(stream, 1).is_none(), "to the idle loop");
        assert_eq!(
            seats[0].balance().loads(),
            vec![0, 1],
            "counted before adopted"
        );
        assert!(seats[1].has_handoffs());
        assert!(seats[1].adopt().is_some());
        assert!(!seats[1].has_handoffs());
        seats[1].publish(1);
        assert_eq!(seats[0].balance().loads(), vec![0, 1]);
        let (stream, _peer) = connected();
        drop(seats.pop());
        assert!(
            seats[0].hand_off(stream, 5).is_some(),
            "a loop gone takes none: the connection stays where it was accepted"
        );
    }
}
