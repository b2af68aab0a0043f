//! One module per subcommand family.

pub mod bench;
pub mod doctor;
pub mod tasks;
pub mod worker;
