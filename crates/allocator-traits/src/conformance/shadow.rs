//! The shadow model (being written).
/// One operation of a random sequence.
#[derive(Debug, Clone)]
pub enum Op {}
/// The shadow of the live blocks.
#[derive(Debug, Default)]
pub struct Shadow;
