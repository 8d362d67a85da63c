//! The store under damage, kills and races (issue 10 E): a flipped byte on disk is never
//! used unnoticed, a killed command never leaves the store inconsistent, concurrent
//! commands never fail because of each other.

mod damage;
mod kills;
mod leftovers;
mod limits;
mod races;
