//! [`Counted`]: a shared value with an atomic reference count, as `Arc`
//! (without weak references), whose references can be taken and given back
//! many at a time.
//!
//! Every row of a rows event shares one [`crate::Shared`]. With an `Arc`,
//! each row took a reference (an atomic increment on the decoding thread)
//! and gave it back when its batch was freed (an atomic decrement); each
//! such instruction waits for the thread's pending stores to land. That was
//! 3% of a catch-up's samples, and 13% when the host was in its slow mode.
//! Here a [`Reserve`] starts with the references of a whole rows event and
//! hands them out as plain integer steps, and [`Returns`] gives a batch's
//! references back with one subtraction per run of rows sharing a value.
//!
//! Invariants: a value's count is the number of its live [`Counted`]
//! handles, plus those a [`Returns`] holds and has not subtracted yet, plus
//! the references a [`Reserve`] has not handed out (its own included). The
//! value is dropped, once, by whoever takes the count to zero; every
//! decrement is a release and the last is followed by an acquire fence, so
//! all uses of the value happen before its drop (as in `Arc`).

use std::fmt;
use std::marker::PhantomData;
use std::ops::Deref;
use std::ptr::NonNull;
use std::sync::atomic::{fence, AtomicUsize, Ordering};

/// A counted reference to a shared, immutable `T` (see the module docs).
pub struct Counted<T> {
    ptr: NonNull<Inner<T>>,
    /// Owns an `Inner<T>` (for drop check and auto traits).
    _owns: PhantomData<Inner<T>>,
}

struct Inner<T> {
    count: AtomicUsize,
    value: T,
}

// SAFETY: as `Arc<T>`: handles on several threads share `&T` (so `T: Sync`)
// and the last one drops the `T` on its thread (so `T: Send`).
unsafe impl<T: Send + Sync> Send for Counted<T> {}
// SAFETY: as above.
unsafe impl<T: Send + Sync> Sync for Counted<T> {}

/// Above this many references a count could overflow: abort, as `Arc` does.
const MAX_COUNT: usize = isize::MAX as usize;

impl<T> Counted<T> {
    pub fn new(value: T) -> Counted<T> {
        Counted::with_count(value, 1)
    }

    fn with_count(value: T, count: usize) -> Counted<T> {
        let inner = Box::new(Inner {
            count: AtomicUsize::new(count),
            value,
        });
        Counted {
            ptr: NonNull::from(Box::leak(inner)),
            _owns: PhantomData,
        }
    }

    /// True when both are references to the same value.
    pub fn ptr_eq(a: &Counted<T>, b: &Counted<T>) -> bool {
        a.ptr == b.ptr
    }

    fn inner(&self) -> &Inner<T> {
        // SAFETY: a handle keeps its count above zero, so `Inner` is live.
        unsafe { self.ptr.as_ref() }
    }
}

impl<T: Clone> Counted<T> {
    /// The value, mutable: this handle's own copy when others share it.
    pub fn make_mut(this: &mut Counted<T>) -> &mut T {
        // Acquire: the other handles' uses (ended by their release
        // decrements) happen before ours.
        if this.inner().count.load(Ordering::Acquire) != 1 {
            *this = Counted::new(this.inner().value.clone());
        }
        // SAFETY: the count is 1, and it is this handle's: no other handle,
        // reserve or `Returns` can reach the value, and `&mut this` keeps
        // this one from being cloned while the borrow lasts.
        unsafe { &mut (*this.ptr.as_ptr()).value }
    }
}

/// Takes `n` references off the value at `ptr`, dropping it at zero.
///
/// # Safety
/// The caller owns `n` of the value's references and uses none of them after.
unsafe fn release<T>(ptr: NonNull<Inner<T>>, n: usize) {
    // SAFETY: the caller's references keep `Inner` live until this subtraction.
    if unsafe { ptr.as_ref() }
        .count
        .fetch_sub(n, Ordering::Release)
        != n
    {
        return;
    }
    fence(Ordering::Acquire);
    // SAFETY: the count reached zero here: no reference is left, and `ptr`
    // came from `Box::leak` in `with_count`.
    drop(unsafe { Box::from_raw(ptr.as_ptr()) });
}

