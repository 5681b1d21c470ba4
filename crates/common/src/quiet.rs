//! Futures that a task polls every time it wakes, made cheap to poll.
//!
//! A connection's task waits for shutdown and for broadcasts beside its
//! socket, and polls those waits each time it wakes for a command.
//! `WaitForCancellationFutureOwned` takes two locks per poll (the token's
//! tree node and its `Notify`'s waiters), and a broadcast receiver takes the
//! channel's tail lock; every connection shares them, so under load their
//! cache lines bounce between cores on every command. A [`WakeFlag`] polls
//! such a future with a waker of its own, which raises a flag before waking
//! the task: until the flag goes up, polling it again cannot give anything
//! new, and costs one atomic load instead. The task stays registered in the
//! flag through wakes, so a task that polls again registers nothing: no
//! locked instruction on the flag's cache line, which a connection touches
//! after every reply and which, at thousands of connections, is rarely in
//! the core's cache (docs/performance.md, "Counted, not timed"). Neither
//! tokio nor tokio-util has such a wrapper, hence these few lines.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Wake, Waker};

use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

/// Polls inner futures (or streams) with its own waker, and again only
/// once that waker was woken. Every poll of an inner one must go through
/// it, so that the inner one never holds another waker. Several inner ones
/// may share one flag: a task that waits on them then registers once per
/// wait instead of once for each.
///
/// `repr(C)`: what every poll reads (`signal`, `task`, `armed`) comes
/// first, in one cache line with what a connection keeps after it
/// (docs/performance.md, "Fewer cache lines per reply").
#[repr(C)]
pub struct WakeFlag {
    signal: Arc<Signal>,
    /// The task registered in `signal`, to tell without touching it
    /// whether a poll comes from another.
    task: Option<Waker>,
    /// The inner one said Pending and has not woken its waker since.
    armed: bool,
    waker: Waker,
}

/// What the inner future wakes: a flag, then the task.
#[derive(Default)]
struct Signal {
    woken: AtomicBool,
    /// Kept, not taken, by a wake (unlike an `AtomicWaker`): only a poll
    /// from another task replaces it. Locked by a wake and by such a poll.
    task: Mutex<Option<Waker>>,
}

impl Wake for Signal {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::SeqCst);
        // Woken under the lock: cloning the waker out first would cost an
        // atomic on the task's reference count for every wake, and a waker
        // only schedules its task, it does not poll it here.
        if let Some(task) = &*self.task.lock().unwrap_or_else(PoisonError::into_inner) {
            task.wake_by_ref();
        }
    }
}

impl Default for WakeFlag {
    fn default() -> Self {
        let signal = Arc::<Signal>::default();
        WakeFlag { waker: Waker::from(signal.clone()), signal, task: None, armed: false }
    }
}

impl WakeFlag {
    /// Starts loading the flag's shared half into the cache, for a poll
    /// that will read it after the task's system calls.
    pub fn prefetch(&self) {
        prefetch(Arc::as_ptr(&self.signal));
    }

    /// Polls the inner future (`poll` is handed the flag's own context) for
    /// the task of `cx`, unless it is waiting and was not woken since.
    pub fn poll<T>(&mut self, cx: &mut Context<'_>, poll: impl FnOnce(&mut Context<'_>) -> Poll<T>) -> Poll<T> {
        // Another task (or the first) is registered, and the inner one is
        // polled whether or not the flag is up: a wake before the
        // registration may have gone to the task before, or to none. Any
        // wake the inner one gives after this poll comes from a registration
        // made after this one, so it finds this task. With the same task,
        // nothing is registered: a wake never takes the task out, so one
        // that comes after the flag is read below finds this task, and one
        // that came before raised the flag the read sees.
        if !self.task.as_ref().is_some_and(|task| task.will_wake(cx.waker())) {
            *self.signal.task.lock().unwrap_or_else(PoisonError::into_inner) = Some(cx.waker().clone());
            self.task = Some(cx.waker().clone());
            self.armed = false;
        }
        if self.armed && !self.signal.woken.load(Ordering::SeqCst) {
            return Poll::Pending;
        }
        // Lowered before the inner one is polled: whatever a wake before this
        // announced, that poll sees; a wake after it raises the flag again.
        self.signal.woken.store(false, Ordering::SeqCst);
        let result = poll(&mut Context::from_waker(&self.waker));
        self.armed = result.is_pending();
        result
    }

    /// Polls the inner future now, without waiting (no task is woken by
    /// what it registers until [`WakeFlag::poll`] registers one). With
    /// several inner futures behind the flag, this polls one of them: its
    /// Pending says nothing of the others, so it leaves the flag as it was.
    pub fn poll_now<T>(&mut self, poll: impl FnOnce(&mut Context<'_>) -> Poll<T>) -> Poll<T> {
        let result = poll(&mut Context::from_waker(&self.waker));
        if result.is_ready() {
            self.armed = false;
        }
        result
    }

    /// Makes the next [`WakeFlag::poll`] poll the inner futures, woken or
    /// not: after one of them was skipped, or changed (a timer reset), so
    /// that it registers again.
    pub fn disarm(&mut self) {
        self.armed = false;
    }
}

