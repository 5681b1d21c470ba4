//! What a connection's task waits for beside its socket: shutdown's
//! `reconnect`, broadcasts and the idle deadline, behind one [`WakeFlag`].
//!
//! A task that waits registers its waker with everything it waits on. A
//! connection waits after nearly every reply, so with a flag each, shutdown
//! and broadcasts cost two registrations per reply, and the idle timer a
//! third; behind one flag they cost one, and none at all while the socket
//! has more to read (the handler polls the socket first). Only when the
//! flag was raised (one of them woke) are they polled themselves; the
//! reconnect wait then checks a flag of its own before it takes the
//! token's shared lock.

use std::pin::Pin;
use std::task::{Context, Poll};

use playground_common::quiet::{Cancelled, WakeFlag};
use tokio::time::Sleep;
use tokio_util::sync::CancellationToken;

use crate::bus::{Delivery, Subscription};

/// Shutdown and broadcasts, and the flag they wake (the idle timer is the
/// handler's, pinned in its task, and polled through [`Waits::poll`]).
///
/// `repr(C)`: the flag and the start of the subscription, read after every
/// command, fill the first cache line; the reconnect wait, read only when
/// the flag is up, comes last.
#[repr(C)]
pub struct Waits {
    flag: WakeFlag,
    broadcasts: Subscription,
    /// Behind a flag of its own too: polling the token's future takes a
    /// lock every connection shares, and every broadcast raises the
    /// connection's flag.
    reconnect: Cancelled,
}

/// Which of them is ready.
pub enum Ready {
    /// Shutdown: tell the client to reconnect.
    Reconnect,
    /// A broadcast to push.
    Push(Delivery),
    /// The idle timer fired (the deadline may since have moved).
    Idle,
}

impl Waits {
    /// Starts loading what the first poll after a read touches: the
    /// flag's shared half and the subscription's count of broadcasts sent
    /// (the task's own lines holding them come with the rest of the hot
    /// state).
    pub fn prefetch(&self) {
        self.flag.prefetch();
        self.broadcasts.prefetch();
    }

    /// Waits for `reconnect` to be cancelled and for `broadcasts`.
    pub fn new(reconnect: CancellationToken, broadcasts: Subscription) -> Self {
        Waits { flag: WakeFlag::default(), reconnect: Cancelled::new(reconnect), broadcasts }
    }

    /// Polls shutdown, then broadcasts (unless `push` is false: they wait
    /// while the first command's framing is undecided), then `idle`, if one
    /// of them woke since; registers the task once, in the flag.
    pub fn poll(&mut self, cx: &mut Context<'_>, idle: Pin<&mut Sleep>, push: bool) -> Poll<Ready> {
        let (reconnect, broadcasts) = (&mut self.reconnect, &mut self.broadcasts);
        let ready = self.flag.poll(cx, |cx| {
            if Pin::new(&mut *reconnect).poll(cx).is_ready() {
                return Poll::Ready(Ready::Reconnect);
            }
            if push && let Poll::Ready(delivery) = broadcasts.poll_next(cx) {
                return Poll::Ready(Ready::Push(delivery));
            }
            idle.poll(cx).map(|()| Ready::Idle)
        });
        if !push {
            // The broadcasts were skipped: whatever woke them is still to be
            // taken, so the next poll must look whether or not a wake comes.
            self.flag.disarm();
        }
        ready
    }

    /// The next broadcast if one is there already, without waiting.
    pub fn try_delivery(&mut self) -> Option<Delivery> {
        self.broadcasts.try_next(&mut self.flag)
    }

    /// The idle timer was reset: the next poll must register it again.
    pub fn idle_moved(&mut self) {
        self.flag.disarm();
    }
}

#[cfg(test)]
mod tests {
    use std::future::poll_fn;
    use std::time::Duration;

    use futures::FutureExt;
    use tokio::time::{Instant, sleep_until};

    use super::*;
    use crate::bus::Fanout;

    /// One poll as the handler makes it after reading its socket dry.
    fn poll_once(waits: &mut Waits, idle: Pin<&mut Sleep>, push: bool) -> Poll<Ready> {
        let waker = futures::task::noop_waker();
        waits.poll(&mut Context::from_waker(&waker), idle, push)
    }

    /// Waits as the handler does when its socket has nothing; true if the
    /// idle timer ended the wait.
    async fn wait(waits: &mut Waits, mut idle: Pin<&mut Sleep>) -> bool {
        poll_fn(|cx| waits.poll(cx, idle.as_mut(), true).map(|r| matches!(r, Ready::Idle))).await
    }

    fn setup() -> (Fanout, CancellationToken, Waits) {
        let (fanout, token) = (Fanout::new(8), CancellationToken::new());
        let waits = Waits::new(token.clone(), fanout.subscribe());
        (fanout, token, waits)
    }

    #[tokio::test(start_paused = true)]
    async fn quiet_until_shutdown_which_comes_first() {
        let (fanout, token, mut waits) = setup();
        let idle = sleep_until(Instant::now() + Duration::from_secs(60));
        tokio::pin!(idle);
        assert!(poll_once(&mut waits, idle.as_mut(), true).is_pending());
        assert!(poll_once(&mut waits, idle.as_mut(), true).is_pending());
        fanout.deliver(b"hi");
        token.cancel();
        assert!(matches!(poll_once(&mut waits, idle.as_mut(), true), Poll::Ready(Ready::Reconnect)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_broadcast_waits_while_push_is_off_and_is_not_lost() {
        let (fanout, _token, mut waits) = setup();
        let idle = sleep_until(Instant::now() + Duration::from_secs(60));
        tokio::pin!(idle);
        assert!(poll_once(&mut waits, idle.as_mut(), true).is_pending());
        fanout.deliver(b"1");
        // Held back (the first command's framing is undecided) and not lost:
        // the next poll that may take it looks, though no wake came since.
        assert!(poll_once(&mut waits, idle.as_mut(), false).is_pending());
        let Poll::Ready(Ready::Push(Delivery::Line(pushed))) = poll_once(&mut waits, idle.as_mut(), true) else {
            panic!("the held broadcast")
        };
        assert_eq!(&pushed.line()[..], b"1\n");
        fanout.deliver(b"2");
        assert_eq!(waits.try_delivery().map(|d| matches!(d, Delivery::Line(_))), Some(true));
        assert!(waits.try_delivery().is_none());
    }

    /// The idle timer wakes the task through the flag, and again once it
    /// was reset (a fired timer holds no waker until polled again).
    #[tokio::test(start_paused = true)]
    async fn the_idle_timer_wakes_the_task_and_again_after_a_reset() {
        let (_fanout, _token, mut waits) = setup();
        let start = Instant::now();
        let idle = sleep_until(start + Duration::from_secs(10));
        tokio::pin!(idle);
        assert!(wait(&mut waits, idle.as_mut()).await);
        assert_eq!(Instant::now() - start, Duration::from_secs(10));
        idle.as_mut().reset(start + Duration::from_secs(25));
        waits.idle_moved();
        assert!(wait(&mut waits, idle.as_mut()).await);
        assert_eq!(Instant::now() - start, Duration::from_secs(25));
        assert!(poll_once(&mut waits, idle.as_mut(), true).is_ready(), "an elapsed timer stays ready");
        assert!(wait(&mut waits, idle.as_mut()).now_or_never().is_some());
    }
}
