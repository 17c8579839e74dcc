//! Audience definitions: the model, storage and the SQL functions of SPEC section 2.

pub mod api;
pub mod explain;
pub mod model;
pub mod spi;