/// Resolves when the token is cancelled. Cancel-safe, and cheap to poll
/// again and again.
pub struct Cancelled {
    wait: Pin<Box<WaitForCancellationFutureOwned>>,
    flag: WakeFlag,
}

impl Cancelled {
    /// Waits for `token` to be cancelled.
    pub fn new(token: CancellationToken) -> Cancelled {
        Cancelled { wait: Box::pin(token.cancelled_owned()), flag: WakeFlag::default() }
    }
}

impl Future for Cancelled {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        let wait = &mut this.wait;
        this.flag.poll(cx, |cx| wait.as_mut().poll(cx))
    }
}

/// Asks the core to start loading the cache line at `p`, and goes on at
/// once. At thousands of connections a connection's memory is out of the
/// core's caches when its next command comes, and each line its reply
/// reads is a wait of its own; a line asked for before the socket's
/// system calls arrives while they run (docs/performance.md, "Lines
/// asked for early"). The standard library has no stable prefetch; on
/// other targets this does nothing.
#[inline(always)]
pub fn prefetch<T: ?Sized>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint: it reads nothing the program sees and
    // does not fault, whatever the address.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast())
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// [`prefetch`] for every cache line of `value`.
#[inline(always)]
pub fn prefetch_all<T>(value: &T) {
    let start = (value as *const T).cast::<u8>();
    for offset in (0..size_of::<T>()).step_by(64) {
        prefetch(start.wrapping_add(offset));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;

    /// A prefetch is only a hint: it faults on no address, and leaves
    /// what it was asked to load as it was.
    #[test]
    fn a_prefetch_changes_nothing_and_faults_on_no_address() {
        let value = [7u8; 300];
        prefetch_all(&value);
        prefetch(std::ptr::null::<u8>());
        prefetch(std::ptr::dangling::<u64>());
        prefetch(usize::MAX as *const u8);
        assert_eq!(value, [7u8; 300]);
    }

    #[tokio::test]
    async fn resolves_once_cancelled_and_not_before() {
        let token = CancellationToken::new();
        let mut cancelled = Cancelled::new(token.clone());
        for _ in 0..3 {
            assert!((&mut cancelled).now_or_never().is_none());
        }
        let waiter = tokio::spawn(cancelled);
        tokio::task::yield_now().await;
        token.cancel();
        tokio::time::timeout(std::time::Duration::from_secs(5), waiter).await.unwrap().unwrap();
    }

    /// A wake that comes while the task is polled (another thread sends)
    /// must never be lost, whichever way the task polls: many times over.
    #[test]
    fn no_wake_is_lost_to_a_race_with_the_polling_task() {
        const N: u32 = 300_000;
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<u32>();
        let consumer = rt.spawn(async move {
            let mut flag = WakeFlag::default();
            let mut got = 0;
            while got < N {
                // Take what is there without waiting (as `try_next` does), then wait.
                while let Poll::Ready(Some(_)) = flag.poll_now(|cx| rx.poll_recv(cx)) {
                    got += 1;
                }
                if got < N && std::future::poll_fn(|cx| flag.poll(cx, |cx| rx.poll_recv(cx))).await.is_some() {
                    got += 1;
                }
            }
            got
        });
        let producer = std::thread::spawn(move || {
            for i in 0..N {
                tx.send(i).unwrap();
                if i % 7 == 0 {
                    std::thread::yield_now();
                }
            }
        });
        let got = rt.block_on(async { tokio::time::timeout(std::time::Duration::from_secs(20), consumer).await });
        producer.join().unwrap();
        assert_eq!(got.expect("a wake was lost: the task waits forever").unwrap(), N);
    }

    /// What the flag is for: an inner future that said Pending is not
    /// polled again until it wakes the flag, nor after `poll_now`'s Pending;
    /// `disarm` makes the next poll look regardless.
    #[test]
    fn the_inner_future_is_polled_again_only_after_a_wake() {
        let mut flag = WakeFlag::default();
        let (polls, waker) = (std::cell::Cell::new(0), futures::task::noop_waker());
        let mut cx = Context::from_waker(&waker);
        let stored = std::cell::RefCell::new(None);
        let mut poll = |flag: &mut WakeFlag| {
            flag.poll(&mut cx, |inner| {
                polls.set(polls.get() + 1);
                *stored.borrow_mut() = Some(inner.waker().clone());
                Poll::<()>::Pending
            })
        };
        for _ in 0..3 {
            assert!(poll(&mut flag).is_pending());
        }
        assert_eq!(polls.get(), 1, "polled again without a wake");
        assert!(flag.poll_now(|_| Poll::<()>::Pending).is_pending());
        assert!(poll(&mut flag).is_pending());
        assert_eq!(polls.get(), 1, "a Pending poll_now must not disarm");
        let woken = stored.borrow_mut().take();
        woken.unwrap().wake();
        assert!(poll(&mut flag).is_pending());
        assert_eq!(polls.get(), 2, "a wake must let the next poll through");
        flag.disarm();
        assert!(poll(&mut flag).is_pending());
        assert_eq!(polls.get(), 3, "disarm must let the next poll through");
    }

    /// A task that counts its wakes.
    #[derive(Default)]
    struct Counting(std::sync::atomic::AtomicU32);

    impl Wake for Counting {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// A wake does not take the task out of the flag: polled again by the
    /// same task, which registers nothing, the flag still wakes it, wake
    /// after wake; a poll from another task registers that one, and looks
    /// at the inner future whether or not the flag is up.
    #[test]
    fn the_task_stays_registered_through_wakes_until_another_polls() {
        let (first, second) = (Arc::new(Counting::default()), Arc::new(Counting::default()));
        let (first_waker, second_waker) = (Waker::from(first.clone()), Waker::from(second.clone()));
        let mut flag = WakeFlag::default();
        let (polls, inner) = (std::cell::Cell::new(0), std::cell::RefCell::new(None));
        let poll = |flag: &mut WakeFlag, task: &Waker| {
            flag.poll(&mut Context::from_waker(task), |cx| {
                polls.set(polls.get() + 1);
                *inner.borrow_mut() = Some(cx.waker().clone());
                Poll::<()>::Pending
            })
        };
        let wake_inner = || inner.borrow().as_ref().unwrap().wake_by_ref();
        assert!(poll(&mut flag, &first_waker).is_pending());
        for round in 1..=3 {
            wake_inner();
            assert_eq!(first.0.load(Ordering::SeqCst), round, "wake {round} did not reach the task");
            assert!(poll(&mut flag, &first_waker).is_pending());
            assert_eq!(polls.get(), round + 1);
        }
        assert!(poll(&mut flag, &first_waker).is_pending());
        assert_eq!(polls.get(), 4, "polled again without a wake");
        assert!(poll(&mut flag, &second_waker).is_pending());
        assert_eq!(polls.get(), 5, "another task's first poll must look at the inner future");
        wake_inner();
        assert_eq!((first.0.load(Ordering::SeqCst), second.0.load(Ordering::SeqCst)), (3, 1));
    }

    #[tokio::test]
    async fn a_token_cancelled_before_the_first_poll_is_seen() {
        let token = CancellationToken::new();
        token.cancel();
        assert!(Cancelled::new(token).now_or_never().is_some());
    }

    #[tokio::test]
    async fn wakes_a_task_that_waits_in_a_select_with_other_work() {
        let token = CancellationToken::new();
        let (tx, mut rx) = tokio::sync::mpsc::channel::<u32>(4);
        let task = tokio::spawn({
            let token = token.clone();
            async move {
                let cancelled = Cancelled::new(token);
                tokio::pin!(cancelled);
                let mut seen = 0;
                loop {
                    tokio::select! {
                        _ = &mut cancelled => return seen,
                        Some(n) = rx.recv() => seen += n,
                    }
                }
            }
        });
        for n in 1..=3 {
            tx.send(n).await.unwrap();
            tokio::task::yield_now().await;
        }
        token.cancel();
        let seen = tokio::time::timeout(std::time::Duration::from_secs(5), task).await.unwrap().unwrap();
        assert_eq!(seen, 6);
    }
}