impl<T> Clone for Counted<T> {
    fn clone(&self) -> Counted<T> {
        // Relaxed, as `Arc`: taking a reference needs a live one, whose own
        // creation was ordered before this.
        if self.inner().count.fetch_add(1, Ordering::Relaxed) > MAX_COUNT {
            std::process::abort();
        }
        Counted {
            ptr: self.ptr,
            _owns: PhantomData,
        }
    }
}

impl<T> Drop for Counted<T> {
    fn drop(&mut self) {
        // SAFETY: this handle's one reference, not used after.
        unsafe { release(self.ptr, 1) }
    }
}

impl<T> Deref for Counted<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.inner().value
    }
}

impl<T: fmt::Debug> fmt::Debug for Counted<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

/// Equal when the values are (as `Arc`).
impl<T: PartialEq> PartialEq for Counted<T> {
    fn eq(&self, other: &Counted<T>) -> bool {
        **self == **other
    }
}

/// A new value with references to hand out without atomic operations
/// (see the module docs); gives back what it did not hand out when dropped.
pub struct Reserve<T> {
    ptr: NonNull<Inner<T>>,
    /// References still held: the ones not handed out, and its own.
    left: usize,
    _owns: PhantomData<Inner<T>>,
}

// SAFETY: as `Counted`: it is a set of references to the value.
unsafe impl<T: Send + Sync> Send for Reserve<T> {}
// SAFETY: as above.
unsafe impl<T: Send + Sync> Sync for Reserve<T> {}

/// References a [`Reserve`] starts with: as many as a rows event can have
/// rows (it is at most `max_allowed_packet`, at most 1 GiB, and each row
/// takes at least a byte), far below an overflow. Past them it takes
/// references one by one.
const RESERVED: usize = 1 << 30;

impl<T> Reserve<T> {
    pub fn new(value: T) -> Reserve<T> {
        let first = Counted::with_count(value, RESERVED + 1);
        let ptr = first.ptr;
        // The handle's reference becomes the reserve's own.
        std::mem::forget(first);
        Reserve {
            ptr,
            left: RESERVED + 1,
            _owns: PhantomData,
        }
    }

    /// A reference to the value.
    #[inline]
    pub fn take(&mut self) -> Counted<T> {
        if self.left > 1 {
            self.left -= 1;
            Counted {
                ptr: self.ptr,
                _owns: PhantomData,
            }
        } else {
            // Only its own left: keep it, take one more.
            self.get().clone()
        }
    }

    /// The value, as a handle borrowed from the reserve's own reference.
    pub fn get(&self) -> &Counted<T> {
        // SAFETY: `Counted` is `ptr` and a marker; the reserve's own reference
        // keeps the value live while the borrow lasts, and the borrowed
        // handle is never dropped.
        unsafe { &*(std::ptr::from_ref(&self.ptr).cast::<Counted<T>>()) }
    }
}

impl<T> Drop for Reserve<T> {
    fn drop(&mut self) {
        // SAFETY: the references it still holds, not used after.
        unsafe { release(self.ptr, self.left) }
    }
}

/// Gives back many references with one subtraction per run of handles to
/// the same value (see the module docs); the last run when dropped.
pub struct Returns<T> {
    run: Option<(NonNull<Inner<T>>, usize)>,
    _owns: PhantomData<Inner<T>>,
}

impl<T> Default for Returns<T> {
    fn default() -> Self {
        Returns {
            run: None,
            _owns: PhantomData,
        }
    }
}

impl<T> Returns<T> {
    /// Gives `handle` back (now, or with the rest of its run).
    #[inline]
    pub fn give(&mut self, handle: Counted<T>) {
        let ptr = handle.ptr;
        // Its reference is now this run's.
        std::mem::forget(handle);
        match &mut self.run {
            Some((p, n)) if *p == ptr => *n += 1,
            run => {
                if let Some((p, n)) = run.replace((ptr, 1)) {
                    // SAFETY: the run's `n` references, given to us.
                    unsafe { release(p, n) }
                }
            }
        }
    }
}

