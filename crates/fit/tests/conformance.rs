//! The conformance kit for every fit policy x list order x coalescing setting (40 suites; the
//! address-order ones run on the index), the list mechanism and the check word in address order,
//! and OSTEP's list-order coalescing. The kit runs the heap's invariant walk
//! (`FreeSpaceManager::check_invariants`) after every operation of its sequences.
//!
//! Under Miri a subset runs (each policy, each order and each mechanism at least once, both
//! coalescing settings: 19 suites of the 65), to keep the interpreter's run short; `cargo test`
//! runs them all.

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
            allocator_traits::conformance_suite!(coalesce, Profile::COALESCING.further(), |capacity: usize| {
                heap(capacity, $policy, $o, Coalesce::Physical)
            });
            allocator_traits::conformance_suite!(no_coalesce, Profile::NON_COALESCING.further(), |capacity: usize| {
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
    // Address order is the index (the size-keyed tree and bins for best and worst fit, the
    // address-keyed tree for first and next fit); the other orders are the list.
    mod best_fit {
        use super::*;
        orders!(Policy::BestFit; addr = Order::AddrSort, size_asc = Order::SizeAsc);
    }
    mod worst_fit {
        use super::*;
        orders!(Policy::WorstFit; addr = Order::AddrSort, size_desc = Order::SizeDesc);
    }
}

/// The list mechanism where the index is the default (address order), and the check word, for
/// every policy: `:list`, `:checked`, `:list:checked`.
mod mechanisms {
    use super::*;
    use fit::Mechanism;

    fn variant(
        capacity: usize,
        policy: Policy,
        coalesce: Coalesce,
        list: bool,
        checked: bool,
    ) -> FitHeap<BoxedRegion> {
        let mechanism = if list {
            Mechanism::List
        } else {
            Mechanism::Index
        };
        let cfg = Config::new(policy)
            .with_coalesce(coalesce)
            .with_mechanism(mechanism)
            .with_checked(checked);
        FitHeap::new(BoxedRegion::new(capacity).expect("test region"), cfg)
    }

    macro_rules! suites {
        ($($name:ident = $p:expr, $list:expr, $checked:expr;)*) => { $(
            mod $name {
                use super::*;
                allocator_traits::conformance_suite!(coalesce, Profile::COALESCING.further(), |capacity: usize| {
                    variant(capacity, $p, Coalesce::Physical, $list, $checked)
                });
                allocator_traits::conformance_suite!(no_coalesce, Profile::NON_COALESCING.further(), |capacity: usize| {
                    variant(capacity, $p, Coalesce::Off, $list, $checked)
                });
            }
        )* };
    }

    #[cfg(not(miri))]
    suites! {
        first_fit_list = Policy::FirstFit, true, false;
        next_fit_list = Policy::NextFit, true, false;
        best_fit_list = Policy::BestFit, true, false;
        worst_fit_list = Policy::WorstFit, true, false;
        first_fit_checked = Policy::FirstFit, false, true;
        next_fit_checked = Policy::NextFit, false, true;
        best_fit_checked = Policy::BestFit, false, true;
        worst_fit_checked = Policy::WorstFit, false, true;
        best_fit_list_checked = Policy::BestFit, true, true;
        worst_fit_list_checked = Policy::WorstFit, true, true;
    }

    #[cfg(miri)]
    suites! {
        best_fit_list = Policy::BestFit, true, false;
        next_fit_checked = Policy::NextFit, false, true;
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

/// OSTEP's list-order coalescing under the other orders (partial coalescing: the kit's
/// non-coalescing profile), with the walk's list-neighbour invariant after every operation.
mod list_coalesce {
    use super::*;

    macro_rules! suites {
        ($($name:ident = $p:expr, $o:expr;)*) => { $(
            allocator_traits::conformance_suite!($name, Profile::NON_COALESCING.further(), |capacity: usize| {
                heap(capacity, $p, $o, Coalesce::ListOrder)
            });
        )* };
    }

    suites! {
        worst_fit_fifo = Policy::WorstFit, Order::InsertBack;
        next_fit_lifo = Policy::NextFit, Order::InsertFront;
    }

    #[cfg(not(miri))]
    suites! {
        first_fit_size_asc = Policy::FirstFit, Order::SizeAsc;
        best_fit_size_desc = Policy::BestFit, Order::SizeDesc;
    }
}
