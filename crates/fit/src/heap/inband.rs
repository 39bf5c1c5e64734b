//! The free list stored inside the free blocks: the list mechanism's [`Store`] over the heap's
//! memory.
//!
//! ```text
//!   id = the block's offset:  | size|PREV | prev | next | ...unused... | size |
//!                              header      links (W each)                footer
//! ```

use crate::list::{AddrStep, Chunk, Store};

use super::block::{Mem, W};

const NIL: usize = usize::MAX;

fn opt(i: usize) -> Option<usize> {
    (i != NIL).then_some(i)
}

/// The free list stored inside the free blocks of a heap: ids are the blocks' offsets from the
/// heap's start.
#[derive(Debug)]
// `mem` first, in a fixed place (see `Index`).
#[repr(C)]
pub struct InBand {
    /// The heap's memory (its `end` moves as the heap grows and trims).
    pub(crate) mem: Mem,
    /// The first chunk's offset (`NIL` iff `len` is 0).
    head: usize,
    /// The last chunk's offset (`NIL` iff `len` is 0).
    tail: usize,
    /// Chunks linked.
    len: usize,
}

impl InBand {
    pub(crate) const fn new() -> Self {
        InBand {
            mem: Mem::new(),
            head: NIL,
            tail: NIL,
            len: 0,
        }
    }

    fn prev_of(&self, id: usize) -> usize {
        self.mem.word(id + W)
    }
    fn next_of(&self, id: usize) -> usize {
        self.mem.word(id + 2 * W)
    }

    fn link(&mut self, id: usize, after: Option<usize>) {
        let next = match after {
            Some(a) => self.next_of(a),
            None => self.head,
        };
        self.mem.set_word(id + W, after.unwrap_or(NIL));
        self.mem.set_word(id + 2 * W, next);
        match after {
            Some(a) => self.mem.set_word(a + 2 * W, id),
            None => self.head = id,
        }
        if next == NIL {
            self.tail = id;
        } else {
            self.mem.set_word(next + W, id);
        }
    }

    fn detach(&mut self, id: usize) {
        let (prev, next) = (self.prev_of(id), self.next_of(id));
        if prev == NIL {
            self.head = next;
        } else {
            self.mem.set_word(prev + 2 * W, next);
        }
        if next == NIL {
            self.tail = prev;
        } else {
            self.mem.set_word(next + W, prev);
        }
    }

    /// Whether the free block at `id` is linked into the list: the chunk its `prev` names (or
    /// the head) links to it. O(1); meaningful once the list itself has been checked.
    pub(crate) fn is_listed(&self, id: usize) -> bool {
        match self.prev_of(id) {
            NIL => self.head == id,
            p => self.is_node(p) && self.next_of(p) == id,
        }
    }

    /// Overwrites `id`'s next link (for tests that plant a corruption).
    #[cfg(test)]
    pub(crate) fn set_next(&mut self, id: usize, next: usize) {
        self.mem.set_word(id + 2 * W, next);
    }
}

impl Store for InBand {
    fn len(&self) -> usize {
        self.len
    }
    fn first(&self) -> Option<usize> {
        opt(self.head)
    }
    fn last(&self) -> Option<usize> {
        opt(self.tail)
    }
    fn next(&self, id: usize) -> Option<usize> {
        opt(self.next_of(id))
    }
    fn prev(&self, id: usize) -> Option<usize> {
        opt(self.prev_of(id))
    }
    fn chunk(&self, id: usize) -> Chunk {
        Chunk {
            addr: id,
            size: self.mem.size(id),
        }
    }
    fn is_node(&self, id: usize) -> bool {
        self.mem.holds_word(id) && self.mem.holds_word(id + 2 * W)
    }
    fn insert_after(&mut self, after: Option<usize>, chunk: Chunk) -> usize {
        self.mem.set_free(chunk.addr, chunk.size, None);
        self.link(chunk.addr, after);
        self.len += 1;
        chunk.addr
    }
    fn insert_rest_after(&mut self, after: Option<usize>, chunk: Chunk) -> usize {
        self.mem.set_free(chunk.addr, chunk.size, Some(true));
        self.link(chunk.addr, after);
        self.len += 1;
        chunk.addr
    }
    fn unlink(&mut self, id: usize) {
        self.detach(id);
        self.len -= 1;
    }
    fn resize(&mut self, id: usize, size: usize) {
        self.mem.resize_free(id, size);
    }
    fn replace(&mut self, id: usize, chunk: Chunk) -> usize {
        // Read the links first: the new node may overlap the old one.
        let (prev, next) = (self.prev_of(id), self.next_of(id));
        let new = chunk.addr;
        self.mem.set_free(new, chunk.size, Some(true));
        self.mem.set_word(new + W, prev);
        self.mem.set_word(new + 2 * W, next);
        if prev == NIL {
            self.head = new;
        } else {
            self.mem.set_word(prev + 2 * W, new);
        }
        if next == NIL {
            self.tail = new;
        } else {
            self.mem.set_word(next + W, new);
        }
        new
    }
    fn move_after(&mut self, id: usize, after: Option<usize>) {
        self.detach(id);
        self.link(id, after);
    }
    fn free_ending_at(&self, addr: usize) -> Option<usize> {
        self.mem.free_before(addr)
    }
    fn free_starting_at(&self, addr: usize) -> Option<usize> {
        self.mem.free_at(addr)
    }
    fn addr_step(&self, at: usize) -> AddrStep {
        if at >= self.mem.sentinel() {
            return AddrStep::Found(None);
        }
        let h = self.mem.header(at);
        if h.used() {
            AddrStep::Next(at + h.size())
        } else {
            AddrStep::Found(Some(at))
        }
    }
}
