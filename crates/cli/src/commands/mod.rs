//! One module per subcommand family.

pub mod bench;
pub mod tasks;
pub mod worker;