impl<T> Drop for Returns<T> {
    fn drop(&mut self) {
        if let Some((p, n)) = self.run.take() {
            // SAFETY: the run's `n` references, given to us.
            unsafe { release(p, n) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;

    /// Counts its drops.
    struct Tracked(Arc<AtomicUsize>);
    impl Drop for Tracked {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn count<T>(c: &Counted<T>) -> usize {
        c.inner().count.load(Ordering::SeqCst)
    }

    #[test]
    fn reserve_hands_out_references_and_gives_back_the_rest() {
        let drops = Arc::new(AtomicUsize::new(0));
        let mut r = Reserve::new(Tracked(drops.clone()));
        let mut handles: Vec<_> = (0..5).map(|_| r.take()).collect();
        assert!(handles.iter().all(|h| Counted::ptr_eq(h, &handles[0])));
        drop(r);
        assert_eq!(count(&handles[0]), 5);
        let kept = handles.pop().unwrap();
        let mut returns = Returns::default();
        for h in handles {
            returns.give(h);
        }
        assert_eq!(count(&kept), 5, "a run is given back when it ends");
        drop(returns);
        assert_eq!(count(&kept), 1);
        assert_eq!(drops.load(Ordering::SeqCst), 0, "one handle is left");
        drop(kept);
        assert_eq!(drops.load(Ordering::SeqCst), 1);
        // Dropped by the reserve when it handed nothing out.
        drop(Reserve::new(Tracked(drops.clone())));
        assert_eq!(drops.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn returns_gives_back_runs_of_several_values_and_drops_each_once() {
        let drops = Arc::new(AtomicUsize::new(0));
        let mut handles = Vec::new();
        for _ in 0..3 {
            let mut r = Reserve::new(Tracked(drops.clone()));
            handles.extend((0..4).map(|_| r.take()));
        }
        // Values x, y, z; x's and z's handles in two runs each:
        // z x x x y y y y z z z x.
        handles.swap(0, 11);
        let mut returns = Returns::default();
        for h in handles {
            returns.give(h);
        }
        assert_eq!(drops.load(Ordering::SeqCst), 2, "y's run, z's second run");
        drop(returns);
        assert_eq!(drops.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn a_drained_reserve_takes_references_one_by_one() {
        let drops = Arc::new(AtomicUsize::new(0));
        let mut r = Reserve::new(Tracked(drops.clone()));
        // As if all but one reserved reference were handed out already.
        r.left = 2;
        let a = r.take();
        assert_eq!(r.left, 1);
        let (b, c) = (r.take(), r.take());
        assert_eq!(r.left, 1);
        assert_eq!(count(&a), RESERVED + 3);
        // Those "handed out" come back with the reserve.
        r.left = RESERVED;
        drop((a, b, r));
        assert_eq!(count(&c), 1);
        drop(c);
        assert_eq!(drops.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn make_mut_copies_a_shared_value_and_clones_share_until_then() {
        let mut a = Counted::new(vec![1]);
        let b = a.clone();
        assert_eq!(count(&a), 2);
        Counted::make_mut(&mut a).push(2);
        assert_eq!((&*a, &*b), (&vec![1, 2], &vec![1]));
        assert!(!Counted::ptr_eq(&a, &b));
        Counted::make_mut(&mut a).push(3);
        assert_eq!(*a, vec![1, 2, 3]);
        assert_eq!((count(&a), count(&b)), (1, 1));
        assert_eq!(a, Counted::new(vec![1, 2, 3]));
        assert_eq!(format!("{b:?}"), "[1]");
    }

    #[test]
    fn handles_dropped_on_other_threads_drop_the_value_once() {
        let drops = Arc::new(AtomicUsize::new(0));
        let mut r = Reserve::new(Tracked(drops.clone()));
        let handles: Vec<_> = (0..1000).map(|_| r.take()).collect();
        drop(r);
        let mut rest = handles;
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let part: Vec<_> = rest.drain(..250).collect();
                std::thread::spawn(move || {
                    let mut returns = Returns::default();
                    for (i, h) in part.into_iter().enumerate() {
                        if i % 2 == 0 {
                            drop(h.clone());
                            returns.give(h);
                        } else {
                            drop(h);
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(drops.load(Ordering::SeqCst), 1);
    }
}
