//! The conformance kit for every fit policy x list order x coalescing setting (40 suites).
//!
//! Under Miri a subset runs (each policy once, each order once, both coalescing settings), to
//! keep the interpreter's run short; `cargo test` runs all 40.

use allocator_traits::BoxedRegion;
#[allow(unused_imports)]
use allocator_traits::conformance::Profile;
use fit::{Coalesce, Config, FitHeap, Order, Policy};

fn heap(capacity: usize, policy: Policy, order: Order, coalesce: Coalesce) -> FitHeap<BoxedRegion> {
    let cfg = Config::new(policy)
        .with_order(order)
        .with_coalesce(coalesce);
    FitHeap::new(BoxedRegion::new(capacity).expect("test region"), cfg)
}

/// One module per order, each with a coalescing and a non-coalescing suite.
macro_rules! orders {
    ($policy:expr; $($order:ident = $o:expr),* $(,)?) => { $(
        mod $order {
            use super::*;
            allocator_traits::conformance_suite!(coalesce, Profile::COALESCING, |capacity: usize| {
                heap(capacity, $policy, $o, Coalesce::Physical)
            });
            allocator_traits::conformance_suite!(no_coalesce, Profile::NON_COALESCING, |capacity: usize| {
                heap(capacity, $policy, $o, Coalesce::Off)
            });
        }
    )* };
}

/// One module per policy, each with every order.
macro_rules! policies {
    ($($name:ident = $p:expr),* $(,)?) => { $(
        mod $name {
            use super::*;
            orders!($p;
                addr = Order::AddrSort,
                size_asc = Order::SizeAsc,
                size_desc = Order::SizeDesc,
                lifo = Order::InsertFront,
                fifo = Order::InsertBack,
            );
        }
    )* };
}

#[cfg(not(miri))]
policies!(
    first_fit = Policy::FirstFit,
    next_fit = Policy::NextFit,
    best_fit = Policy::BestFit,
    worst_fit = Policy::WorstFit,
);

#[cfg(miri)]
mod miri_subset {
    use super::*;
    mod first_fit {
        use super::*;
        orders!(Policy::FirstFit; addr = Order::AddrSort);
    }
    mod next_fit {
        use super::*;
        orders!(Policy::NextFit; fifo = Order::InsertBack);
    }
    mod best_fit {
        use super::*;
        orders!(Policy::BestFit; lifo = Order::InsertFront, size_asc = Order::SizeAsc);
    }
    mod worst_fit {
        use super::*;
        orders!(Policy::WorstFit; size_desc = Order::SizeDesc);
    }
}

/// The kit's list-order coalescing check does not apply to OSTEP's list-order pass in general,
/// but under address order it is full coalescing: check that too.
mod list_order_under_addr {
    use super::*;
    allocator_traits::conformance_suite!(best_fit, Profile::COALESCING, |capacity: usize| {
        heap(
            capacity,
            Policy::BestFit,
            Order::AddrSort,
            Coalesce::ListOrder,
        )
    });
}

/// A heap that checks its own invariants (tiling, boundary tags, free list = free blocks) after
/// every operation, so the kit's random sequences also test the heap's structure.
mod checked {
    use super::*;
    use allocator_traits::{AllocError, FreeError, FreeSpaceManager, Inspector, Layout, Stats};
    use core::ptr::NonNull;

    pub struct Checked(pub FitHeap<BoxedRegion>);

    impl Checked {
        fn ok<T>(&self, r: T) -> T {
            if let Err(e) = self.0.check_consistency() {
                panic!("heap inconsistent ({}): {e}", self.0.config());
            }
            r
        }
    }

    impl FreeSpaceManager for Checked {
        fn allocate(&mut self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
            let r = self.0.allocate(layout);
            self.ok(r)
        }
        unsafe fn deallocate(&mut self, ptr: NonNull<u8>, layout: Layout) -> Result<(), FreeError> {
            // SAFETY: forwarded caller contract.
            let r = unsafe { self.0.deallocate(ptr, layout) };
            self.ok(r)
        }
        unsafe fn resize_in_place(
            &mut self,
            ptr: NonNull<u8>,
            old: Layout,
            new: Layout,
        ) -> Result<NonNull<[u8]>, AllocError> {
            // SAFETY: forwarded caller contract.
            let r = unsafe { self.0.resize_in_place(ptr, old, new) };
            self.ok(r)
        }
        unsafe fn grow(
            &mut self,
            ptr: NonNull<u8>,
            old: Layout,
            new: Layout,
        ) -> Result<NonNull<[u8]>, AllocError> {
            // SAFETY: forwarded caller contract.
            let r = unsafe { self.0.grow(ptr, old, new) };
            self.ok(r)
        }
        unsafe fn shrink(
            &mut self,
            ptr: NonNull<u8>,
            old: Layout,
            new: Layout,
        ) -> Result<NonNull<[u8]>, AllocError> {
            // SAFETY: forwarded caller contract.
            let r = unsafe { self.0.shrink(ptr, old, new) };
            self.ok(r)
        }
        fn stats(&self) -> Stats {
            self.0.stats()
        }
        fn record_moved_resize(&mut self) {
            self.0.record_moved_resize()
        }
        fn check_invariants(&self) -> Result<(), allocator_traits::Corruption> {
            self.0.check_invariants()
        }
        fn inspect(&self, out: &mut dyn Inspector) {
            self.0.inspect(out)
        }
        fn detects(&self) -> allocator_traits::Detects {
            self.0.detects()
        }
    }

    macro_rules! checked {
        ($($name:ident = $p:expr, $o:expr, $c:expr, $profile:expr;)*) => { $(
            allocator_traits::conformance_suite!($name, $profile, |capacity: usize| {
                Checked(heap(capacity, $p, $o, $c))
            });
        )* };
    }

    checked! {
        best_fit_addr = Policy::BestFit, Order::AddrSort, Coalesce::Physical, Profile::COALESCING;
        next_fit_lifo = Policy::NextFit, Order::InsertFront, Coalesce::Physical, Profile::COALESCING;
        first_fit_size_asc = Policy::FirstFit, Order::SizeAsc, Coalesce::Off, Profile::NON_COALESCING;
        worst_fit_fifo_list = Policy::WorstFit, Order::InsertBack, Coalesce::ListOrder, Profile::NON_COALESCING;
    }
}
