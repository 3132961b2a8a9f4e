//! Consumer groups: the sans-IO coordinator and its assignors.

pub mod assignor;
pub mod classic;
pub mod coordinator;
pub mod limits;
pub mod membership;
pub mod offsets;
pub mod ownership;
pub mod record;
mod save;
